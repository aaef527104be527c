"""The Binance startup (issue 23): 25 symbols x 5 timeframes cold, against the Binance
personality of the simulator with its latency and its weight limit per IP per minute.

`binance_ratio_to_floor` is the wall time from dispatch to the open gate over the weight
floor: the requests the run made at the rate the budget plans (`BINANCE_WEIGHT_LIMIT x
BINANCE_WEIGHT_SHARE / 60 / 2` klines a second). The simulator's own counts give the 429s,
the 418s and the most weight any IP used in any 60 s.
"""

from __future__ import annotations

from bench.scenarios import timed_run
from bench.stack import Stack, WorkerSpec, log
from core.config import DEFAULT_BINANCE_SYMBOLS, BackfillConfig
from core.settings import load_settings
from core.timeframe import TIMEFRAME_PRIORITY


def binance_startup(
    stack: Stack,
    spec: WorkerSpec,
    symbols: tuple[str, ...] = DEFAULT_BINANCE_SYMBOLS,
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY,
    latency_ms: tuple[int, int] = (80, 150),
) -> dict:
    from coinbase_sim.process import SimProcess

    settings = load_settings()
    rate = settings.binance_fleet_rate()
    with SimProcess(port=0, seed=stack.seed, exchange="binance") as sim:
        sim.configure(latency_ms=list(latency_ms), weight_limit=settings.binance_weight_limit)
        stack.flush()
        env = {"BACKFILL_EXCHANGES": "binance", "BINANCE_API_BASE_URL": sim.url}
        stack.start_workers(WorkerSpec(**{**spec.__dict__, "env": {**spec.env, **env}}), 25.0)
        sim.reset()
        config = BackfillConfig(symbols=symbols, timeframes=timeframes, exchange="binance")
        log(f"binance startup: {len(symbols)} x {len(timeframes)} series, {rate:g} klines/s")
        run = timed_run(stack, config, 300)
        stats = sim.stats()
        stack.stop_workers()
    requests = int(stats["requests_by_endpoint"].get("klines", 0))
    floor = requests / rate
    out = {
        "binance_series": run.total,
        "binance_series_ready": len(run.summary["ready"]),
        "binance_wall_s": round(run.wall_s, 3),
        "binance_requests": requests,
        "binance_floor_s": round(floor, 3),
        "binance_ratio_to_floor": round(run.wall_s / floor, 3) if floor else None,
        "binance_responses_429": int(stats["responses_429"]),
        "binance_responses_418": int(stats["responses_418"]),
        "binance_max_weight_in_any_60s": max(stats["max_weight_in_any_60s"].values() or [0]),
        "binance_weight_budget_per_min": round(rate * 60 * 2),
    }
    log(f"binance startup: {out}")
    return out
