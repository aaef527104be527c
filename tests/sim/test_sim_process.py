"""SimProcess: the simulator as a child process, driven through its control plane."""

from __future__ import annotations

import time
from pathlib import Path

import requests
from sim_support import PRIVATE, make_token

from coinbase_sim.keys import load_key_file, write_key_file
from coinbase_sim.process import SimProcess


def test_sim_process_round_trip(tmp_path: Path) -> None:
    key_path = tmp_path / "ed.json"
    write_key_file(key_path, "ed25519")
    key = load_key_file(key_path)
    with SimProcess(seed=5, key_files=[str(key_path)], cap=350, rate_limits=False) as sim:
        assert sim.url.startswith("http://127.0.0.1:")
        assert sim.key_name == key.name
        assert sim.config()["cap"] == 350
        path = PRIVATE.format("BTC-USD")
        host = sim.url.removeprefix("http://")
        end = int(time.time()) // 3600 * 3600 - 3600
        response = requests.get(
            sim.url + path,
            params={"granularity": "ONE_HOUR", "start": end - 349 * 3600, "end": end},
            headers={"Authorization": f"Bearer {make_token(key, f'GET {host}{path}')}"},
            timeout=10,
        )
        assert response.status_code == 200
        candles = response.json()["candles"]
        assert len(candles) == 350
        assert candles == sim.truth("BTC-USD", "ONE_HOUR", end - 349 * 3600, end)
        assert sim.stats()["responses_by_status"] == {"200": 1}
        sim.configure(p500=1.0)
        assert requests.get(sim.url + path, timeout=5).status_code == 401
        sim.reset()
        assert sim.stats()["requests_total"] == 0
    assert sim._proc.poll() is not None


def test_sim_process_mints_a_key_when_given_none() -> None:
    with SimProcess(seed=2) as sim:
        assert sim.key_name.startswith("organizations/")
        assert "EC PRIVATE KEY" in sim.key_secret
