"""`backfill demo` / `backfill run`: the whole system in one command on a bare machine.

Starts what is missing (embedded Redis unless REDIS_URL is set; for the demo, a simulator
per exchange: Coinbase with a key it minted, Binance public), two worker processes,
dispatches one run over every exchange, shows progress, waits for the gate, prints a
summary, and stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.config import BackfillConfig
from core.settings import Settings


@dataclass
class StackOptions:
    simulate: bool = True
    workers: int = 2
    concurrency: int = 1  # see README: a rate-limited node runs best with one process
    keep: bool = False
    keep_fresh: bool = False  # after the gate, run beat and refresh at every close until stopped
    json_out: bool = False
    timeout: float = 600.0
    sim_args: dict = field(default_factory=dict)
    worker_env: dict = field(default_factory=dict)


def run_stack(
    settings: Settings, configs: BackfillConfig | list[BackfillConfig], opts: StackOptions
) -> int:
    """Run the job end to end; returns the gate's exit code (0 ready, 3 not ready, 1 timeout)."""
    from rich.console import Console

    from backfill.app import app, use_redis
    from backfill.dispatch import check_redis, dispatch
    from backfill.embedded import EmbeddedRedis
    from backfill.local import WorkerProcess, stop_all, wait_for_workers
    from backfill.progress import watch_with_bar
    from backfill.report import print_summary

    console = Console(stderr=True)
    configs = [c.validated() for c in (configs if isinstance(configs, list) else [configs])]
    config = configs[0]  # bad input fails before anything starts
    names = [c.exchange for c in configs]
    if not opts.simulate and "coinbase" in names:
        preflight(settings, next(c for c in configs if c.exchange == "coinbase"))
    workdir = Path(tempfile.mkdtemp(prefix="backfill-"))
    stack = contextlib.ExitStack()
    keep = opts.keep
    try:
        # REDIS_URL from the environment or .env; otherwise an embedded server of our own
        redis_url = settings.redis_url if "redis_url" in settings.model_fields_set else None
        if not redis_url:
            server = EmbeddedRedis(data_dir=workdir / "redis").start()
            if not keep:
                stack.callback(server.stop)
            redis_url = server.url
            console.print(f"[dim]embedded Redis at {redis_url}[/dim]")
        use_redis(redis_url)
        client = check_redis(redis_url)
        # the run's series for the keeper too (its fan-out reads them in the workers)
        env = {"REDIS_URL": redis_url, **config_env(configs), **opts.worker_env}
        sims = {}
        if opts.simulate:
            from coinbase_sim.keys import write_key_file
            from coinbase_sim.process import SimProcess

            key_file = workdir / "cdp_api_key.json"
            write_key_file(key_file, "ec")
            for name in names:
                extra = {"exchange": "binance"} if name == "binance" else {}
                sim = SimProcess(port=0, key_files=[str(key_file)], **extra, **opts.sim_args)
                sims[name] = sim
                if not keep:
                    stack.callback(sim.stop)
                console.print(f"[dim]{name} simulator at {sim.url}[/dim]")
            if "coinbase" in sims:
                env.update({"COINBASE_API_BASE_URL": sims["coinbase"].url,
                            "COINBASE_API_KEY_FILE": str(key_file)})  # fmt: skip
            if "binance" in sims:
                env["BINANCE_API_BASE_URL"] = sims["binance"].url
        workers = [
            WorkerProcess(
                env,
                name=f"demo{i + 1}@%h",
                concurrency=opts.concurrency,
                log_path=workdir / f"worker{i + 1}.log",
            )
            for i in range(opts.workers)
        ]
        stack.callback(stop_all, workers)
        for w in workers:
            w.start()
        wait_for_workers(app, opts.workers)
        t0 = time.monotonic()
        dispatched = dispatch(configs, redis_url=redis_url, settings=_with(settings, env))
        result = watch_with_bar(client, dispatched.run_id, opts.timeout)
        elapsed = time.monotonic() - t0
        summary = result.summary or {}
        stats = {name: sim.stats() for name, sim in sims.items()}
        print_summary(console, summary, dispatched.total, elapsed)
        if summary and not opts.json_out:
            from backfill.indicators import indicator_rows, print_indicators

            rows = [r for c in configs for r in indicator_rows(client, c, summary)]
            print_indicators(console, rows)
        if keep:
            console.print(f"[dim]kept running: Redis {redis_url}; logs in {workdir}[/dim]")
        record = {
            "run_id": dispatched.run_id,
            "series_total": dispatched.total,
            "series_ok": summary.get("completed", 0) - len(summary.get("failed", [])),
            "series_ready": len(summary.get("ready", [])),
            "series_failed": len(summary.get("failed", [])),
            "requests": sum(s.get("requests_total", 0) for s in stats.values())
            if stats
            else summary.get("requests", 0),
            "responses_429": sum(_status_count(s, "429") for s in stats.values()),
            "exchanges": {name: _exchange_record(name, summary, stats) for name in names},
            "elapsed_s": round(elapsed, 3),
            "gate_open": result.summary is not None,
            "status": summary.get("status", "timeout"),
            "logs": str(workdir),
        }
        if opts.json_out:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        if opts.keep_fresh and result.summary is not None:
            keep_fresh(console, env, workdir, client, config, settings, stack)
        return result.exit_code
    finally:
        stack.close()


