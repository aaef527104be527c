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
from core.credentials import budget_name
from core.errors import BrokerUnavailable
from core.jobs import SeriesJob
from core.logs import log_event
from core.run import RunStore, new_run_id
from core.settings import Settings, load_settings, redact_url

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


def record(runs: RunStore, p: Plan) -> str:
    """Create the run's record (with the fresh series' outcomes); returns its id."""
    run_id = new_run_id()
    runs.create(run_id, [s.name for s in p.series], p.config)
    runs.record(run_id, *p.fresh.values())
    return run_id


def series_jobs(run_id: str, p: Plan) -> list[SeriesJob]:
    """One job per stale series; the run's first timeframe is live work (the indicator
    service starts on it), so its jobs may take the budget's reserve."""
    c = p.config
    return [
        SeriesJob(run_id, s.symbol, s.timeframe.name, c.job_options(), c.full,
                  live=s.timeframe.name == p.first_timeframe)
        for s in p.stale
    ]  # fmt: skip


def enqueue(app: Celery, run_id: str, run_jobs: list[SeriesJob]) -> AsyncResult:
    """One chord: the jobs in their timeframes' queues, then the callback."""
    try:
        return app.signature(jobs.run_chord(run_id, run_jobs)).apply_async()
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
    run_jobs = series_jobs(run_id, p)
    reserve.hold(client, budget_name(creds.name if creds else None), sum(j.live for j in run_jobs))
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
    result = enqueue(app, run_id, run_jobs)
    return Dispatched(run_id, len(p.series), result, fresh=len(p.fresh))
