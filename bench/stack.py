"""What a benchmark runs against: one embedded Redis, the simulator, worker processes."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

REPO_ROOT = str(Path(__file__).resolve().parent.parent)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class WorkerSpec:
    """How the fleet is started: nodes x pool x concurrency, and the per-node rate limit."""

    nodes: int = 2
    pool: str = "threads"
    concurrency: int = 8
    rate_limit: str = ""  # BACKFILL_WORKER_RATE_LIMIT; "" = no Celery rate limit
    prefetch: int | None = None  # --prefetch-multiplier override (None: celeryconfig's 1)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # Workers run at this nice level, the simulator and Redis at 0: on a machine they share,
    # the stand-in exchange (on its own hosts in reality) is never starved by what it
    # measures, so it counts arrivals when they arrive.
    nice: int = 0

    def describe(self) -> str:
        rl = self.rate_limit or "none"
        pf = "" if self.prefetch is None else f", prefetch x{self.prefetch}"
        nice = f", nice {self.nice}" if self.nice else ""
        return (
            f"{self.nodes} node(s) x -P {self.pool} -c {self.concurrency}, "
            f"rate_limit {rl}{pf}{nice}"
        )


class Stack:
    """Redis + simulator for the whole benchmark; worker fleets come and go per scenario."""

    def __init__(self, synthetic_products: int = 0, seed: int = 7, sim_processes: int = 1) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
        self._stack = contextlib.ExitStack()
        self.synthetic_products = synthetic_products
        self.seed = seed
        self.sim_processes = sim_processes  # >1: the simulator is not the bottleneck
        self.workers: list = []
        self._fleet_no = 0

    def __enter__(self) -> Stack:
        from backfill.app import use_redis
        from backfill.embedded import EmbeddedRedis
        from coinbase_sim.keys import write_key_file
        from coinbase_sim.process import SimProcess

        (self.workdir / "redis").mkdir()
        self.redis_server = EmbeddedRedis(data_dir=self.workdir / "redis").start()
        self._stack.callback(self.redis_server.stop)
        self.redis_url = self.redis_server.url
        use_redis(self.redis_url)
        self.redis = redis.Redis.from_url(self.redis_url)
        self.key_file = self.workdir / "cdp_api_key.json"
        write_key_file(self.key_file, "ec")
        # this process dispatches: the key names the budget whose reserve it holds back,
        # the one the workers share (as in a deployment, where both read the same settings)
        os.environ["COINBASE_API_KEY_FILE"] = str(self.key_file)
        self.sim = SimProcess(
            port=0,
            seed=self.seed,
            key_files=[str(self.key_file)],
            synthetic_products=self.synthetic_products,
            processes=self.sim_processes,
            render_cache_mb=64,
        )
        self._stack.callback(self.sim.stop)
        self._stack.callback(self.stop_workers)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def flush(self) -> None:
        self.redis.flushall()

    def worker_env(self, fleet_rate: float, rate_limit: str) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "COINBASE_API_BASE_URL": self.sim.url,
            "COINBASE_API_KEY_FILE": str(self.key_file),
            "BACKFILL_FLEET_RATE": str(fleet_rate),
            "BACKFILL_WORKER_RATE_LIMIT": rate_limit,
            "BACKFILL_LOG_JSON": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])),
        }

    def start_workers(
        self, spec: WorkerSpec, fleet_rate: float, include_noop: bool = False
    ) -> list:
        from backfill.app import app
        from backfill.local import WorkerProcess, wait_for_workers

        self.stop_workers()
        self._fleet_no += 1
        env = {**self.worker_env(fleet_rate, spec.rate_limit), **spec.env}
        extra, includes = [], ["bench.noop"] if include_noop else []
        args = iter(spec.extra_args)
        for a in args:  # celery takes one --include (comma list): the last one would win
            if a in ("-I", "--include"):
                includes += next(args).split(",")
            else:
                extra.append(a)
        if includes:
            extra += ["--include", ",".join(includes)]
        if spec.prefetch is not None:
            extra += ["--prefetch-multiplier", str(spec.prefetch)]
        for i in range(spec.nodes):  # no -Q: every configured queue, as in production
            w = WorkerProcess(
                env,
                name=f"bench{self._fleet_no}-{i + 1}@%h",
                concurrency=spec.concurrency,
                pool=spec.pool,
                log_path=self.workdir / f"worker{self._fleet_no}-{i + 1}.log",
                extra_args=extra,
                nice=spec.nice,
            )
            w.start()
            self.workers.append(w)
        wait_for_workers(app, spec.nodes, timeout=90)
        return self.workers

    def stop_workers(self) -> None:
        from backfill.local import stop_all

        stop_all(self.workers, timeout=15)
        self.workers = []


def tree_rss(pids: list[int]) -> int:
    """Bytes of resident memory of these processes and all their children."""
    import psutil

    total = 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs = [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for q in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += q.memory_info().rss
    return total


class RssSampler:
    """Peak summed RSS of the worker process trees, sampled every `every` seconds."""

    def __init__(self, pids: list[int], every: float = 0.1) -> None:
        self.pids, self.every = pids, every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pids))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self.peak = tree_rss(self.pids)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pids))


class CpuMeter:
    """CPU seconds (user + system) each group of process trees used while inside."""

    def __init__(self, groups: dict[str, list[int]], alone: tuple[str, ...] = ()) -> None:
        self.groups = groups
        self.alone = alone  # groups measured without their children
        self.used: dict[str, float] = {}
        self.system: dict[str, float] = {}  # of `used`, the kernel's share (syscalls, wakeups)
        self._start: dict[str, tuple[float, float]] = {}

    @staticmethod
    def _cpu(pids: list[int], children: bool = True) -> tuple[float, float]:
        """(user + system, system) seconds of these processes (and their children)."""
        import psutil

        total = system = 0.0
        for pid in pids:
            try:
                p = psutil.Process(pid)
                procs = [p, *p.children(recursive=True)] if children else [p]
            except psutil.NoSuchProcess:
                continue
            for q in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    t = q.cpu_times()
                    total += t.user + t.system
                    system += t.system
        return total, system

    def __enter__(self) -> CpuMeter:
        self._start = {k: self._cpu(v, k not in self.alone) for k, v in self.groups.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        for k, v in self.groups.items():
            total, system = self._cpu(v, k not in self.alone)
            self.used[k] = round(total - self._start[k][0], 2)
            self.system[k] = round(system - self._start[k][1], 2)
