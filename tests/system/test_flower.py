"""Flower against the real stack: redis-server, the simulator, two `celery worker` processes.

Flower (`celery -A backfill flower`, as in docker-compose.yml) runs as a subprocess with
basic auth from FLOWER_BASIC_AUTH, which is also what enables its HTTP API. It must be
connected (receiving the workers' events) before the run is dispatched, or it misses the
tasks' events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import wait_until

from backfill.app import app
from backfill.dispatch import dispatch
from backfill.embedded import free_port
from backfill.gate import wait_ready
from core.config import BackfillConfig

AUTH = ("flower-user", "flower-pass")
SYMBOLS = ("BTC-USD", "ETH-USD")
TIMEFRAMES = ("5m", "1h")


class Flower:
    def __init__(self, redis_url: str, log_path: Path, cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
        env.update(
            REDIS_URL=redis_url, FLOWER_BASIC_AUTH=f"{AUTH[0]}:{AUTH[1]}", PYTHONUNBUFFERED="1"
        )
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "backfill",
                "flower",
                f"--port={self.port}",
                "--address=127.0.0.1",
            ],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def get(self, path: str, auth: tuple[str, str] | None = AUTH) -> requests.Response:
        return requests.get(self.url + path, auth=auth, timeout=10)

    def answering(self) -> bool:
        assert self.proc.poll() is None, f"flower exited: {self.log_path.read_text()[-2000:]}"
        try:
            return self.get("/healthcheck", auth=None).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()


@pytest.fixture
def flower(redis_url, tmp_path):
    f = Flower(redis_url, tmp_path / "flower.log", cwd=tmp_path)
    try:
        wait_until(f.answering, 60, "flower to answer /healthcheck", every=0.2)
        yield f
    finally:
        f.stop()
    assert f.proc.poll() is not None


def key_body(key_file: Path) -> str:
    pem = json.loads(key_file.read_text())["privateKey"]
    lines = [ln.strip() for ln in pem.replace("\\n", "\n").splitlines()]
    return "".join(ln for ln in lines if ln and not ln.startswith("-----"))


def worker_online(metrics: str, name: str) -> bool:
    return f'flower_worker_online{{worker="{name}"}} 1.0' in metrics


@pytest.mark.timeout(240)
def test_flower_shows_the_run_behind_basic_auth(
    rclient, redis_url, sim, start_workers, key_file, flower
):
    start_workers(2)
    names = sorted(next(iter(r)) for r in app.control.ping(timeout=2))
    assert len(names) == 2, names

    # Flower is connected: it receives the workers' heartbeat events and can inspect them.
    wait_until(
        lambda: all(worker_online(flower.get("/metrics").text, n) for n in names),
        60,
        "flower to receive both workers' events",
        every=0.5,
    )
    wait_until(
        lambda: set(names) <= set(flower.get("/api/workers?refresh=1").json()),
        60,
        "flower to list both workers",
    )

    d = dispatch(BackfillConfig(symbols=SYMBOLS, timeframes=TIMEFRAMES), redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.exit_code == 0, result.summary

    def series_tasks() -> dict:
        r = flower.get("/api/tasks")
        assert r.status_code == 200, r.text
        return r.json()

    def run_done():
        tasks = series_tasks()
        done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        names_ = [t["name"] for t in done]
        if names_.count("backfill.series") == 4 and names_.count("backfill.finish") == 1:
            return tasks
        return None

    tasks = wait_until(
        run_done, 30, "flower to see 4 series tasks and the callback succeed", every=0.3
    )
    series = [t for t in tasks.values() if t["name"] == "backfill.series"]
    seen = set()
    for t in series:
        assert t["state"] == "SUCCESS"
        assert isinstance(t["runtime"], float) and t["runtime"] > 0, t
        assert t["worker"] in names, t["worker"]
        assert d.run_id in t["args"], t["args"]
        pair = [
            (s, tf)
            for s in SYMBOLS
            for tf in TIMEFRAMES
            if f"'{s}'" in t["args"] and f"'{tf}'" in t["args"]
        ]
        assert len(pair) == 1, t["args"]
        seen.add(pair[0])
    assert seen == {(s, tf) for s in SYMBOLS for tf in TIMEFRAMES}
    (finish,) = [t for t in tasks.values() if t["name"] == "backfill.finish"]
    assert finish["state"] == "SUCCESS" and finish["runtime"] is not None
    assert d.run_id in finish["result"] and "'ready'" in finish["result"], finish["result"]
    assert finish["worker"] in names

    # the API needs the credentials; the Prometheus metrics and the healthcheck do not
    assert flower.get("/api/tasks", auth=None).status_code == 401
    assert flower.get("/api/workers", auth=None).status_code == 401
    assert flower.get("/api/tasks", auth=(AUTH[0], "wrong")).status_code == 401
    metrics = flower.get("/metrics", auth=None)
    assert metrics.status_code == 200
    assert 'task="backfill.series"' in metrics.text and "flower_events_total" in metrics.text
    assert "flower_task_runtime_seconds" in metrics.text
    assert 'type="task-succeeded"' in metrics.text

    workers = flower.get("/api/workers").json()
    assert set(names) <= set(workers)

    # no credential travels with the tasks (nor shows in what Flower reports of the workers)
    body = key_body(key_file)
    assert len(body) >= 40
    key_name = json.loads(key_file.read_text())["name"]
    for label, text in (("/api/tasks", json.dumps(tasks)), ("/api/workers", json.dumps(workers))):
        leaked = [body[i : i + 20] for i in range(len(body) - 19) if body[i : i + 20] in text]
        assert not leaked, f"{label} contains private key material: {leaked[:1]}"
        assert key_name not in text, f"{label} contains the API key name"
