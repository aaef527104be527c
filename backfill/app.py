"""The Celery app: `celery -A backfill worker|beat|flower` find it here."""

import logging

from celery import Celery
from celery.signals import setup_logging

# The data plane's tasks by module name (never imported here): series and refreshes, the
# chord callbacks, and the keeper's fan-out at a bucket close; the nodes' liveness (a lost
# node's messages come back in seconds: workers/liveness.py).
app = Celery("backfill", include=["workers.tasks", "workers.keeper", "workers.liveness"])
app.config_from_object("celeryconfig")


@setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **_: object) -> None:
    """Workers log like the CLI: JSON lines off a terminal (or with BACKFILL_LOG_JSON=1)."""
    from core.logs import configure
    from core.settings import load_settings

    level = loglevel if loglevel is not None else logging.INFO
    configure(load_settings().backfill_log_json, level=level)


def use_redis(url: str) -> None:
    """Point this process's app at another Redis (the demo's embedded one, a test's)."""
    from backfill.results import result_backend_url

    backend = result_backend_url(url)
    if app.conf.broker_url == url and app.conf.result_backend == backend:
        return
    app.conf.update(broker_url=url, result_backend=backend)
    # Drop connections and the backend built for the previous URL (Celery caches them).
    app._pool = None
    app.amqp._producer_pool = None
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)
