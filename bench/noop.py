"""No-op tasks for the engine's ceiling: the same chord shape as a run, with no work.

Imported by the benchmark's workers (`celery worker --include bench.noop`). The header
task takes the same message (a `SeriesJob`) and returns an outcome-sized record like
`backfill.series`; the callback runs on `backfill.control` like `backfill.finish` and
marks the run done in Redis.
"""

from __future__ import annotations

import time

import redis

from backfill.app import app
from core.jobs import SeriesJob
from core.outcome import Outcome
from core.settings import load_settings

_settings = load_settings()
_client: redis.Redis | None = None


def done_key(run_id: str) -> str:
    return f"bench:noop:done:{run_id}"


@app.task(name="bench.noop", rate_limit=_settings.backfill_worker_rate_limit, acks_late=True)
def noop(job: dict) -> dict:
    series = SeriesJob.from_message(job)
    return Outcome(
        series=f"{series.symbol}:{series.timeframe}",
        symbol=series.symbol,
        timeframe=series.timeframe,
        finished_at=round(time.time(), 4),
    ).to_dict()


@app.task(name="bench.noop_finish", acks_late=True)
def noop_finish(outcomes: list[dict], run_id: str) -> int:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(_settings.redis_url)
    _client.set(done_key(run_id), f"{time.time():.4f}", ex=3600)
    return len(outcomes)
