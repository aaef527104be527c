"""The benchmark's scenarios: budgeted startup backfill, seed, warm restart, scale."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from bench.stack import CpuMeter, RssSampler, Stack, WorkerSpec, log
from bench.timeline import timeline
from core.config import BackfillConfig
from core.keys import queue as queue_for
from core.run import RunStore
from core.series import Series
from core.timeframe import TIMEFRAME_PRIORITY
from workers.trace import TRACE_ENV

REALISTIC_SIM = {
    "latency_ms": [80, 150],
    "rate_limits": True,
    "key_rate": 30,
    "p429": 0.0,
    "p500": 0.0,
    "p503": 0.0,
    "ptimeout": 0.0,
    "ptruncated": 0.0,
    "pnonjson": 0.0,
    "four_hour": True,
    "cap": 300,
}
LIFTED_SIM = {**REALISTIC_SIM, "latency_ms": [0, 0], "rate_limits": False}
LIFTED_RATE = 100000.0
NOOP_CHORDS = 3
EXCHANGE_RATE = 30.0  # Coinbase's per-key limit, requests/s


class BenchError(RuntimeError):
    """The benchmark itself broke (not a missed target)."""


@dataclass
class RunResult:
    run_id: str
    total: int
    wall_s: float
    t0: float
    summary: dict
    outcomes: dict
    dispatched: float = 0.0  # when the dispatch call returned


def timed_run(stack: Stack, config: BackfillConfig, timeout: float) -> RunResult:
    """Dispatch, wait for the gate; wall time from the dispatch call to the open gate."""
    t0 = time.time()
    d = dispatch(config, redis_url=stack.redis_url)
    dispatched = time.time()
    result = wait_ready(stack.redis, d.run_id, timeout=timeout)
    wall = time.time() - t0
    if result.summary is None:
        raise BenchError(
            f"run {d.run_id} did not open its gate within {timeout:.0f}s (logs in {stack.workdir})"
        )
    outcomes = RunStore(stack.redis).outcomes(d.run_id)
    return RunResult(d.run_id, d.total, wall, t0, result.summary, outcomes, dispatched)


def startup(
    stack: Stack,
    spec: WorkerSpec,
    symbols: tuple[str, ...],
    timeframes: tuple[str, ...],
    budget: float,
    timeout: float = 300,
    keep_workers: bool = False,
) -> dict:
    """(1) full cold backfill on the realistic simulator, (3) first indicator, (5) warm restart.
    The workers trace every request (bench/timeline.py): where the run's time went."""
    stack.flush()
    stack.sim.configure(**REALISTIC_SIM)
    trace = stack.workdir / "startup-trace"
    trace.mkdir(exist_ok=True)
    spec = dataclasses.replace(spec, env={**spec.env, TRACE_ENV: str(trace)})
    stack.start_workers(spec, fleet_rate=budget)
    stack.sim.reset()
    config = BackfillConfig(symbols=symbols, timeframes=timeframes)
    log(
        f"startup backfill: {len(symbols)} x {len(timeframes)} series, budget {budget}/s, "
        f"{spec.describe()}"
    )
    run = timed_run(stack, config, timeout)
    stats = stack.sim.stats()
    requests = int(stats["requests_total"])
    floor = requests / budget
    first_tf = timeframes[0]
    firsts = [o.finished_at for o in run.outcomes.values() if o.timeframe == first_tf]
    first_s = max(firsts) - run.t0
    first_floor = len(symbols) / budget
    out = {
        "series": run.total,
        "series_ready": len(run.summary["ready"]),
        "series_failed": len(run.summary["failed"]),
        "wall_s": round(run.wall_s, 3),
        "requests": requests,
        "floor_s": round(floor, 3),
        "ratio_to_floor": round(run.wall_s / floor, 3),
        "ratio_to_exchange_floor": round(run.wall_s / (requests / EXCHANGE_RATE), 3),
        "responses_429": int(stats["responses_by_status"].get("429", 0)),
        "max_requests_in_any_second": max(
            (stats.get("max_requests_in_any_second") or {"": 0}).values()
        ),
        "first_indicator_s": round(first_s, 3),
        "first_indicator_floor_s": round(first_floor, 3),
        "first_indicator_ratio": round(first_s / first_floor, 3),
        "startup_timeline": timeline(
            trace, run.t0, run.dispatched, run.summary["opened_at"], run.t0 + run.wall_s
        ),
    }
    log(f"startup: {out}")
    # (5) warm restart right after: same workers, same cache
    stack.sim.reset()
    warm = timed_run(stack, config, 120)
    out["warm_requests"] = int(stack.sim.stats()["requests_total"])
    out["warm_gate_s"] = round(warm.wall_s, 3)
    out["warm_status"] = warm.summary["status"]
    log(f"warm restart: {out['warm_requests']} requests, gate open after {out['warm_gate_s']}s")
    if not keep_workers:
        stack.stop_workers()
    return out


