"""`--large`: a cold startup of 1,000 synthetic symbols x 5 timeframes at the 25/s budget,
latency and the 30/s key limit on (~4.5 minutes). Where sustained pacing, the first
timeframe's held-back slots and the top-up before the gate meet at scale.

Then the keeper on the same cache (issue 24): a simulated 5m close (only 5m closes) and a
simulated 1d close (every timeframe closes), each as in bench/boundary.py. The keeper
fetches only 5m and derives 15m, 1h, 4h and 1d from the cache: requests per close (the
symbol count for both), lag per timeframe at the 1d close, 429s, and the audit's
divergences (its sample checked against the exchange's native candles)."""

from __future__ import annotations

import dataclasses
import threading
import time

from bench.boundary import simulated_close
from bench.scenarios import (
    EXCHANGE_RATE,
    REALISTIC_SIM,
    pretouch,
    synthetic_symbols,
    timed_run,
    wait_for_quiet_bucket,
)
from bench.stack import Stack, WorkerSpec, log
from bench.timeline import max_in_any_second, read
from core import keys
from core.config import BackfillConfig
from core.timeframe import TIMEFRAME_PRIORITY
from workers.trace import TRACE_ENV


class FirstPass:
    """When every first-timeframe series first had an outcome. The run's outcomes can't
    say: the top-up before the gate rewrites the 5m outcomes of a run that spans a close."""

    def __init__(self, stack: Stack, suffix: str, count: int) -> None:
        self.stack, self.suffix, self.count = stack, suffix.encode(), count
        self.done_at: float | None = None
        self._stop = threading.Event()
        self._before = stack.redis.get(keys.RUN_LATEST)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        r = self.stack.redis
        while not self._stop.wait(0.25):
            run_id = r.get(keys.RUN_LATEST)
            if run_id is None or run_id == self._before:
                continue
            fields = r.hkeys(keys.run(run_id.decode(), "outcomes"))
            if sum(1 for f in fields if f.endswith(self.suffix)) >= self.count:
                self.done_at = time.time()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def large(
    stack: Stack,
    spec: WorkerSpec,
    budget: float,
    symbols: int = 1000,
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY,
    timeout: float = 900,
    settle_s: float = 3.0,
) -> dict:
    stack.flush()
    stack.sim.configure(**REALISTIC_SIM)
    syms = synthetic_symbols(symbols)
    pretouch(stack, syms)
    trace = stack.workdir / "sends"
    trace.mkdir(exist_ok=True)
    # the keeper fans out the configured series: the workers' settings name the same ones
    env = {**spec.env, TRACE_ENV: str(trace), "BACKFILL_SYMBOLS": ",".join(syms),
           "BACKFILL_TIMEFRAMES": ",".join(timeframes)}  # fmt: skip
    traced = dataclasses.replace(spec, env=env)
    stack.start_workers(traced, fleet_rate=budget)
    stack.sim.reset()
    log(f"large: {symbols} x {len(timeframes)} series, budget {budget}/s, {spec.describe()}")
    first = FirstPass(stack, ":" + timeframes[0], symbols)
    run = timed_run(stack, BackfillConfig(symbols=syms, timeframes=timeframes), timeout)
    first.stop()
    stats = stack.sim.stats()
    requests = int(stats["requests_total"])
    first_s = (first.done_at or float("inf")) - run.t0
    end = run.t0 + run.wall_s  # the startup's sends, not the keeper's below
    sends = [r.sent for t in read(trace) for r in t.requests if r.sent and r.sent < end]
    late = sum(int(stack.redis.get(k) or 0) for k in stack.redis.keys("backfill:budget:*:late"))
    crowded = sum(
        int(stack.redis.get(k) or 0) for k in stack.redis.keys("backfill:budget:*:crowded")
    )
    out = keeper(stack, BackfillConfig(symbols=syms, timeframes=timeframes), symbols,
                 timeframes, settle_s, budget)  # fmt: skip
    stack.stop_workers()
    out |= {
        "large_series": run.total,
        "large_failed": len(run.summary["failed"]),
        "large_wall_s": round(run.wall_s, 3),
        "large_requests": requests,
        "large_ratio_to_floor": round(run.wall_s / (requests / budget), 3),
        "large_ratio_to_exchange_floor": round(run.wall_s / (requests / EXCHANGE_RATE), 3),
        "large_first_indicator_s": round(first_s, 3),
        "large_first_indicator_ratio": round(first_s / (symbols / budget), 3),
        "large_responses_429": int(stats["responses_by_status"].get("429", 0)),
        "large_max_requests_in_any_second": max(
            (stats.get("max_requests_in_any_second") or {"": 0}).values()
        ),
        "large_max_sends_in_any_second": max_in_any_second(sends),
        "large_budget_late_wakes": late,
        "large_budget_near_misses": crowded,
        "large_stale_at_gate": len(run.summary.get("stale_at_gate") or []),
        "large_topped_up": requests - run.total,
    }
    log(f"large: {out}")
    return out


def keeper(
    stack: Stack,
    config: BackfillConfig,
    symbols: int,
    timeframes: tuple[str, ...],
    settle_s: float,
    budget: float,
) -> dict:
    """A simulated 5m close, then a simulated 1d close, on the filled cache."""
    timeout = 2 * symbols / budget + 60

    def current() -> None:
        # clear of a real close (refreshes expire at the next 5m close), then every series
        # brought current as the keeper keeps it (no beat runs here: a real close since
        # the startup left a bucket behind, which the keeper would refetch natively)
        wait_for_quiet_bucket(2 * symbols / budget + 40)
        timed_run(stack, config, 300)

    current()
    five = simulated_close(stack, config, timeframes[:1], settle_s, timeout)
    current()
    day = simulated_close(stack, config, timeframes, settle_s, timeout)
    divergences = int(
        stack.redis.hget(keys.derive_audit(getattr(config, "exchange", "coinbase")),
                         "divergences") or 0
    )  # fmt: skip
    worst = day.lag("max")
    out = {
        "keeper_series_5m_close": five.series,
        "keeper_announced_5m_close": len(five.arrived),
        "keeper_requests_per_5m_close": five.refresh_requests,
        "keeper_series_1d_close": day.series,
        "keeper_announced_1d_close": len(day.arrived),
        "keeper_requests_per_1d_close": day.refresh_requests,
        "keeper_audit_requests_1d_close": day.audit_requests,
        "keeper_sim_requests_1d_close": int(day.stats["requests_total"]),
        "keeper_lag_p50_s": day.lag("p50"),
        "keeper_lag_max_s": worst,
        "keeper_lag_max_over_5m_s": round(max(worst.values()) - worst.get(timeframes[0], 0.0), 3),
        "keeper_responses_429": int(five.stats["responses_by_status"].get("429", 0))
        + int(day.stats["responses_by_status"].get("429", 0)),
        "keeper_divergences": divergences,
    }
    log(f"large keeper: {out}")
    return out
