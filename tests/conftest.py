"""Shared fixtures: a real redis-server, the simulator over real HTTP, real worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from backfill.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis")).start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    from backfill.app import use_redis

    use_redis(redis_server.url)
    return redis_server.url


@pytest.fixture
def rclient(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def key_file(tmp_path_factory) -> Path:
    from coinbase_sim.keys import write_key_file

    path = tmp_path_factory.mktemp("keys") / "cdp_api_key.json"
    write_key_file(path, "ec")
    return path


@pytest.fixture(scope="session")
def sim_session(key_file: Path):
    from coinbase_sim.process import SimProcess

    with SimProcess(port=0, seed=7, key_files=[str(key_file)]) as sim:
        fixed = {"seed", "key_files", "synthetic_products"}
        sim.defaults = {k: v for k, v in sim.config().items() if k not in fixed}
        yield sim


@pytest.fixture
def sim(sim_session):
    """The session's simulator with its start-up settings and zeroed stats."""
    sim_session.configure(**sim_session.defaults)
    sim_session.reset()
    return sim_session


@pytest.fixture(scope="session")
def binance_session():
    from coinbase_sim.process import SimProcess

    with SimProcess(port=0, seed=7, exchange="binance") as sim:
        fixed = {"seed", "key_files", "synthetic_products", "exchange"}
        sim.defaults = {k: v for k, v in sim.config().items() if k not in fixed}
        yield sim


@pytest.fixture
def binance(binance_session):
    """The session's Binance simulator with its start-up settings, zeroed stats and bans."""
    binance_session.configure(**binance_session.defaults)
    binance_session.reset()
    return binance_session


@pytest.fixture
def worker_env(redis_url: str, sim, key_file: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "COINBASE_API_BASE_URL": sim.url,
        "COINBASE_API_KEY_FILE": str(key_file),
        "BACKFILL_VISIBILITY_TIMEOUT_S": "8",
        "BACKFILL_LOG_JSON": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start_workers(worker_env, tmp_path):
    """Start real `celery worker` processes; all are stopped after the test. Like production
    they get no -Q (every configured queue, in priority order); `queues=[...]` starts a
    deliberately partial worker."""
    from backfill.app import app
    from backfill.local import WorkerProcess, stop_all, wait_for_workers

    started: list[WorkerProcess] = []

    def start(n: int = 1, env: dict | None = None, **kw) -> list[WorkerProcess]:
        kw.setdefault("concurrency", 1)  # production's `-c 1` (README: the request budget)
        ws = []
        for _ in range(n):
            i = len(started) + 1
            w = WorkerProcess(
                {**worker_env, **(env or {})},
                name=f"t{i}-{os.getpid()}@%h",
                log_path=tmp_path / f"worker{i}.log",
                **kw,
            )
            w.start()
            started.append(w)
            ws.append(w)
        wait_for_workers(app, len([w for w in started if w.proc.poll() is None]), timeout=60)
        return ws

    yield start
    stop_all(started, timeout=10)


def pytest_collection_modifyitems(items) -> None:
    """Every test that starts worker processes is slow (`-m "not slow"` for a quick pass;
    CI runs them all)."""
    for item in items:
        if "start_workers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