def seed(stack: Stack, symbols: tuple[str, ...], timeframes: tuple[str, ...]) -> dict:
    """(2) the seed's algorithm against the same simulator and cache writer, cold cache."""
    from bench.seed import run_seed

    stack.flush()
    stack.sim.configure(**REALISTIC_SIM)
    stack.sim.reset()
    series = [Series.of(s, tf) for tf in timeframes for s in symbols]
    log(f"seed algorithm: {len(series)} series, batches of 5, 1 s pause")
    r = run_seed(series, stack.sim.url, str(stack.key_file), stack.redis_url)
    stats = stack.sim.stats()
    out = {
        "seed_wall_s": r.wall_s,
        "seed_requests": int(stats["requests_total"]),
        "seed_responses_429": int(stats["responses_by_status"].get("429", 0)),
        "seed_failed": r.failed,
    }
    log(f"seed: {out}")
    return out


def noop_chord(
    stack: Stack, symbols: tuple[str, ...], timeframes: tuple[str, ...], timeout: float
) -> float:
    """The same chord shape as a run with no-op tasks; seconds from dispatch to callback."""
    from celery import chord, group

    from bench.noop import done_key, noop, noop_finish
    from core.jobs import SeriesJob
    from core.run import new_run_id

    run_id = "noop-" + new_run_id()
    options = BackfillConfig().job_options()
    t0 = time.time()
    header = group(
        noop.si(SeriesJob(run_id, s, tf, options).to_message()).set(queue=queue_for(tf))
        for tf in timeframes
        for s in symbols
    )
    chord(header)(noop_finish.s(run_id).set(queue="backfill.control"))
    deadline = time.monotonic() + timeout
    while True:
        raw = stack.redis.get(done_key(run_id))
        if raw:
            return float(raw) - t0
        if time.monotonic() > deadline:
            raise BenchError(f"no-op chord {run_id} not done within {timeout:.0f}s")
        time.sleep(0.01)


def soak(
    stack: Stack,
    pids: list[int],
    symbols: int,
    timeframes: tuple[str, ...],
    runs: int,
    timeout: float,
    expect_s: float = 60,
) -> dict:
    """Worker RSS after run `runs` vs after run 2 of the same full-scale run (the scale
    run above was run 1): growth that keeps going is a leak, a one-off is a cache."""
    from bench.stack import tree_rss

    config = BackfillConfig(symbols=synthetic_symbols(symbols), timeframes=timeframes, full=True)
    after = [tree_rss(pids)]
    cpu_ms = []
    for i in range(2, runs + 1):
        wait_for_quiet_bucket(expect_s)
        with CpuMeter({"workers": pids}) as cpu:
            timed_run(stack, config, timeout)
        cpu_ms.append(round(cpu.used["workers"] / (symbols * len(timeframes)) * 1000, 2))
        after.append(tree_rss(pids))
        log(f"soak run {i}/{runs}: worker RSS {after[-1] / 2**20:.1f} MB")
    mb = [round(a / 2**20, 1) for a in after]
    return {
        "rss_soak_runs": runs,
        "rss_soak_mb": mb,
        "rss_soak_growth_pct": round((after[-1] - after[1]) / after[1] * 100, 2),
        "soak_worker_cpu_ms_per_series": cpu_ms,  # the same work again: the scale run's spread
    }


