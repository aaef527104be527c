"""Dispatch a run: plan it, record it, enqueue it as one chord of series jobs.

The control plane never imports the workers' code: it sends the jobs' messages
(core/jobs.py) by task name, into each timeframe's queue, with `backfill.finish` as the
chord callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from celery import Celery
from celery.result import AsyncResult

from backfill.plan import Plan, plan_run
from core import jobs, reserve
from core.config import BackfillConfig
from core.errors import BrokerUnavailable, InvalidInput
from core.exchanges import budget_name
from core.jobs import SeriesJob
from core.logs import log_event
from core.run import RunStore, new_run_id
from core.settings import Settings, load_settings, redact_url
from core.timeframe import priority_key

log = logging.getLogger("backfill.dispatch")


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


def record(runs: RunStore, plans: list[Plan]) -> str:
    """Create the run's record (with the fresh series' outcomes); returns its id."""
    run_id = new_run_id()
    runs.create(run_id, [s.name for p in plans for s in p.series], [p.config for p in plans])
    runs.record(run_id, *(o for p in plans for o in p.fresh.values()))
    return run_id


def series_jobs(run_id: str, plans: list[Plan]) -> list[SeriesJob]:
    """One job per stale series, every exchange's first timeframe before any exchange's
    next; the run's first timeframe is live work (the indicator service starts on it), so
    its jobs may take their budget's reserve."""
    first = min((p.first_timeframe for p in plans), key=priority_key)
    jobs_ = [
        SeriesJob(run_id, s.symbol, s.timeframe.name, p.config.job_options(), p.config.full,
                  live=s.timeframe.name == first)
        for p in plans
        for s in p.stale
    ]  # fmt: skip
    return sorted(jobs_, key=lambda j: priority_key(j.timeframe))  # stable: exchange order


def enqueue(app: Celery, run_id: str, run_jobs: list[SeriesJob]) -> AsyncResult:
    """One chord: the jobs in their timeframes' queues, then the callback."""
    try:
        return app.signature(jobs.run_chord(run_id, run_jobs)).apply_async()
    except Exception as e:  # kombu raises its own connection errors
        raise BrokerUnavailable(f"enqueueing run {run_id} failed: {e}") from None


def dispatch(
    config: BackfillConfig | list[BackfillConfig],
    *,
    app: Celery | None = None,
    redis_url: str | None = None,
    settings: Settings | None = None,
) -> Dispatched:
    """Validate, record the run, and enqueue its chord; returns the run id.

    Several configs (one per exchange) make one run with one gate. The API key configured
    here is parsed too (a corrupt key fails now, not in every task) and names the fleet
    budget; it never travels in a message.
    """
    if app is None:
        from backfill.app import app
    settings = settings or load_settings()
    configs = [c.validated() for c in (config if isinstance(config, list) else [config])]
    names = [c.exchange for c in configs]
    if len(set(names)) != len(names):
        raise InvalidInput(f"one config per exchange, got {names}")
    creds = settings.credentials() if "coinbase" in names else None
    url = redis_url or app.conf.broker_url
    client = check_redis(url)
    cache_url = settings.cache_redis_url or url
    cache_client = check_redis(cache_url) if cache_url != url else client
    plans = [plan_run(c, cache_client) for c in configs]
    run_id = record(RunStore(client), plans)
    run_jobs = series_jobs(run_id, plans)
    for name in names:
        live = sum(j.live for j in run_jobs if j.options.exchange == name)
        reserve.hold(client, budget_name(name, creds.name if creds else None), live)
    total, fresh = sum(len(p.series) for p in plans), sum(len(p.fresh) for p in plans)
    log_event(
        log,
        "backfill_start",
        run_id=run_id,
        total=total,
        to_fetch=len(run_jobs),
        fresh=fresh,
        exchanges=",".join(names),
        symbols=sum(len(c.symbols) for c in configs),
        timeframes=",".join(dict.fromkeys(tf for c in configs for tf in c.timeframes)),
    )
    result = enqueue(app, run_id, run_jobs)
    return Dispatched(run_id, total, result, fresh=fresh)
