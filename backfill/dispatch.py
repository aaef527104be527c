"""Plan a run (one task per series, in priority order) and enqueue it as one chord.

Everything is validated before anything is enqueued: a bad timeframe, product id or
count, or an unreachable Redis, raises `InvalidInput`/`BrokerUnavailable` and leaves
the broker untouched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from celery import chord, group
from celery.result import AsyncResult

from backfill.errors import BackfillError
from backfill.logs import log_event
from backfill.run import RunStore, new_run_id
from backfill.series import Series
from backfill.settings import BackfillConfig, Settings, load_settings, redact_url
from backfill.timeframe import parse_timeframes
from celeryconfig import CONTROL_QUEUE

log = logging.getLogger("backfill.dispatch")


class BrokerUnavailable(BackfillError):
    """Raised when Redis cannot be reached: nothing was enqueued."""


def queue_for(timeframe: str) -> str:
    return f"backfill.{timeframe}"


def plan(config: BackfillConfig) -> list[Series]:
    """Every series of the run, all of the first timeframe first (5m, 15m, 1h, 4h, 1d, ...)."""
    config = config.validated()
    timeframes = parse_timeframes(list(config.timeframes))
    return [Series.of(s, tf.name) for tf in timeframes for s in config.symbols]


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


def dispatch(
    config: BackfillConfig,
    *,
    app=None,
    redis_url: str | None = None,
    settings: Settings | None = None,
) -> Dispatched:
    """Validate, record the run, and enqueue its chord; returns the run id.

    The API key configured here is parsed too (a corrupt key fails now, not in every
    task), though only the workers use it: it never travels in a message.
    """
    from backfill.app import app as default_app
    from workers.budget import budget_name, hold_back
    from workers.tasks import abort, backfill_series, finish

    app = app or default_app
    settings = settings or load_settings()
    creds = settings.credentials()
    config = config.validated()
    series = plan(config)
    url = redis_url or app.conf.broker_url
    client = check_redis(url)
    cache_url = settings.cache_redis_url or url
    fresh = (
        {}
        if config.full
        else find_fresh(check_redis(cache_url) if cache_url != url else client, series, config)
    )
    run_id = new_run_id()
    runs = RunStore(client)
    runs.create(
        run_id,
        [s.name for s in series],
        {
            "symbols": list(config.symbols),
            "timeframes": list(config.timeframes),
            "candle_count": config.candle_count,
            "full": config.full,
        },
    )
    runs.record(run_id, *(o.to_dict() for o in fresh.values()))
    stale = [s for s in series if s.name not in fresh]
    first_tf = series[0].timeframe.name  # the indicator service needs it first
    first = [s for s in stale if s.timeframe.name == first_tf]
    hold_back(client, budget_name(creds.name if creds else None), len(first))
    options = config.task_options()
    header = group(
        backfill_series.si(
            run_id, s.symbol, s.timeframe.name, {**options, "first": s.timeframe.name == first_tf}
        ).set(queue=queue_for(s.timeframe.name))
        for s in stale
    )
    callback = finish.s(run_id).set(queue=CONTROL_QUEUE)
    callback.link_error(abort.s(run_id).set(queue=CONTROL_QUEUE))
    log_event(
        log,
        "backfill_start",
        run_id=run_id,
        total=len(series),
        to_fetch=len(stale),
        fresh=len(fresh),
        symbols=len(config.symbols),
        timeframes=",".join(config.timeframes),
    )
    try:
        result = chord(header)(callback) if stale else callback.clone(args=([],)).apply_async()
    except Exception as e:  # kombu raises its own connection errors
        raise BrokerUnavailable(f"enqueueing run {run_id} failed: {e}") from None
    return Dispatched(run_id, len(series), result, fresh=len(fresh))


def find_fresh(cache_client: redis.Redis, series: list[Series], config: BackfillConfig) -> dict:
    """Series whose cache is already current: one pipelined read, no task, no request.

    The workers make the same check (a series can turn fresh or stale meanwhile); doing it
    here first means a redeploy right after a complete run enqueues nothing but the
    callback, so no per-worker `rate_limit` stands between it and the open gate.
    """
    from workers.cache import CandleCache
    from workers.fetch import fresh_outcome, is_fresh

    now = time.time()
    cache = CandleCache(cache_client, user_id=config.user_id, exchange_id=config.exchange_id)
    n = config.candle_count
    states = cache.states([(s, s.timeframe.last_closed_start(now)) for s in series], n)
    return {
        s.name: fresh_outcome(s, st, config.min_candles)
        for s, st in zip(series, states, strict=True)
        if is_fresh(st, s.timeframe, now, n)
    }
