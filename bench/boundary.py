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
"""

from __future__ import annotations

import statistics
import time

from bench.scenarios import REALISTIC_SIM, BenchError, timed_run
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


def wait_for_quiet_bucket(margin_s: float = 30.0) -> None:
    """Refreshes expire at the next 5m close (5 s at least): not in its last `margin_s`."""
    left = 300 - time.time() % 300
    if left < margin_s:
        log(f"boundary: {left:.0f}s to a real 5m close, waiting for it")
        time.sleep(left + 1.0)


def boundary(
    stack: Stack,
    spec: WorkerSpec,
    symbols: tuple[str, ...],
    timeframes: tuple[str, ...],
    budget: float,
    settle_s: float,
    timeout: float = 120,
) -> dict:
    from backfill.app import app
    from backfill.schedule import boundary_entries
    from core.timeframe import parse_timeframes

    stack.sim.configure(**REALISTIC_SIM)
    if not stack.workers:
        stack.flush()
        stack.start_workers(spec, fleet_rate=budget)
    config = BackfillConfig(symbols=symbols, timeframes=timeframes)
    timed_run(stack, config, 300)  # the cache filled first (0 requests if it already is)
    wait_for_quiet_bucket()
    series = take_back_newest(stack, config)
    time.sleep(1.2)  # an idle fleet before the close: the budget's window is empty
    pubsub = stack.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("channel:candle:close:*")
    stack.sim.reset()
    t_trigger = time.time()
    # as at a 1d close: one fan-out for every timeframe, shortest first, on beat's queue
    (entry,) = boundary_entries(parse_timeframes(",".join(timeframes)), settle_s).values()
    app.send_task(entry["task"], args=(list(timeframes),), **entry["options"])
    arrived: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    while len(arrived) < series and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "pmessage":
            symbol, tf = msg["channel"].decode().rsplit(":", 2)[-2:]
            arrived.setdefault((symbol, tf), time.time())
    pubsub.close()
    time.sleep(0.5)  # the last responses' stats
    stats = stack.sim.stats()
    stack.stop_workers()
    if not arrived:
        raise BenchError(f"no refresh announced within {timeout:.0f}s (logs in {stack.workdir})")
    close = t_trigger - settle_s
    lags: dict[str, list[float]] = {}
    for (_, tf), at in arrived.items():
        lags.setdefault(tf, []).append(at - close)
    p50 = {tf: round(statistics.median(v), 3) for tf, v in lags.items()}
    worst = {tf: round(max(v), 3) for tf, v in lags.items()}
    first_within = settle_s + 1.5
    all_within = settle_s + series / budget + 2.0
    out = {
        "boundary_series": series,
        "boundary_announced": len(arrived),
        "boundary_requests": int(stats["requests_total"]),
        "boundary_responses_429": int(stats["responses_by_status"].get("429", 0)),
        "boundary_max_requests_in_any_second": max(
            (stats.get("max_requests_in_any_second") or {"": 0}).values()
        ),
        "boundary_settle_s": settle_s,
        "boundary_lag_p50_s": p50,
        "boundary_lag_max_s": worst,
        "boundary_first_tf_within_s": round(first_within, 3),
        "boundary_all_within_s": round(all_within, 3),
        "boundary_targets_met": {
            "first_tf_within": worst.get(timeframes[0], float("inf")) <= first_within,
            "all_within": len(arrived) == series and max(worst.values()) <= all_within,
            "requests_equal_series": int(stats["requests_total"]) == series,
        },
    }
    log(f"boundary: {out}")
    return out
