"""Issue 15: a bucket close where every timeframe closes at once (a 1d close).

A real 1d close cannot be waited for, and the workers and the keeper read the host's
clock (the simulator's clock offset would move only the exchange). So the bench makes
the cache look exactly as it does right after such a close: filled first, then each
series' newest candle is taken out again (and its `checked` mark moved back one bucket),
so every refresh is a one-request tail that brings one closed candle back. It then sends
one `backfill.boundary` naming every timeframe, on beat's own entry's queue (from
`backfill.schedule.boundary_entries`): the same fan-out, in the same order (shortest
first), as beat's at a 1d close, where every timeframe closes at once.

Lag = when the series' close event arrived on `channel:candle:close:...` (published after
the member is written) - the simulated close, i.e. the trigger time - settle.

Since issue 24 the keeper fetches only the finest timeframe and derives the others from
the cache: a close costs one request per symbol (`requests_equal_symbols`, counted by the
workers per close in `backfill:keeper:requests:*`, audits apart), and every timeframe's
lag follows the finest one's.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from bench.scenarios import REALISTIC_SIM, BenchError, timed_run, wait_for_quiet_bucket
from bench.stack import Stack, WorkerSpec, log
from core import keys
from core.config import BackfillConfig
from core.timeframe import timeframe as get_timeframe


def take_back_newest(stack: Stack, config: BackfillConfig) -> int:
    """Remove each series' newest member and move its checked mark back; series touched."""
    pipe = stack.redis.pipeline(transaction=False)
    for tf in config.timeframes:
        for s in config.symbols:
            pipe.zpopmax(keys.candles(config.user_id, config.exchange_id, s, tf))
    popped = pipe.execute()
    n = 0
    for (tf, s), got in zip(
        [(tf, s) for tf in config.timeframes for s in config.symbols], popped, strict=True
    ):
        if not got:
            continue
        n += 1
        before = int(got[0][1]) - get_timeframe(tf).seconds * 1000
        checked = keys.checked(config.user_id, config.exchange_id, s, tf)
        pipe.hset(checked, "upto", before)
    pipe.execute()
    return n


def clear_claims(stack: Stack) -> None:
    """Forget which closes were fanned out and refreshed: a second simulated close in the
    same real bucket is then refreshed again."""
    for pattern in ("backfill:boundary:*", "backfill:refresh:*", "backfill:keeper:requests:*"):
        for k in stack.redis.scan_iter(pattern):
            stack.redis.delete(k)


@dataclass
class Close:
    """What one simulated close cost and how long each series took to be announced."""

    series: int
    arrived: dict[tuple[str, str], float]
    close_at: float
    stats: dict
    refresh_requests: int
    audit_requests: int
    audits_sent: int
    lags: dict[str, list[float]] = field(default_factory=dict)

    def lag(self, q: str) -> dict[str, float]:
        pick = statistics.median if q == "p50" else max
        return {tf: round(pick(v), 3) for tf, v in self.lags.items()}


