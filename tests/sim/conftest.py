"""Fixtures for the simulator tests: one in-thread server shared by the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from binance_support import BinanceSim
from sim_support import Sim

from coinbase_sim.config import Settings
from coinbase_sim.keys import load_key_file, write_key_file
from coinbase_sim.server import SimServer, make_server, serve_in_thread

DEFAULTS = Settings().public()
for _fixed in ("seed", "key_files", "exchange"):
    DEFAULTS.pop(_fixed)


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def sim_server(key_dir: Path) -> Iterator[SimServer]:
    ec_path, ed_path = key_dir / "ec.json", key_dir / "ed.json"
    write_key_file(ec_path, "ec")
    write_key_file(ed_path, "ed25519")
    server = make_server("127.0.0.1", 0, seed=7, key_files=[str(ec_path), str(ed_path)])
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim(sim_server: SimServer, key_dir: Path) -> Iterator[Sim]:
    """The shared server with default settings (rate limits off) and zeroed stats."""
    session = requests.Session()
    s = Sim(
        sim_server, load_key_file(key_dir / "ec.json"), load_key_file(key_dir / "ed.json"), session
    )
    s.configure(**{**DEFAULTS, "rate_limits": False})
    session.post(s.url + "/_sim/reset", timeout=5).raise_for_status()
    yield s
    s.configure(**{**DEFAULTS, "rate_limits": False})
    session.close()


@pytest.fixture(scope="session")
def binance_server() -> Iterator[SimServer]:
    """An in-thread simulator with the Binance personality, seed 7 like `sim_server`."""
    server = make_server("127.0.0.1", 0, seed=7, exchange="binance")
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def binance_sim(binance_server: SimServer) -> Iterator[BinanceSim]:
    """The shared Binance server with default settings (weight limits on) and zeroed stats,
    weights and bans."""
    session = requests.Session()
    s = BinanceSim(binance_server, session)
    s.configure(**DEFAULTS)
    s.reset()
    yield s
    s.configure(**DEFAULTS)
    s.reset()
    session.close()