def config_env(configs: BackfillConfig | list[BackfillConfig]) -> dict[str, str]:
    """The run's settings as the environment of the processes we start."""
    configs = configs if isinstance(configs, list) else [configs]
    config = configs[0]
    env = {
        "BACKFILL_EXCHANGES": ",".join(c.exchange for c in configs),
        "BACKFILL_TIMEFRAMES": ",".join(config.timeframes),
        "BACKFILL_CANDLE_COUNT": str(config.candle_count),
        "BACKFILL_MIN_CANDLES": str(config.min_candles),
        "BACKFILL_USER_ID": str(config.user_id),
    }
    for c in configs:
        prefix = "BACKFILL" if c.exchange == "coinbase" else c.exchange.upper()
        env[f"{prefix}_SYMBOLS"] = ",".join(c.symbols)
        env[f"{prefix}_EXCHANGE_ID"] = str(c.exchange_id)
    return env


def _with(settings: Settings, env: dict[str, str]) -> Settings:
    """These settings as the started processes see them (simulator URLs, key, exchanges):
    the dispatcher then names the same fleet budgets as the workers."""
    fields = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    return Settings.model_validate({**settings.model_dump(), **fields})


def _exchange_record(name: str, summary: dict, stats: dict) -> dict:
    """One exchange's figures in `--json`: the gate's counts and its simulator's."""
    sim = stats.get(name, {})
    out = {
        **summary.get("exchanges", {}).get(name, {}),
        "requests": sim.get("requests_total"),
        "responses_429": _status_count(sim, "429"),
    }
    if name == "binance" and sim:
        out.update(responses_418=_status_count(sim, "418"), max_weight_in_any_60s=_max_weight(sim))
    return out


def _status_count(stats: dict, status: str) -> int:
    return int(stats.get("responses_by_status", {}).get(status, 0))


def _max_weight(stats: dict) -> int:
    """The simulator's own count: the most weight any IP used in any 60 s."""
    return max(stats.get("max_weight_in_any_60s", {}).values() or [0])


def keep_fresh(console, env, workdir, client, config, settings, stack) -> None:
    """Start beat next to the workers and report freshness each minute until SIGINT/SIGTERM."""
    import signal
    import threading

    from backfill.freshness import freshness
    from backfill.local import BeatProcess
    from backfill.status import print_freshness

    beat = BeatProcess(env, log_path=workdir / "beat.log").start()
    stack.callback(beat.stop)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print("[bold]keeping the cache fresh at every bucket close[/bold] (Ctrl-C to stop)")
    while not stop.wait(60.0):  # a report each minute; the wait itself ends on a signal
        print_freshness(freshness(client, client, config, settings))
        if beat.proc is not None and beat.proc.poll() is not None:
            console.print(f"[red]beat exited ({beat.proc.returncode}); see {workdir}/beat.log")
            return


def preflight(settings: Settings, config: BackfillConfig) -> None:
    """One request before starting anything (`workers.preflight`, run as a process with
    this environment): a wrong key or no route is one clear error now."""
    import subprocess

    from core.errors import BackfillError

    proc = subprocess.run(
        [sys.executable, "-m", "workers.preflight", config.symbols[0]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise BackfillError(
            proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"preflight failed (exit {proc.returncode})"
        )
