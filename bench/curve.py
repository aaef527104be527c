"""Scale curve: series/s and the no-op chord ceiling for 1, 2, 4 ... worker nodes.

Efficiency at n nodes is series/s at n / (n x series/s at 1): 1.0 means every node adds
a whole node's throughput. Run after `scenarios.scale` (products touched, budget lifted);
the point at the scale fleet's own size reuses that run's figures.
"""

from __future__ import annotations

import dataclasses

from bench.scenarios import LIFTED_RATE, LIFTED_SIM, noop_chord, synthetic_symbols, timed_run
from bench.stack import Stack, WorkerSpec, log
from core.config import BackfillConfig
from core.timeframe import TIMEFRAME_PRIORITY


def node_counts(max_nodes: int) -> list[int]:
    counts, n = [], 1
    while n < max_nodes:
        counts.append(n)
        n *= 2
    return [*counts, max_nodes]


def scale_point(
    stack: Stack,
    spec: WorkerSpec,
    symbols: int,
    small: int,
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY,
    timeout: float = 600,
) -> dict:
    """One fleet size: warm-up run, no-op ceiling, then the timed full-size run."""
    stack.flush()
    stack.sim.configure(**LIFTED_SIM)
    stack.start_workers(spec, fleet_rate=LIFTED_RATE, include_noop=True)
    n_series = symbols * len(timeframes)

    def config(n: int) -> BackfillConfig:
        return BackfillConfig(symbols=synthetic_symbols(n), timeframes=timeframes, full=True)

    timed_run(stack, config(small), timeout)
    ceiling = n_series / noop_chord(stack, synthetic_symbols(symbols), timeframes, timeout)
    run = timed_run(stack, config(symbols), timeout)
    per_s = n_series / (run.summary["opened_at"] - run.t0)
    stack.stop_workers()
    log(f"scale curve: {spec.describe()}: {per_s:.1f} series/s, ceiling {ceiling:.1f}/s")
    return {
        "nodes": spec.nodes,
        "series_per_s": round(per_s, 1),
        "ceiling_tasks_per_s": round(ceiling, 1),
    }


def scale_curve(
    stack: Stack,
    spec: WorkerSpec,
    symbols: int,
    small: int,
    max_nodes: int,
    known: dict,
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY,
) -> dict:
    """`known`: the scale run's result (its fleet size is not run twice)."""
    points = []
    for n in node_counts(max_nodes):
        if n == spec.nodes and "scale_series_per_s" in known:
            points.append(
                {
                    "nodes": n,
                    "series_per_s": known["scale_series_per_s"],
                    "ceiling_tasks_per_s": known["ceiling_tasks_per_s"],
                }
            )
            continue
        one = dataclasses.replace(spec, nodes=n, extra_args=list(spec.extra_args))
        points.append(scale_point(stack, one, symbols, small, timeframes))
    base = points[0]["series_per_s"] / points[0]["nodes"]
    for p in points:
        p["efficiency"] = round(p["series_per_s"] / (p["nodes"] * base), 3)
    return {"scale_curve": points}
