"""Faults the system survives, each with real processes: worker kills, a Redis restart, a
hostile exchange, a fleet on the public endpoint's budget."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from helpers import assert_matches_truth, cached, task_lines, wait_until

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from core import keys
from core.config import DEFAULT_SYMBOLS, BackfillConfig
from core.run import RunStore
from core.series import Series

pytestmark = pytest.mark.slow
SYMBOLS = DEFAULT_SYMBOLS[:10]


def check_run(rclient, sim, run_id: str, config: BackfillConfig, t0: float) -> None:
    for symbol in config.symbols:
        for tf in config.timeframes:
            s = Series.of(symbol, tf)
            stamps = [m["timestamp"] for m in cached(rclient, s)]
            assert len(stamps) == len(set(stamps)), f"duplicate members in {s}"
            assert_matches_truth(rclient, sim, s, config.candle_count, t0)
    assert int(rclient.get(keys.run(run_id, "callbacks"))) == 1


def stop_mid_task(app, worker, runs: RunStore, run_id: str) -> tuple[int, dict]:
    """Freeze the worker's pool process (SIGSTOP) at a moment its node reports it running a
    series task whose outcome is not yet written: the task cannot finish before the kill that
    follows. The node still lists a task as active after the pool process has written its
    outcome and until the parent reads the result, so "active" alone is not "mid-task"."""

    def frozen_mid_task():
        [child] = worker.children()  # -c 1: one pool process
        os.kill(child, signal.SIGSTOP)
        active = app.control.inspect(timeout=1.0).active() or {}
        held = [
            t
            for tasks in active.values()
            for t in tasks
            if t["worker_pid"] == child and t["name"] == keys.SERIES_TASK
        ]
        done = runs.outcomes(run_id)
        held = [
            t for t in held if f"{t['args'][0]['symbol']}:{t['args'][0]['timeframe']}" not in done
        ]
        if held:
            return child, held[0]
        os.kill(child, signal.SIGCONT)  # between two tasks: let it run on and look again
        return None

    return wait_until(frozen_mid_task, 30, "a pool process running a series task", every=0.01)


@pytest.mark.parametrize("what", ["pool-process", "worker-node"])
def test_sigkill_mid_run(rclient, redis_url, sim, start_workers, tmp_path, what):
    from backfill.app import app

    sim.configure(latency_ms=[150, 250])
    w1, _w2 = start_workers(2)
    config = BackfillConfig(symbols=SYMBOLS)
    t0 = time.time()
    d = dispatch(config, redis_url=redis_url)
    runs = RunStore(rclient)
    wait_until(lambda: runs.completed(d.run_id) >= 8, 60, "a few series done")
    child, held = stop_mid_task(app, w1, runs, d.run_id)
    series = f"{held['args'][0]['symbol']}:{held['args'][0]['timeframe']}"
    if what == "pool-process":
        os.kill(child, signal.SIGKILL)
    else:
        w1.kill()
    assert series not in runs.outcomes(d.run_id)  # the kill landed mid-task ...
    assert runs.completed(d.run_id) < 50  # ... and mid-run
    result = wait_ready(rclient, d.run_id, timeout=60)
    assert result.exit_code == 0, result.summary
    assert series in result.summary["ready"]
    # the killed task's message was delivered again and ran to the end (once)
    assert len(task_lines(tmp_path, held["id"], "received")) == 2
    assert len(task_lines(tmp_path, held["id"], "succeeded")) == 1
    check_run(rclient, sim, d.run_id, config, t0)


def test_redis_restart_mid_run(tmp_path, sim, key_file):
    """README: "Redis restarts (same data): workers reconnect; a task running meanwhile
    finishes and runs once more when its message returns; ... the chord counts each series
    once". One pool process is frozen inside a series task for the whole outage, so a task
    is certainly running meanwhile; the run dispatched before the restart must open its gate
    as ready by itself (no second dispatch)."""
    from backfill.app import app, use_redis
    from backfill.embedded import EmbeddedRedis
    from backfill.local import WorkerProcess, wait_for_workers

    server = EmbeddedRedis(data_dir=tmp_path / "redis", persist=True).start()
    workers = []
    child = None
    try:
        use_redis(server.url)
        env = {
            "REDIS_URL": server.url,
            "COINBASE_API_BASE_URL": sim.url,
            "COINBASE_API_KEY_FILE": str(key_file),
            "BACKFILL_VISIBILITY_TIMEOUT_S": "8",
            "BACKFILL_LOG_JSON": "1",
        }
        workers = [
            WorkerProcess(
                env, name=f"r{i}@%h", concurrency=1, log_path=tmp_path / f"worker{i}.log"
            ).start()
            for i in range(2)
        ]
        wait_for_workers(app, 2)
        sim.configure(latency_ms=[150, 250])
        client = redis.Redis.from_url(server.url)
        config = BackfillConfig(symbols=SYMBOLS)
        t0 = time.time()
        d = dispatch(config, redis_url=server.url)
        wait_until(lambda: RunStore(client).completed(d.run_id) >= 10, 60, "a few series done")
        child, held = stop_mid_task(app, workers[0], RunStore(client), d.run_id)
        series = f"{held['args'][0]['symbol']}:{held['args'][0]['timeframe']}"
        assert series not in RunStore(client).outcomes(d.run_id)  # frozen mid-task ...
        assert RunStore(client).completed(d.run_id) < 50  # ... and mid-run
        server.stop()
        # both nodes see the outage before Redis comes back (same port, same data: AOF)
        wait_until(
            lambda: all(
                "Connection to broker lost" in (tmp_path / f"worker{i}.log").read_text()
                for i in range(2)
            ),
            30,
            "both workers to lose the broker",
        )
        server.start()
        os.kill(child, signal.SIGCONT)
        child = None
        client = redis.Redis.from_url(server.url)
        result = wait_ready(client, d.run_id, timeout=90)
        assert result.exit_code == 0, result.summary
        assert result.summary["completed"] == len(config.symbols) * len(config.timeframes)
        assert series in result.summary["ready"]
        # the task that ran through the outage finished (its message may come back and run
        # once more), and the chord counted the series once (check_run: one callback)
        assert 1 <= len(task_lines(tmp_path, held["id"], "succeeded")) <= 2
        assert len(task_lines(tmp_path, held["id"], "received")) <= 2
        check_run(client, sim, d.run_id, config, t0)
    finally:
        if child is not None:
            os.kill(child, signal.SIGCONT)
        for w in workers:
            w.stop(10)
        server.cleanup()


def test_hostile_exchange_all_series_complete_within_budget(rclient, redis_url, sim, start_workers):
    sim.configure(
        p429=0.3, p500=0.05, p503=0.05, ptimeout=0.03, timeout_hold_s=4.0, latency_ms=[5, 20]
    )
    start_workers(
        2, env={"BACKFILL_REQUEST_TIMEOUT_S": "1.5", "BACKFILL_WORKER_RATE_LIMIT": "20/s"}
    )
    config = BackfillConfig(symbols=SYMBOLS)
    t0 = time.time()
    d = dispatch(config, redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=240)
    assert result.exit_code == 0, result.summary
    stats = sim.stats()
    by_status = stats["responses_by_status"]
    assert by_status.get("429", 0) > 10 and (by_status.get("500", 0) + by_status.get("503", 0)) > 3
    assert result.summary["retries"] > 10  # the retries are counted in the gate summary
    assert max(stats["max_requests_in_any_second"].values()) <= 25
    sim.configure(p429=0.0, p500=0.0, p503=0.0, ptimeout=0.0)
    check_run(rclient, sim, d.run_id, config, t0)


def test_three_workers_share_the_public_budget(rclient, redis_url, sim, start_workers):
    sim.configure(latency_ms=[20, 40])
    start_workers(
        3,
        env={
            "COINBASE_API_KEY_FILE": "",
            "BACKFILL_FLEET_RATE": "8",
            "BACKFILL_WORKER_RATE_LIMIT": "5/s",
        },
    )
    config = BackfillConfig(symbols=SYMBOLS[:8])
    d = dispatch(config, redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.exit_code == 0, result.summary
    stats = sim.stats()
    assert stats["requests_by_endpoint"].get("public", 0) >= 40
    assert stats["responses_by_status"].get("429", 0) == 0
    peak = stats["max_requests_in_any_second"]
    assert peak and max(peak.values()) <= 8, peak
    assert max(peak.values()) >= 6  # the fleet did use its budget (3 x 5/s would be 15)
