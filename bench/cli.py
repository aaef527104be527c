"""`python -m bench [--json] [--smoke]`: run every scenario, print a table or one JSON object.

Exits non-zero only when the benchmark itself breaks (a component fails to start, a
run never opens its gate), never because a target is missed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from backfill.settings import DEFAULT_SYMBOLS
from backfill.timeframe import TIMEFRAME_PRIORITY
from bench.stack import WorkerSpec, log

TARGETS = {  # key: (comparison, value)
    "ratio_to_floor": ("<=", 1.15),
    "responses_429": ("==", 0),
    "speedup_vs_seed": (">=", 5.0),
    "first_indicator_ratio": ("<=", 1.2),
    "scale_ratio_to_ceiling": (">=", 0.7),
    "rss_growth_pct": ("<", 10.0),
    "warm_requests": ("==", 0),
    "warm_gate_s": ("<", 2.0),
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
    import os
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
    }


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
        "--patch",
        default="",
        help="experiment: comma list of bench/patches.py patches applied in the workers",
    )
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
    p.add_argument("--skip", default="", help="comma list of: startup,seed,scale")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench import scenarios
    from bench.stack import Stack

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.smoke:
        symbols, timeframes = DEFAULT_SYMBOLS[:3], ("5m", "1h")
        scale_symbols, small = 20, 4
    else:
        symbols, timeframes = DEFAULT_SYMBOLS, TIMEFRAME_PRIORITY
        scale_symbols, small = args.scale_symbols, 20
    spec = parse_spec(args.workers, args.rate_limit, args.prefetch)
    scale_spec = parse_spec(args.scale_workers, "", args.prefetch)
    if args.patch:
        for s in (spec, scale_spec):
            s.extra_args += ["--include", "bench.patches"]
            s.env["BENCH_PATCHES"] = args.patch
    result: dict = {
        "smoke": args.smoke,
        "budget": args.budget,
        "workers": spec.describe(),
        "machine": machine(),
        **({"patches": args.patch} if args.patch else {}),
    }
    t_start = time.monotonic()
    try:
        with Stack(synthetic_products=0 if "scale" in skip else scale_symbols) as stack:
            if "startup" not in skip:
                result.update(scenarios.startup(stack, spec, symbols, timeframes, args.budget))
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
                    )
                )
            result["logs"] = str(stack.workdir)
    except Exception as e:  # the benchmark itself broke
        log(f"benchmark failed: {type(e).__name__}: {e}")
        result["error"] = f"{type(e).__name__}: {e}"
        if args.json:
            print(json.dumps(result))
        return 1
    result["bench_s"] = round(time.monotonic() - t_start, 1)
    result["targets_met"] = {k: met(k, result[k]) for k in TARGETS if k in result}
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def print_table(result: dict) -> None:
    rows = [(k, v) for k, v in result.items() if k not in ("machine", "targets_met")]
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