def wait_for_quiet_bucket(margin_s: float = 30.0) -> None:
    """Start where no 5m bucket closes within `margin_s`: a close inside a measured run
    tops it up (a refresh for every 5m series, the keeper's work billed to the startup's
    series), and a simulated close's refreshes expire at the next real one (5 s at least)."""
    left = 300 - time.time() % 300
    if left < margin_s:
        log(f"{left:.0f}s to a real 5m close, waiting for it")
        time.sleep(left + 1.0)


def synthetic_symbols(n: int) -> tuple[str, ...]:
    return tuple(f"SYN{i:04d}-USD" for i in range(1, n + 1))


def pretouch(stack: Stack, symbols: tuple[str, ...]) -> None:
    """A real exchange has its history stored; the simulator builds each product's 30-year
    daily walk on first touch (~10 ms of CPU per product, on the same cores). Touch every
    product once before measuring so that cost is not billed to the pipeline."""
    now = int(time.time())
    for sym in symbols:
        stack.sim.truth(sym, "ONE_DAY", now - 3 * 86400, now)


def scale(
    stack: Stack,
    spec: WorkerSpec,
    symbols: int,
    small: int,
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY,
    timeout: float = 600,
    profile_dir: str | None = None,
    tracemalloc: bool = False,
    soak_runs: int = 0,
) -> dict:
    """(4) the whole pipeline with latency and limits off, next to a no-op chord's ceiling."""
    stack.flush()
    stack.sim.configure(**LIFTED_SIM)
    if tracemalloc:
        spec.extra_args += ["--include", "bench.memtrace"]
    stack.start_workers(spec, fleet_rate=LIFTED_RATE, include_noop=True)
    pids = [w.pid for w in stack.workers]
    mem: dict[str, list] = {}

    def mem_snapshot(label: str) -> None:
        if tracemalloc:
            import json

            # bench.memtrace's keys (importing it here would trace this process too)
            stack.redis.set("bench:mem:request", label)
            deadline = time.monotonic() + 60
            got: dict = {}
            while len(got) < len(pids) and time.monotonic() < deadline:
                for pid in pids:
                    raw = stack.redis.get(f"bench:mem:{pid}:{label}")
                    if raw:
                        got[pid] = json.loads(raw)
                time.sleep(0.2)
            mem[label] = got

    n_series = symbols * len(timeframes)
    pretouch(stack, synthetic_symbols(symbols))
    log(f"scale: {n_series} series, {spec.describe()}, budget lifted")
    # warm-up and RSS at the small size: `small` symbols (small x 5 series)
    mem_snapshot("start")
    with RssSampler(pids) as rss_small:
        small_run = timed_run(
            stack,
            BackfillConfig(symbols=synthetic_symbols(small), timeframes=timeframes, full=True),
            timeout,
        )
    mem_snapshot("small")
    # the no-op's CPU moves by 10-20 % run to run: the median of three chords
    noop_ms_runs, ceilings = [], []
    for _ in range(NOOP_CHORDS):
        with CpuMeter({"workers": pids}) as noop_cpu:
            ceilings.append(noop_chord(stack, synthetic_symbols(symbols), timeframes, timeout))
        noop_ms_runs.append(round(noop_cpu.used["workers"] / n_series * 1000, 2))
    ceiling_s = statistics.median(ceilings)
    ceiling = n_series / ceiling_s
    log(f"ceiling: {n_series} no-op tasks in {ceiling_s:.2f}s = {ceiling:.1f}/s")
    stack.sim.reset()
    cpu = CpuMeter(
        {
            "workers": pids,
            "sim": [stack.sim.pid],
            "redis": [stack.redis_server.proc.pid],
            "dispatcher": [os.getpid()],
        },
        alone=("dispatcher",),  # the bench process: its children are the others
    )
    profiler = contextlib.nullcontext()
    if profile_dir:
        from bench.profile import Profiler

        profiler = Profiler(
            Path(profile_dir),
            {"sim": stack.sim.pid, **{f"worker{i + 1}": p for i, p in enumerate(pids)}},
        )
    # how long the big run may take (the small run's pace, with room): no close within it
    expect_s = min(60.0, 5 + small_run.wall_s * symbols / small)
    wait_for_quiet_bucket(expect_s)
    with RssSampler(pids) as rss_big, cpu, profiler:
        big = timed_run(
            stack,
            BackfillConfig(symbols=synthetic_symbols(symbols), timeframes=timeframes, full=True),
            timeout,
        )
    mem_snapshot("large")
    end_s = big.summary["opened_at"] - big.t0  # callback's clock, like the no-op's
    per_s = n_series / end_s
    stats = stack.sim.stats()
    cpu_ms = cpu.used["workers"] / n_series * 1000
    noop_ms = statistics.median(noop_ms_runs)
    out = {
        "scale_series": n_series,
        "scale_wall_s": round(end_s, 3),
        "scale_series_per_s": round(per_s, 1),
        "scale_failed": len(big.summary["failed"]),
        "scale_requests": int(stats["requests_total"]),
        "ceiling_tasks_per_s": round(ceiling, 1),
        "scale_ratio_to_ceiling": round(per_s / ceiling, 3),
        "rss_small_series": small_run.total,
        "rss_peak_small_mb": round(rss_small.peak / 2**20, 1),
        "rss_peak_large_mb": round(rss_big.peak / 2**20, 1),
        "rss_growth_pct": round((rss_big.peak - rss_small.peak) / rss_small.peak * 100, 2),
        "scale_workers": spec.describe(),
        "scale_cpu_s": cpu.used,
        "worker_cpu_ms_per_series": round(cpu_ms, 2),
        "noop_cpu_ms_per_task": round(noop_ms, 2),
        "noop_cpu_ms_runs": noop_ms_runs,
        "worker_cpu_ratio": round(cpu_ms / noop_ms, 2),
        # the kernel's part of each (system time: syscalls, thread wakeups)
        "worker_cpu_system_share": round(cpu.system["workers"] / cpu.used["workers"], 2),
        "noop_cpu_system_share": round(noop_cpu.system["workers"] / noop_cpu.used["workers"], 2),
        # every simulator process (the CpuMeter counts the tree) over one core
        "sim_cpu_share": round(cpu.used["sim"] / end_s, 3),
    }
    if soak_runs > 2:
        out.update(soak(stack, pids, symbols, timeframes, soak_runs, timeout, expect_s))
        # the same runs again, measured alike: the median is the figure, the first run's stays
        runs_ms = [round(cpu_ms, 2), *out["soak_worker_cpu_ms_per_series"]]
        out["worker_cpu_ms_median"] = round(statistics.median(runs_ms), 2)
        out["worker_cpu_ratio_median"] = round(out["worker_cpu_ms_median"] / noop_ms, 2)
    if mem:
        out["memtrace"] = mem
    if profile_dir:
        import json

        summary = profiler.summaries()
        (Path(profile_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
        out["profile"] = str(Path(profile_dir) / "summary.json")
    log(f"scale: {out}")
    stack.stop_workers()
    return out


def sim_page() -> dict:
    """The simulator's cost of one warm 300-candle page (build + render), in ms: it must
    never be what a benchmark measures (moved here from the simulator's tests)."""
    from coinbase_sim.market import Market

    market = Market(seed=11)
    now = time.time()
    end = int(now)
    worst = 0.0
    for granularity in (86400, 60, 14400):
        market.candles("BTC-USD", granularity, end - 300 * granularity, end, now)  # warm-up
        began = time.perf_counter()
        candles = market.candles("BTC-USD", granularity, end - 300 * granularity, end, now)
        market.render("BTC-USD", candles)
        worst = max(worst, time.perf_counter() - began)
    return {"sim_page_ms": round(worst * 1000, 2)}
