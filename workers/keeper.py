"""The fan-out at a bucket close: one request per symbol, the longer timeframes derived.

Beat sends `backfill.boundary` a few seconds after each close (backfill/schedule.py); a
worker consuming the control queue runs it for every timeframe that just closed,
shortest first. Each timeframe's close is claimed in Redis first (two beats, or a
restarted one, send it twice: one fan-out runs), holds budget slots back in the reserve
for the refreshes (live work comes first in the fleet budget), and sends one
`RefreshJob` per configured symbol into `backfill.live.<timeframe>`, which every worker
consumes before any backfill queue. A refresh not started by the next close expires:
the next one fetches its tail anyway.

Where longer timeframes close with the finest configured one (at a 1d close: 15m, 1h, 4h
and 1d with 5m), only the finest is fetched: each symbol's refresh carries the longer
timeframes in `derive` and builds them from the cache once its own candle is written
(workers/derive.py, core/derive.py), so a close costs one request per symbol. Series an
audit found diverging (or every series of an exchange found diverging) are refreshed
natively instead. A rotating sample of the derived series, `BACKFILL_AUDIT_SHARE` of the
close's requests, is checked against the exchange afterwards (the `backfill.audit` queue,
behind everything else).
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
from core.derive import plan
from core.jobs import RefreshJob
from core.logs import log_event
from core.timeframe import Timeframe, closed_at, parse_timeframes
from workers.derive import native_marks
from workers.resources import resources

log = logging.getLogger("backfill.keeper")


@shared_task(bind=True, name=keys.BOUNDARY_TASK, acks_late=True)
def boundary(self, timeframes: list[str] | None = None) -> list[dict]:
    """Fan out the refreshes of every configured timeframe whose bucket closed at the last
    step, shortest timeframe first. `timeframes` names them instead (an operator's manual
    refresh, the benchmark's simulated 1d close): each at its latest close.

    Where the finest configured timeframe closes with longer ones, only the finest is
    fetched: its refresh of each symbol derives the longer ones from the cache after it
    wrote its candle (workers/derive.py), except for series switched back to native."""
    res = resources.get()
    now = time.time()
    out = []
    for config in res.settings.backfill_configs():  # every served exchange, in order
        config = usable_config(config)
        out += _close(self.request.id, res, config, timeframes, now)
    return out


def _close(task_id, res, config: BackfillConfig, timeframes: list[str] | None, now: float):
    """One exchange's refreshes of this close (claimed per exchange and timeframe)."""
    configured = parse_timeframes(list(config.timeframes))
    if timeframes:
        closing = parse_timeframes(timeframes)
    else:
        _, closing = closed_at(configured, now)
    finest = min(configured, key=lambda tf: tf.seconds)
    derivable = plan(finest, closing) if finest in closing else []
    claimed = {
        tf.name: claim(
            res.broker,
            keys.boundary_claim(tf.name, tf.floor(int(now)) * 1000, config.exchange),
            task_id,
            2 * tf.seconds + 60,
        )
        for tf in closing
    }
    derived = [tf for tf in derivable if claimed[tf.name] and claimed[finest.name]]
    share = res.settings.backfill_audit_share
    budget = res.exchange(config.exchange)[1].name
    return fan_out_close(closing, finest, derived, claimed, config, res.broker, budget, now, share)


def fan_out_close(
    closing: list[Timeframe],
    finest: Timeframe,
    derived: list[Timeframe],
    claimed: dict[str, bool],
    config: BackfillConfig,
    broker: redis.Redis,
    budget: str,
    now: float,
    audit_share: float = 0.0,
) -> list[dict]:
    """The refreshes of one close: the finest timeframe's carrying the derived ones per
    symbol, a native refresh for every other claimed series (priority order)."""
    native, off = native_marks(broker, config.user_id, config.exchange_id, config.exchange)
    derive_for = {
        s: tuple(tf.name for tf in derived if not off and f"{s}:{tf.name}" not in native)
        for s in config.symbols
    }
    per_tf: dict[str, list[RefreshJob]] = {}
    for tf in closing:
        if not claimed[tf.name]:
            continue
        boundary_ms = tf.floor(int(now)) * 1000
        symbols = [s for s in config.symbols if tf.name not in derive_for[s]]
        per_tf[tf.name] = [
            RefreshJob(
                s,
                tf.name,
                config.job_options(),
                boundary_ms=boundary_ms,
                derive=derive_for[s] if derived and tf == finest else (),
            )
            for s in symbols
        ]
    requests = sum(len(j) for j in per_tf.values())
    audited = _audit_sample(broker, derive_for, audit_share, requests)
    if audited:
        per_tf[finest.name] = [
            replace(j, audit=tuple(tf for tf in j.derive if (j.symbol, tf) in audited))
            for j in per_tf[finest.name]
        ]
    reserve.hold(broker, budget, requests)
    out = []
    for tf in closing:
        boundary_ms = tf.floor(int(now)) * 1000
        if not claimed[tf.name]:
            out.append({"timeframe": tf.name, "boundary_ms": boundary_ms, "status": "duplicate"})
            continue
        refreshes = per_tf[tf.name]
        n_derived = sum(1 for s in config.symbols if tf.name in derive_for[s])
        if refreshes:
            expires = max(boundary_ms / 1000 + tf.seconds - time.time(), 5.0)
            current_app.signature(jobs.refresh_group(refreshes, expires)).apply_async()
        log_event(
            log,
            "boundary_fanout",
            timeframe=tf.name,
            boundary_ms=boundary_ms,
            series=len(refreshes) + n_derived,
            native=len(refreshes),
            derived=n_derived,
            audited=sum(1 for _, t in audited if t == tf.name),
            delay_s=round(now - boundary_ms / 1000, 3),
        )
        out.append(
            {
                "timeframe": tf.name,
                "boundary_ms": boundary_ms,
                "series": len(refreshes) + n_derived,
                "derived": n_derived,
                "audited": sum(1 for _, t in audited if t == tf.name),
            }
        )
    return out


def _audit_sample(
    broker: redis.Redis, derive_for: dict[str, tuple[str, ...]], share: float, requests: int
) -> set[tuple[str, str]]:
    """A rotating sample of this close's derived series, `share` of its requests (at least
    one while the audit is on and anything is derived)."""
    pairs = [(s, tf) for s, tfs in derive_for.items() for tf in tfs]
    if share <= 0 or not pairs:
        return set()
    k = min(len(pairs), max(1, round(share * requests)))
    end = broker.incrby(keys.DERIVE_AUDIT_CURSOR, k)
    return {pairs[i % len(pairs)] for i in range(end - k, end)}


def usable_config(config: BackfillConfig) -> BackfillConfig:
    """The configured run minus bad `BACKFILL_SYMBOLS` entries: one bad entry must not stop
    the refreshes of the valid ones. The bad ones are named in one error line per call
    (every bucket close, until the setting is fixed); anything else wrong still raises."""
    valid, bad = split_symbols(config.symbols, config.exchange)
    if bad:
        log_event(log, "bad_symbols", level=logging.ERROR, valid=len(valid),
                  error=bad_symbols_message(bad, exchange_name=config.exchange))  # fmt: skip
    return replace(config, symbols=valid).validated()
