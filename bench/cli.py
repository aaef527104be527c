"""`python -m bench [--json] [--smoke]`: run every scenario, print a table or one JSON object.

Exits non-zero only when the benchmark itself breaks (a component fails to start, a
run never opens its gate), never because a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from bench.stack import WorkerSpec, log
from core.config import DEFAULT_SYMBOLS
from core.timeframe import TIMEFRAME_PRIORITY

TARGETS = {  # key: (comparison, value)
    "ratio_to_floor": ("<=", 0.95),
    "responses_429": ("==", 0),
    "max_requests_in_any_second": ("<=", 27),
    "speedup_vs_seed": (">=", 6.0),
    "first_indicator_ratio": ("<=", 1.2),
    "scale_ratio_to_ceiling": (">=", 0.7),
    "rss_growth_pct": ("<", 10.0),
    "warm_requests": ("==", 0),
    "warm_gate_s": ("<", 2.0),
    "sim_page_ms": ("<", 50.0),
    "worker_cpu_ratio": ("<=", 2.0),
    "sim_cpu_share": ("<", 0.5),
    "rss_soak_growth_pct": ("<", 3.0),
    "boundary_responses_429": ("==", 0),
    "large_ratio_to_floor": ("<=", 1.02),
    "large_first_indicator_ratio": ("<=", 1.2),
    "large_responses_429": ("==", 0),
    "large_stale_at_gate": ("==", 0),
    "keeper_lag_max_over_5m_s": ("<=", 1.0),
    "keeper_responses_429": ("==", 0),
    "keeper_divergences": ("==", 0),
    "binance_ratio_to_floor": ("<=", 1.05),
    "binance_responses_429": ("==", 0),
    "binance_responses_418": ("==", 0),
    "node_loss_recovery_s": ("<=", 15.0),
}


def met(key: str, value: object) -> bool | None:
    if key not in TARGETS or not isinstance(value, int | float):
        return None
    op, target = TARGETS[key]
    return {
        "<=": value <= target,
        ">=": value >= target,
        "==": value == target,
        "<": value < target,
    }[op]


def machine() -> dict:
    import subprocess

    import celery
    import kombu
    import redis as redis_py

    from backfill.embedded import redis_server_binary

    server = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True
    ).stdout.split()
    version = next((w.split("=")[1] for w in server if w.startswith("v=")), "?")
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis_server": version,
        "redis_py": redis_py.__version__,
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def sample_load(every_s: float = 5.0) -> list[float]:
    """The 1-minute load average every few seconds (other work on the machine skews runs)."""
    import threading

    loads = [os.getloadavg()[0]]

    def run() -> None:
        while True:
            time.sleep(every_s)
            loads.append(os.getloadavg()[0])

    threading.Thread(target=run, daemon=True).start()
    return loads


def parse_spec(text: str, rate_limit: str, prefetch: int | None) -> WorkerSpec:
    """NODESxPOOLxCONCURRENCY, e.g. 2xthreadsx8."""
    nodes, pool, conc = text.split("x")
    return WorkerSpec(int(nodes), pool, int(conc), rate_limit, prefetch)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--smoke", action="store_true", help="reduced run (CI): a few series, tiny scale"
    )
    p.add_argument("--budget", type=float, default=25.0, help="fleet budget, requests/s (25)")
    p.add_argument(
        "--workers",
        default="2xthreadsx8",
        help="startup fleet NODESxPOOLxCONCURRENCY (2xthreadsx8)",
    )
    p.add_argument(
        "--rate-limit",
        default="",
        help="per-node Celery rate_limit for the startup fleet ('' = none; the fleet "
        "budget paces requests)",
    )
    p.add_argument("--prefetch", type=int, default=None, help="worker --prefetch-multiplier")
    p.add_argument("--scale-workers", default="2xthreadsx8", help="scale fleet, same format")
    p.add_argument("--scale-symbols", type=int, default=500)
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="investigation: tracemalloc in the scale workers, growth per allocating line",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy the simulator and workers during the 2,500-series run into DIR",
    )
    p.add_argument(
        "--max-nodes",
        type=int,
        default=os.cpu_count() or 1,
        help="scale curve: 1, 2, 4 ... nodes up to this (default: the cores)",
    )
    p.add_argument(
        "--soak-runs",
        type=int,
        default=10,
        help="full-size scale runs on the same workers for rss_soak_growth_pct and the "
        "median worker CPU per series (10; <3: off)",
    )
    p.add_argument(
        "--sim-processes",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="simulator serving processes (default: the cores, at most 4)",
    )
    p.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="nice level of the rate-limited scenarios' workers (simulator and Redis at 0)",
    )
    p.add_argument(
        "--large",
        action="store_true",
        help="also the 1,000 x 5 cold startup at the budget (~4 min; not with --smoke)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma list of: startup,boundary,binance,seed,scale,curve,sim,node_loss",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench import scenarios
    from bench.boundary import boundary
    from bench.curve import scale_curve
    from bench.large import large
    from bench.stack import Stack
    from core.settings import load_settings

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.smoke:
        symbols, timeframes = DEFAULT_SYMBOLS[:3], ("5m", "1h")
        scale_symbols, small = 20, 4
        soak_runs, max_nodes = min(args.soak_runs, 3), min(args.max_nodes, 2)
    else:
        symbols, timeframes = DEFAULT_SYMBOLS, TIMEFRAME_PRIORITY
        scale_symbols, small = args.scale_symbols, 20
        soak_runs, max_nodes = args.soak_runs, args.max_nodes
    spec = parse_spec(args.workers, args.rate_limit, args.prefetch)
    # the keeper's fan-out reads the configured series from the workers' settings
    spec.env.update(BACKFILL_SYMBOLS=",".join(symbols), BACKFILL_TIMEFRAMES=",".join(timeframes))
    scale_spec = parse_spec(args.scale_workers, "", args.prefetch)
    # the rate-limited scenarios (startup, boundary, seed, large): the exchange's count
    # matters there; the scale runs (limits off) measure CPU, so their workers run at 0
    spec.nice = args.worker_nice
    result: dict = {
        "smoke": args.smoke,
        "budget": args.budget,
        "workers": spec.describe(),
        "machine": machine(),
    }
    large_run = args.large and not args.smoke
    products = max(0 if "scale" in skip else scale_symbols, 1000 if large_run else 0)
    t_start = time.monotonic()
    if "sim" not in skip:
        result.update(scenarios.sim_page())
    loads = sample_load()
    try:
        with Stack(synthetic_products=products, sim_processes=args.sim_processes) as stack:
            if "startup" not in skip:
                result.update(
                    scenarios.startup(
                        stack, spec, symbols, timeframes, args.budget, keep_workers=True
                    )
                )
            if "boundary" not in skip:
                settle = load_settings().backfill_settle_s
                result.update(boundary(stack, spec, symbols, timeframes, args.budget, settle))
            stack.stop_workers()
            if "binance" not in skip:
                from bench.binance import binance_startup

                b_symbols = tuple(s.replace("-USD", "USDT") for s in symbols)
                result.update(binance_startup(stack, spec, b_symbols, timeframes))
            if "seed" not in skip:
                result.update(scenarios.seed(stack, symbols, timeframes))
                if "wall_s" in result:
                    result["speedup_vs_seed"] = round(result["seed_wall_s"] / result["wall_s"], 2)
            if "scale" not in skip:
                result.update(
                    scenarios.scale(
                        stack,
                        scale_spec,
                        scale_symbols,
                        small,
                        profile_dir=args.profile,
                        tracemalloc=args.tracemalloc,
                        soak_runs=soak_runs,
                    )
                )
                if "curve" not in skip:
                    result.update(
                        scale_curve(stack, scale_spec, scale_symbols, small, max_nodes, result)
                    )
            if large_run:
                settle = load_settings().backfill_settle_s
                result.update(large(stack, spec, args.budget, settle_s=settle))
            result["logs"] = str(stack.workdir)
        if "node_loss" not in skip:  # its own stack: two -c 1 nodes at the defaults
            from bench.node_loss import node_loss_recovery

            loss = node_loss_recovery()
            result.update(node_loss_recovery_s=loss["node_loss_recovery_s"],
                          node_loss_gate_after_kill_s=loss["gate_after_kill_s"])  # fmt: skip
    except Exception as e:  # the benchmark itself broke
        log(f"benchmark failed: {type(e).__name__}: {e}")
        result["error"] = f"{type(e).__name__}: {e}"
        if args.json:
            print(json.dumps(result))
        return 1
    result["bench_s"] = round(time.monotonic() - t_start, 1)
    result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["load_avg_1m_max"] = round(max(loads), 2)
    result["targets_met"] = {k: met(k, result[k]) for k in TARGETS if k in result}
    for k, v in result.pop("boundary_targets_met", {}).items():
        result["targets_met"][f"boundary_{k}"] = v
    for when in ("5m", "1d"):  # the keeper: one request per symbol per close
        key = f"keeper_requests_per_{when}_close"
        if key in result:
            result["targets_met"][key] = result[key] == result[f"keeper_series_{when}_close"] // (
                1 if when == "5m" else len(timeframes)
            )
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def print_table(result: dict) -> None:
    rows = [(k, v) for k, v in result.items() if k not in ("machine", "targets_met")]
    rows += [
        (f"target {k}", "met" if v else "MISSED")
        for k, v in result["targets_met"].items()
        if k not in TARGETS
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        target = ""
        if k in TARGETS:
            op, t = TARGETS[k]
            target = f"  target {op} {t}: " + ("met" if met(k, v) else "MISSED")
        print(f"{k:<{width}}  {v}{target}")
    m = result["machine"]
    print(
        f"machine: {m['cores']} cores, Python {m['python']}, redis-server {m['redis_server']}, "
        f"celery {m['celery']}, kombu {m['kombu']}"
    )
