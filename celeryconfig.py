"""Celery configuration, read from the environment (see README, "Operations").

Every choice here serves one of three promises: strict timeframe priority, no lost
series when a worker or Redis dies, and nothing secret on the wire.
Celery loads this module when the app's configuration is first read (a worker, beat or
Flower starting), not when `backfill` is imported.
"""

from kombu import Queue

from core import keys
from core.settings import load_settings

_settings = load_settings()
QUEUE_ORDER = keys.queue_order()
# Celery's Redis backend minus client-side result subscriptions (see backfill/results.py).
RESULT_BACKEND_PREFIX = "backfill.results:GateRedisBackend+"

broker_url = _settings.redis_url
result_backend = RESULT_BACKEND_PREFIX + _settings.redis_url
broker_connection_retry_on_startup = True
broker_transport_options = {
    # BRPOP takes from the first non-empty queue in task_queues' order (a plain worker;
    # -Q would override it).
    "queue_order_strategy": "priority",
    # kombu's backstop only: a dead node's messages come back within seconds through the
    # nodes' liveness (workers/liveness.py), and live nodes renew what they hold. Still
    # above the longest retry countdown (backfill_retry_max_s), for nodes without it.
    "visibility_timeout": _settings.backfill_visibility_timeout_s,
    "unacked_restore_interval": max(1, min(60, _settings.backfill_visibility_timeout_s // 4)),
    "unacked_restore_throttle": 1,
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
# A task that finishes while Redis restarts must store its result once Redis is back, not
# raise outside its body: Celery would then record it as FAILURE (ConnectionError) and the
# chord would fail the whole run. Retry result writes on connection errors (exponential
# backoff up to 10 s, about two minutes in all).
result_backend_always_retry = True
result_backend_max_retries = 20
result_expires = 24 * 3600

task_queues = [Queue(name) for name in QUEUE_ORDER]
task_default_queue = keys.CONTROL_QUEUE
task_routes = {
    keys.FINISH_TASK: {"queue": keys.CONTROL_QUEUE},
    keys.ABORT_TASK: {"queue": keys.CONTROL_QUEUE},
}
# Per-node rate limit and retries, from the operator's settings. A refresh at a bucket
# close has no per-node limit: the fleet budget alone paces it (and lets it go first).
task_annotations = {
    keys.SERIES_TASK: {
        "rate_limit": _settings.backfill_worker_rate_limit or None,
        "max_retries": _settings.backfill_max_retries,
    },
    keys.REFRESH_TASK: {"max_retries": _settings.backfill_max_retries},
}
# Every task (series, callbacks, any later family) ends before its message could come back:
# the soft limit raises in the task (a series records a retry or a failure), the hard one
# kills the pool process. Both derive from the visibility timeout (README, Operations).
task_soft_time_limit, task_time_limit = _settings.task_time_limits()
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# Strict priority and no lost work: one message at a time, acked after it ran,
# requeued if the pool process running it dies.
worker_prefetch_multiplier = 1
task_acks_late = True
task_reject_on_worker_lost = True
# A task running when the broker connection drops finishes and stores its result; if its
# message comes back it runs again (idempotent writes; the chord counts it once). Celery
# 5.7 would redeliver a cancelled task too, but cancelling throws away a fetch half done.
worker_cancel_long_running_tasks_on_connection_loss = False
worker_eta_task_limit = 16

# `celery -A backfill beat`: each timeframe's bucket close, from the settings (no file).
beat_scheduler = "backfill.schedule:BoundaryScheduler"

# Flower sees every task, queued ones included.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True
worker_redirect_stdouts = False
