"""The fan-out at a bucket close: one refresh task per series, in its live queue.

Beat sends `backfill.boundary()` a few seconds after each close (backfill/schedule.py); a
worker consuming the control queue runs this for every timeframe that just closed,
shortest first. Each timeframe's close is claimed in Redis first (two beats, or a
restarted one, send it twice: one fan-out runs), holds budget slots back for the
refreshes (the live refresh comes first in the fleet budget), and sends one
`backfill.refresh` per configured symbol into `backfill.live.<timeframe>`, which every
worker consumes before any backfill queue. A refresh not started by the next close
expires: the next one fetches its tail anyway.
"""

from __future__ import annotations

import logging
import math
import time

import redis
from celery import group

from backfill.app import app
from backfill.dispatch import hold_back
from core import keys
from core.claims import claim
from core.config import BackfillConfig
from core.credentials import budget_name
from core.logs import log_event
from core.settings import load_settings
from core.timeframe import Timeframe, parse_timeframes

log = logging.getLogger("backfill.keeper")


@app.task(bind=True, name=keys.BOUNDARY_TASK, acks_late=True)
def boundary(self, timeframes: list[str] | None = None) -> list[dict]:
    """Fan out the refreshes of every configured timeframe whose bucket closed at the last
    step, shortest timeframe first. `timeframes` names them instead (an operator's manual
    refresh, the benchmark's simulated 1d close): each at its latest close."""
    settings = load_settings()
    config = settings.backfill_config().validated()
    broker = _redis(settings.redis_url)
    creds = settings.credentials()  # parsed once per close, not per timeframe
    budget = budget_name(creds.name if creds else None)
    chosen = parse_timeframes(timeframes or list(config.timeframes))
    now = time.time()
    step = math.gcd(*(tf.seconds for tf in chosen))
    closed_at = int(now) - int(now) % step
    done = []
    for tf in chosen:  # priority order: 5m, 15m, 1h, 4h, 1d, then the others
        if timeframes or closed_at % tf.seconds == 0:
            close_ms = tf.floor(int(now)) * 1000
            done.append(fan_out(self.request.id, tf, close_ms, config, broker, budget, now))
    return done


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
    options = config.task_options()
    options.pop("full", None)
    symbols = list(config.symbols)
    hold_back(broker, budget, len(symbols))
    expires = boundary_ms / 1000 + tf.seconds
    group(
        app.signature(
            keys.REFRESH_TASK,
            args=(symbol, tf.name, options),
            kwargs={"boundary_ms": boundary_ms},
            queue=keys.live_queue(tf.name),
            expires=max(expires - time.time(), 5.0),
            immutable=True,
        )
        for symbol in symbols
    ).apply_async()
    log_event(
        log,
        "boundary_fanout",
        timeframe=tf.name,
        boundary_ms=boundary_ms,
        series=len(symbols),
        delay_s=round(now - boundary_ms / 1000, 3),
    )
    return {"timeframe": tf.name, "boundary_ms": boundary_ms, "series": len(symbols)}


_clients: dict = {}


def _redis(url: str) -> redis.Redis:
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=10)
    return _clients[url]
