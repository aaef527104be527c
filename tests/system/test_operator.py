"""What an operator and the indicator service see: the demo, status, indicators, logs,
health — through the real CLI, against real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest
from helpers import cli, pandas_platform_macd_v

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from core.config import BackfillConfig

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
    env = {
        "REDIS_URL": redis_url,
        "BACKFILL_SYMBOLS": ",".join(CONFIG.symbols),
        "BACKFILL_TIMEFRAMES": ",".join(CONFIG.timeframes),
    }
    st = json.loads(cli("status", "--json", "--run", finished_run, env=env).stdout)
    assert st["completed"] == st["total"] == 6 and st["gate"] == "open"
    fresh = st["freshness"]["timeframes"]
    assert fresh["5m"]["stale"] == fresh["1h"]["stale"] == 0 and fresh["5m"]["series"] == 3
    assert 0 <= fresh["5m"]["newest_age_s"] < 300
    assert st["freshness"]["breaker"]["state"] == "closed"
    prom = cli("status", "--prometheus", env=env).stdout
    assert 'backfill_stale_series{timeframe="5m"} 0' in prom and "backfill_breaker_open 0" in prom


def test_indicators_read_the_cache_and_refuse_too_little_data(finished_run, redis_url, rclient):
    pubsub = rclient.pubsub()
    pubsub.psubscribe("channel:indicator:1:1:*:macd-v")  # the platform's own channel
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
        # the oracle: pandas over the candles as the cache holds them (read here, not by
        # the code under test)
        members = [
            json.loads(m) for m in rclient.zrange(f"candles:1:1:{key[0]}:{key[1]}", -200, -1)
        ]
        tf_ms = {"5m": 300_000, "1h": 3_600_000}[key[1]]
        want = pandas_platform_macd_v(members, tf_ms)  # gaps filled, as the platform does
        assert row["macd_v"] == pytest.approx(want["m"][-1], abs=1e-4)
        assert row["signal"] == pytest.approx(want["s"][-1], abs=1e-4)
        assert row["histogram"] == pytest.approx(want["h"][-1], abs=1e-4)
        assert row["gap_ratio"] == want["synthetic"] / want["bars"]
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
    import uuid

    marker = uuid.uuid4().hex  # in the environment of everything the demo starts
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_URL", "COINBASE_", "BACKFILL_"))
    }
    env["DEMO_TEST_MARKER"] = marker
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

    def started_by_the_demo(p: psutil.Process) -> bool:
        try:  # not by name: other test runs on this machine start the same programs
            return p.environ().get("DEMO_TEST_MARKER") == marker
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    leftovers = [p for p in psutil.process_iter() if started_by_the_demo(p)]
    assert not leftovers, [p.cmdline() for p in leftovers]


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


def test_run_refuses_an_unusable_exchange_with_one_line_before_starting_anything(
    rclient, redis_url, sim, tmp_path
):
    """`backfill run` asks the exchange once before it starts workers or enqueues anything:
    no route, or a key the exchange refuses, is one clear error line and exit 2."""
    from coinbase_sim.keys import write_key_file

    stranger = tmp_path / "stranger.json"
    write_key_file(stranger, "ec")  # a key the exchange does not know
    cases = [
        ({"COINBASE_API_BASE_URL": "http://127.0.0.1:1"}, "connection failed"),
        (
            {"COINBASE_API_BASE_URL": sim.url, "COINBASE_API_KEY_FILE": str(stranger)},
            "refused the API key",
        ),
    ]
    for env, reason in cases:
        args = ["run", "--symbols", "ETH-USD", "--timeframes", "5m", "--timeout", "5"]
        r = cli(*args, env={"REDIS_URL": redis_url, **env})
        assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        want = f"error: the exchange at {env['COINBASE_API_BASE_URL']} cannot be used: "
        assert lines[0].startswith(want) and reason in lines[0], lines
        assert rclient.dbsize() == 0  # no worker connected, nothing was dispatched
    assert sim.stats()["responses_by_status"] == {"401": 1}  # one request, the preflight's
