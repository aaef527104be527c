"""The fan-out at a bucket close: one refresh job per series, in its live queue.

Beat sends `backfill.boundary` a few seconds after each close (backfill/schedule.py); a
worker consuming the control queue runs it for every timeframe that just closed,
shortest first. Each timeframe's close is claimed in Redis first (two beats, or a
restarted one, send it twice: one fan-out runs), holds budget slots back in the reserve
for the refreshes (live work comes first in the fleet budget), and sends one
`RefreshJob` per configured symbol into `backfill.live.<timeframe>`, which every worker
consumes before any backfill queue. A refresh not started by the next close expires:
the next one fetches its tail anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import redis
from celery import current_app, shared_task

from core import jobs, keys, reserve
from core.claims import claim
from core.config import BackfillConfig, bad_symbols_message, split_symbols
from core.jobs import RefreshJob
from core.logs import log_event
from core.timeframe import Timeframe, closed_at, parse_timeframes
from workers.resources import resources

log = logging.getLogger("backfill.keeper")


@shared_task(bind=True, name=keys.BOUNDARY_TASK, acks_late=True)
def boundary(self, timeframes: list[str] | None = None) -> list[dict]:
    """Fan out the refreshes of every configured timeframe whose bucket closed at the last
    step, shortest timeframe first. `timeframes` names them instead (an operator's manual
    refresh, the benchmark's simulated 1d close): each at its latest close."""
    res = resources.get()
    config = usable_config(res.settings.backfill_config())
    now = time.time()
    if timeframes:
        closing = parse_timeframes(timeframes)
    else:
        _, closing = closed_at(parse_timeframes(list(config.timeframes)), now)
    return [  # priority order: 5m, 15m, 1h, 4h, 1d, then the others
        fan_out(self.request.id, tf, tf.floor(int(now)) * 1000, config, res.broker,
                res.budget.name, now)
        for tf in closing
    ]  # fmt: skip


def usable_config(config: BackfillConfig) -> BackfillConfig:
    """The configured run minus bad `BACKFILL_SYMBOLS` entries: one bad entry must not stop
    the refreshes of the valid ones. The bad ones are named in one error line per call
    (every bucket close, until the setting is fixed); anything else wrong still raises."""
    valid, bad = split_symbols(config.symbols)
    if bad:
        log_event(log, "bad_symbols", level=logging.ERROR, error=bad_symbols_message(bad),
                  valid=len(valid))  # fmt: skip
    return replace(config, symbols=valid).validated()


def fan_out(
    task_id: str | None,
    tf: Timeframe,
    boundary_ms: int,
    config: BackfillConfig,
    broker: redis.Redis,
    budget: str,
    now: float,
) -> dict:
    """One refresh per series of `tf` for the close at `boundary_ms`, claimed once."""
    if not claim(broker, keys.boundary_claim(tf.name, boundary_ms), task_id, 2 * tf.seconds + 60):
        return {"timeframe": tf.name, "boundary_ms": boundary_ms, "status": "duplicate"}
    refreshes = [
        RefreshJob(symbol, tf.name, config.job_options(), boundary_ms=boundary_ms)
        for symbol in config.symbols
    ]
    reserve.hold(broker, budget, len(refreshes))
    expires = max(boundary_ms / 1000 + tf.seconds - time.time(), 5.0)
    current_app.signature(jobs.refresh_group(refreshes, expires)).apply_async()
    log_event(
        log,
        "boundary_fanout",
        timeframe=tf.name,
        boundary_ms=boundary_ms,
        series=len(refreshes),
        delay_s=round(now - boundary_ms / 1000, 3),
    )
    return {"timeframe": tf.name, "boundary_ms": boundary_ms, "series": len(refreshes)}
