"""Faults the system survives, each with real processes: worker kills, a Redis restart, a
hostile exchange, a fleet on the public endpoint's budget."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from helpers import assert_matches_truth, cached, wait_until

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from backfill.run import RunStore
from backfill.series import Series
from backfill.settings import DEFAULT_SYMBOLS, BackfillConfig

pytestmark = pytest.mark.slow
SYMBOLS = DEFAULT_SYMBOLS[:10]


def check_run(rclient, sim, run_id: str, config: BackfillConfig, t0: float) -> None:
    for symbol in config.symbols:
        for tf in config.timeframes:
            s = Series.of(symbol, tf)
            stamps = [m["timestamp"] for m in cached(rclient, s)]
            assert len(stamps) == len(set(stamps)), f"duplicate members in {s}"
            assert_matches_truth(rclient, sim, s, config.candle_count, t0)
    assert int(rclient.get(RunStore.key(run_id, "callbacks"))) == 1


@pytest.mark.parametrize("what", ["pool-process", "worker-node"])
def test_sigkill_mid_run(rclient, redis_url, sim, start_workers, what):
    sim.configure(latency_ms=[150, 250])
    w1, _w2 = start_workers(2)
    config = BackfillConfig(symbols=SYMBOLS)
    t0 = time.time()
    d = dispatch(config, redis_url=redis_url)
    runs = RunStore(rclient)
    wait_until(lambda: runs.completed(d.run_id) >= 8, 60, "a few series done")
    if what == "pool-process":
        victims = w1.children()
        assert victims
        for pid in victims[:1]:
            os.kill(pid, signal.SIGKILL)
    else:
        w1.kill()
    assert runs.completed(d.run_id) < 50  # the kill landed mid-run
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.exit_code == 0, result.summary
    check_run(rclient, sim, d.run_id, config, t0)


def test_redis_restart_mid_run(tmp_path, sim, key_file):
    from backfill.app import app, use_redis
    from backfill.embedded import EmbeddedRedis
    from backfill.local import WorkerProcess, wait_for_workers

    server = EmbeddedRedis(data_dir=tmp_path / "redis", persist=True).start()
    workers = []
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
            WorkerProcess(env, name=f"r{i}@%h", log_path=tmp_path / f"w{i}.log").start()
            for i in range(2)
        ]
        wait_for_workers(app, 2)
        sim.configure(latency_ms=[150, 250])
        client = redis.Redis.from_url(server.url)
        config = BackfillConfig(symbols=SYMBOLS)
        t0 = time.time()
        d = dispatch(config, redis_url=server.url)
        wait_until(lambda: RunStore(client).completed(d.run_id) >= 10, 60, "a few series done")
        server.restart()  # same port, same data dir (AOF)
        client = redis.Redis.from_url(server.url)
        result = wait_ready(client, d.run_id, timeout=90)
        run_id = d.run_id
        if result.summary is None or result.exit_code != 0:  # failed loudly: a second dispatch
            again = dispatch(config, redis_url=server.url)
            result = wait_ready(client, again.run_id, timeout=90)
            run_id = again.run_id
        assert result.exit_code == 0, result.summary
        check_run(client, sim, run_id, config, t0)
    finally:
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
