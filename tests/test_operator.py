"""What an operator and the indicator service see: the demo, status, indicators, logs,
health — through the real CLI, against real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest
from helpers import cli

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from backfill.settings import BackfillConfig

CONFIG = BackfillConfig(symbols=("BTC-USD", "ETH-USD", "GHOST-USD"), timeframes=("5m", "1h"))


@pytest.fixture
def finished_run(rclient, redis_url, sim, start_workers):
    start_workers(1)
    d = dispatch(CONFIG, redis_url=redis_url)
    assert wait_ready(rclient, d.run_id, timeout=60).exit_code == 3  # GHOST-USD:5m not ready
    return d.run_id


def test_status_shows_timeframes_failures_and_gate(finished_run, redis_url):
    r = cli("status", env={"REDIS_URL": redis_url})
    assert r.returncode == 0, r.stderr
    assert finished_run in r.stdout and "gate open (partial)" in r.stdout
    assert "5m    3/3" in r.stdout and "1h    3/3" in r.stdout
    st = json.loads(
        cli("status", "--json", "--run", finished_run, env={"REDIS_URL": redis_url}).stdout
    )
    assert st["completed"] == st["total"] == 6 and st["gate"] == "open"


def test_indicators_read_the_cache_and_refuse_too_little_data(finished_run, redis_url, rclient):
    pubsub = rclient.pubsub()
    pubsub.psubscribe("channel:indicator:macdv:*")
    r = cli("indicators", "--json", "--timeout", "10", env={"REDIS_URL": redis_url})
    assert r.returncode == 0, r.stderr
    rows = {(x["symbol"], x["timeframe"]): x for x in json.loads(r.stdout)}
    assert len(rows) == 6
    for key in [("BTC-USD", "5m"), ("ETH-USD", "1h"), ("GHOST-USD", "1h")]:
        row = rows[key]
        assert row["candles"] == 100 and isinstance(row["macd_v"], float)
        assert row["stage"] in {
            "oversold",
            "overbought",
            "rallying",
            "rebounding",
            "reversing",
            "retracing",
            "ranging",
            "unknown",
        }
        assert row["histogram"] == pytest.approx(row["macd_v"] - row["signal"], abs=1e-3)
    ghost = rows[("GHOST-USD", "5m")]
    assert ghost["macd_v"] is None and ghost["signal"] is None and ghost["stage"] == "not ready"
    published = []
    while (m := pubsub.get_message(timeout=1.0)) is not None:
        if m["type"] == "pmessage":
            published.append(json.loads(m["data"]))
    assert len(published) == 5 and {p["symbol"] for p in published} == {
        "BTC-USD",
        "ETH-USD",
        "GHOST-USD",
    }


def test_logs_are_json_lines_with_the_seed_events(redis_url, rclient, sim, start_workers, tmp_path):
    start_workers(1)
    r = cli(
        "dispatch",
        "--symbols",
        "BTC-USD",
        "--timeframes",
        "5m,1h",
        "--wait",
        "--timeout",
        "60",
        env={"REDIS_URL": redis_url},
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names[0] == "backfill_start" and "backfill_progress" in names
    last = [e for e in events if e["event"] == "backfill_progress"][-1]
    assert last["completed"] == last["total"] == 2 and last["percent"] == 100.0
    worker = [
        json.loads(line)
        for line in (tmp_path / "worker1.log").read_text().splitlines()
        if line.startswith("{")
    ]
    done = [e for e in worker if e["event"] == "backfill_symbol_complete"]
    assert {(e["symbol"], e["timeframe"]) for e in done} == {("BTC-USD", "5m"), ("BTC-USD", "1h")}
    assert all(e["run_id"] == events[0]["run_id"] for e in done)
    assert any(
        e["event"] == "backfill_complete" and e["run_id"] == events[0]["run_id"] for e in worker
    )


def test_health(redis_url, start_workers):
    assert cli("health", "--timeout", "1", env={"REDIS_URL": redis_url}).returncode == 1
    start_workers(1)
    r = cli("health", env={"REDIS_URL": redis_url})
    assert r.returncode == 0 and json.loads(r.stdout)["ok"]


@pytest.mark.slow
def test_demo_runs_everything_and_leaves_nothing_running():
    before = {p.pid for p in psutil.process_iter()}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_URL", "COINBASE_", "BACKFILL_"))
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "backfill",
            "demo",
            "--json",
            "--symbols",
            "BTC-USD,ETH-USD",
            "--timeframes",
            "5m,1h",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["series_total"] == out["series_ok"] == 4 and out["series_failed"] == 0
    assert out["gate_open"] and out["responses_429"] == 0 and out["requests"] >= 4
    assert {"run_id", "elapsed_s"} <= set(out)
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before
        and any(
            "coinbase_sim" in c or "redis-server" in c or "celery" in c
            for c in (p.info["cmdline"] or [])
        )
    ]
    assert not leftovers, leftovers


def test_terminal_gets_a_progress_bar_and_readable_lines(redis_url, sim, start_workers):
    """On a terminal `dispatch --wait` draws a bar and logs plain text, not JSON."""
    import pty
    import time

    start_workers(1)
    controller, terminal = pty.openpty()
    env = {**os.environ, "REDIS_URL": redis_url, "COLUMNS": "120"}
    env.pop("BACKFILL_LOG_JSON", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backfill",
            "dispatch",
            "--symbols",
            "BTC-USD,ETH-USD",
            "--timeframes",
            "5m",
            "--wait",
            "--timeout",
            "60",
        ],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    out = b""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(controller)
    assert proc.wait(30) == 0
    text = out.decode(errors="replace")
    assert "━" in text and "2/2" in text  # the bar, complete
    assert "backfill_start run_id=" in text and '{"ts"' not in text  # readable log lines