def simulated_close(
    stack: Stack,
    config: BackfillConfig,
    timeframes: tuple[str, ...],
    settle_s: float,
    timeout: float,
) -> Close:
    """Take back every newest candle of `timeframes`, send one `backfill.boundary` naming
    them (beat's entry, beat's queue), wait for every close event, then for the audits."""
    from backfill.app import app
    from backfill.schedule import boundary_entries
    from core.timeframe import parse_timeframes

    clear_claims(stack)
    only = BackfillConfig(
        symbols=config.symbols, timeframes=timeframes, user_id=config.user_id,
        exchange_id=config.exchange_id,
    )  # fmt: skip
    series = take_back_newest(stack, only)
    time.sleep(1.2)  # an idle fleet before the close: the budget's window is empty
    pubsub = stack.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("channel:candle:close:*")
    audit_key = keys.derive_audit(getattr(config, "exchange", "coinbase"))
    audits_before = _audits(stack, audit_key)
    stack.sim.reset()
    t_trigger = time.time()
    (entry,) = boundary_entries(parse_timeframes(",".join(timeframes)), settle_s).values()
    sent = app.send_task(entry["task"], args=(list(timeframes),), **entry["options"])
    arrived: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    while len(arrived) < series and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "pmessage":
            symbol, tf = msg["channel"].decode().rsplit(":", 2)[-2:]
            arrived.setdefault((symbol, tf), time.time())
    pubsub.close()
    fanned = sent.get(timeout=30)
    audits = sum(int(row.get("audited", 0)) for row in fanned)
    wait_deadline = time.monotonic() + 120
    while _audits(stack, audit_key) - audits_before < audits and time.monotonic() < wait_deadline:
        time.sleep(0.25)
    time.sleep(0.5)  # the last responses' stats
    closes = {get_timeframe(tf).floor(int(t_trigger)) * 1000 for tf in timeframes}
    counts = [stack.redis.hgetall(keys.keeper_requests(c)) for c in closes]
    out = Close(
        series=series,
        arrived=arrived,
        close_at=t_trigger - settle_s,
        stats=stack.sim.stats(),
        refresh_requests=sum(int(c.get(b"refresh", 0)) for c in counts),
        audit_requests=sum(int(c.get(b"audit", 0)) for c in counts),
        audits_sent=audits,
    )
    for (_, tf), at in arrived.items():
        out.lags.setdefault(tf, []).append(at - out.close_at)
    return out


def _audits(stack: Stack, key: str) -> int:
    raw = stack.redis.hmget(key, "audits", "errors")
    return sum(int(x or 0) for x in raw)


def boundary(
    stack: Stack,
    spec: WorkerSpec,
    symbols: tuple[str, ...],
    timeframes: tuple[str, ...],
    budget: float,
    settle_s: float,
    timeout: float = 120,
) -> dict:
    stack.sim.configure(**REALISTIC_SIM)
    if not stack.workers:
        stack.flush()
        stack.start_workers(spec, fleet_rate=budget)
    config = BackfillConfig(symbols=symbols, timeframes=timeframes)
    wait_for_quiet_bucket(len(symbols) / budget + 40)
    timed_run(stack, config, 300)  # the cache filled (and current) first: 0 requests if it is
    # as at a 1d close: one fan-out for every timeframe, shortest first, on beat's queue
    c = simulated_close(stack, config, timeframes, settle_s, timeout)
    stack.stop_workers()
    if not c.arrived:
        raise BenchError(f"no refresh announced within {timeout:.0f}s (logs in {stack.workdir})")
    p50, worst = c.lag("p50"), c.lag("max")
    first_within = settle_s + 1.5
    all_within = settle_s + len(symbols) / budget + 2.0
    requests = int(c.stats["requests_total"])
    out = {
        "boundary_series": c.series,
        "boundary_announced": len(c.arrived),
        "boundary_requests": requests,
        "boundary_refresh_requests": c.refresh_requests,
        "boundary_audit_requests": c.audit_requests,
        "boundary_responses_429": int(c.stats["responses_by_status"].get("429", 0)),
        "boundary_max_requests_in_any_second": max(
            (c.stats.get("max_requests_in_any_second") or {"": 0}).values()
        ),
        "boundary_settle_s": settle_s,
        "boundary_lag_p50_s": p50,
        "boundary_lag_max_s": worst,
        "boundary_first_tf_within_s": round(first_within, 3),
        "boundary_all_within_s": round(all_within, 3),
        "boundary_targets_met": {
            "first_tf_within": worst.get(timeframes[0], float("inf")) <= first_within,
            "all_within": len(c.arrived) == c.series and max(worst.values()) <= all_within,
            "requests_equal_symbols": c.refresh_requests == len(symbols),
            "every_tf_within_1s_of_first": max(worst.values())
            <= worst.get(timeframes[0], float("inf")) + 1.0,
        },
    }
    log(f"boundary: {out}")
    return out
