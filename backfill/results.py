"""The result backend: Celery's Redis backend, minus the client-side result subscriptions.

Celery's Redis backend subscribes the sending process to a pub/sub channel for every task
it sends or result object it creates, so that `AsyncResult.get()` can wake up. Nothing here
calls `.get()` (the dispatcher waits on the gate, which says more), so that is one wasted
round trip per task at dispatch, and subscriptions that outlive the broker in
`backfill demo`. Storing results and the chord's counting (worker side) are unchanged;
`AsyncResult.get()` is not supported with this backend: wait on the gate instead.
"""

from celery.backends.redis import RedisBackend, ResultConsumer


class NoSubscriptionConsumer(ResultConsumer):
    def consume_from(self, task_id):
        return None


class GateRedisBackend(RedisBackend):
    ResultConsumer = NoSubscriptionConsumer

    def on_task_call(self, producer, task_id):
        return None


def result_backend_url(redis_url: str) -> str:
    """The `result_backend` URL that selects this backend (as `celeryconfig.py` builds it)."""
    return "backfill.results:GateRedisBackend+" + redis_url
