"""Celery configuration, read from the environment (see README, "Operations").

Every choice here serves one of three promises: strict timeframe priority, no lost
series when a worker or Redis dies, and nothing secret on the wire.
"""

from kombu import Queue

from backfill.results import result_backend_url
from backfill.settings import load_settings
from backfill.timeframe import TIMEFRAMES, priority_key

_settings = load_settings()

CONTROL_QUEUE = "backfill.control"
# Control first (a run's callback never waits behind the next run), then 5m, 15m, ...
QUEUE_ORDER = [CONTROL_QUEUE] + [f"backfill.{n}" for n in sorted(TIMEFRAMES, key=priority_key)]

broker_url = _settings.redis_url
result_backend = result_backend_url(_settings.redis_url)
broker_connection_retry_on_startup = True
broker_transport_options = {
    # BRPOP takes from the first non-empty queue in the worker's -Q order.
    "queue_order_strategy": "priority",
    # Unacked messages of a dead worker node come back after this; it must exceed the
    # longest retry countdown (backfill_retry_max_s) or a waiting retry runs twice.
    "visibility_timeout": _settings.backfill_visibility_timeout_s,
    "unacked_restore_interval": max(1, min(60, _settings.backfill_visibility_timeout_s // 4)),
    "unacked_restore_throttle": 1,
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
result_expires = 24 * 3600

task_queues = [Queue(name) for name in QUEUE_ORDER]
task_default_queue = CONTROL_QUEUE
task_routes = {
    "backfill.finish": {"queue": CONTROL_QUEUE},
    "backfill.abort": {"queue": CONTROL_QUEUE},
}
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# Strict priority and no lost work: one message at a time, acked after it ran,
# requeued if the pool process running it dies.
worker_prefetch_multiplier = 1
task_acks_late = True
task_reject_on_worker_lost = True
# A task running when the broker connection drops finishes and stores its result; its
# message comes back and runs again (idempotent writes; the chord counts it once).
# Cancelling it instead would store a TaskRevokedError and fail the whole chord.
worker_cancel_long_running_tasks_on_connection_loss = False
worker_eta_task_limit = 16

# Flower sees every task, queued ones included.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True
worker_redirect_stdouts = False
