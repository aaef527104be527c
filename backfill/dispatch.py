"""Dispatch a run: plan it, record it, enqueue it as one chord (by task name).

The control plane never imports the workers' code: it sends `backfill.series` messages
into the timeframe's queue and names `backfill.finish` as the chord callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from celery import Celery, chord, group
from celery.result import AsyncResult

from backfill.plan import Plan, plan_run
from core import keys
from core.config import BackfillConfig
from core.credentials import budget_name
from core.errors import BrokerUnavailable
from core.logs import log_event
from core.run import RunStore, new_run_id
from core.settings import Settings, load_settings, redact_url

log = logging.getLogger("backfill.dispatch")
HOLD_BACK_TTL_S = 30.0


@dataclass
class Dispatched:
    run_id: str
    total: int
    result: AsyncResult
    fresh: int = 0  # series already current in the cache: no task enqueued


def check_redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as e:
        raise BrokerUnavailable(f"cannot reach Redis at {redact_url(url)}: {e}") from None
    return client


def record(runs: RunStore, p: Plan) -> str:
    """Create the run's record (with the fresh series' outcomes); returns its id."""
    run_id = new_run_id()
    c = p.config
    runs.create(
        run_id,
        [s.name for s in p.series],
        {
            "symbols": list(c.symbols),
            "timeframes": list(c.timeframes),
            "candle_count": c.candle_count,
            "min_candles": c.min_candles,
            "user_id": c.user_id,
            "exchange_id": c.exchange_id,
            "full": c.full,
        },
    )
    runs.record(run_id, *p.fresh.values())
    return run_id


def hold_back(client: redis.Redis, budget: str, slots: int) -> None:
    """Keep `slots` more budget sends for requests first in line (the run's first
    timeframe, the refreshes at a bucket close); other requests leave them free."""
    if slots <= 0:
        return
    key = keys.budget(budget)[3]
    pipe = client.pipeline()
    pipe.incrby(key, slots)
    pipe.pexpire(key, int(HOLD_BACK_TTL_S * 1000))
    pipe.execute()


def enqueue(app: Celery, run_id: str, p: Plan) -> AsyncResult:
    """One chord: a series task per stale series in its timeframe's queue, then the callback."""
    options = p.config.task_options()
    first_tf = p.first_timeframe
    header = group(
        app.signature(
            keys.SERIES_TASK,
            args=(
                run_id,
                s.symbol,
                s.timeframe.name,
                {**options, "first": s.timeframe.name == first_tf},
            ),
            queue=keys.queue(s.timeframe.name),
            immutable=True,
        )
        for s in p.stale
    )
    callback = app.signature(keys.FINISH_TASK, args=(run_id,), queue=keys.CONTROL_QUEUE)
    callback.link_error(app.signature(keys.ABORT_TASK, args=(run_id,), queue=keys.CONTROL_QUEUE))
    try:
        if p.stale:
            return chord(header, app=app)(callback)
        return callback.clone(args=([],)).apply_async()
    except Exception as e:  # kombu raises its own connection errors
        raise BrokerUnavailable(f"enqueueing run {run_id} failed: {e}") from None


def dispatch(
    config: BackfillConfig,
    *,
    app: Celery | None = None,
    redis_url: str | None = None,
    settings: Settings | None = None,
) -> Dispatched:
    """Validate, record the run, and enqueue its chord; returns the run id.

    The API key configured here is parsed too (a corrupt key fails now, not in every
    task) and names the fleet budget; it never travels in a message.
    """
    if app is None:
        from backfill.app import app
    settings = settings or load_settings()
    creds = settings.credentials()
    config = config.validated()
    url = redis_url or app.conf.broker_url
    client = check_redis(url)
    cache_url = settings.cache_redis_url or url
    cache_client = check_redis(cache_url) if cache_url != url else client
    p = plan_run(config, cache_client)
    run_id = record(RunStore(client), p)
    first = [s for s in p.stale if s.timeframe.name == p.first_timeframe]
    hold_back(client, budget_name(creds.name if creds else None), len(first))
    log_event(
        log,
        "backfill_start",
        run_id=run_id,
        total=len(p.series),
        to_fetch=len(p.stale),
        fresh=len(p.fresh),
        symbols=len(p.config.symbols),
        timeframes=",".join(p.config.timeframes),
    )
    result = enqueue(app, run_id, p)
    return Dispatched(run_id, len(p.series), result, fresh=len(p.fresh))
