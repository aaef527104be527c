"""Issue 22 with real worker processes, a real redis-server and the hostile loopback exchange:
our own settings and the fleet's breaker are input too.

- a few bad products trip the fleet's breaker: healthy series still end ready (their retries
  wait out the cool-down, without spending their retry budget) and the bad ones report their
  own 503, not `CircuitOpen`; while the exchange is really down the fleet stops asking;
- a bad `BACKFILL_MIN_CANDLES` (or sibling) is refused before anything is enqueued;
- one bad entry in `BACKFILL_SYMBOLS`: the keeper refreshes the valid ones and logs the bad
  ones once per close, `backfill status --run` works, beat says so at start.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from helpers import cli, wait_until
from hostile import WORKER_ENV, HostileServer

from core import keys
from core.config import BackfillConfig
from core.run import RunStore

COOLDOWN_S = 3.0
ENV = {
    **WORKER_ENV,
    "BACKFILL_VISIBILITY_TIMEOUT_S": "60",  # retry countdowns may be up to 20 s
    "BACKFILL_BREAKER_FAILURES": "3",
    "BACKFILL_BREAKER_COOLDOWN_S": str(COOLDOWN_S),
}
BAD_SYMBOLS = "KEEPA-USD,btc-usd,\x1b[31mEVIL\x1b[0m,KEEPB-USD"


@dataclass
class Fleet:
    url: str
    redis: redis.Redis
    logs: Path
    server: HostileServer

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    def run(self, symbols: tuple[str, ...], timeout: float = 90) -> dict:
        from backfill.dispatch import dispatch
        from backfill.gate import wait_ready

        d = dispatch(BackfillConfig(symbols=symbols, timeframes=("5m",)), redis_url=self.url)
        result = wait_ready(self.redis, d.run_id, timeout=timeout)
        assert result.summary is not None, "the gate did not open"
        return {"summary": result.summary, "outcomes": RunStore(self.redis).outcomes(d.run_id)}

    def breaker_state(self) -> bytes | None:
        return self.redis.hget(keys.breaker("public").state, "state")


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory):
    from backfill.app import app, use_redis
    from backfill.local import WorkerProcess, stop_all, wait_for_workers

    url = redis_server.url
    redis.Redis.from_url(url).flushall()
    use_redis(url)
    logs = tmp_path_factory.mktemp("settings-workers")
    with HostileServer() as server:
        env = {
            **ENV,
            "REDIS_URL": url,
            "COINBASE_API_BASE_URL": server.url,
            "BACKFILL_SYMBOLS": BAD_SYMBOLS,
            "BACKFILL_TIMEFRAMES": "5m",
        }
        workers = [
            WorkerProcess(env, name=f"s{i}-{os.getpid()}@%h", log_path=logs / f"w{i}.log").start()
            for i in range(2)
        ]
        try:
            wait_for_workers(app, 2, timeout=60)
            yield Fleet(url, redis.Redis.from_url(url), logs, server)
        finally:
            stop_all(workers, timeout=10)


def failed(run: dict) -> dict[str, dict]:
    return {f["series"]: f for f in run["summary"]["failed"]}


# --- item 7: BACKFILL_MIN_CANDLES and its siblings ------------------------------------------


@pytest.mark.parametrize(
    "var,value",
    [
        ("BACKFILL_MIN_CANDLES", "-1"),
        ("BACKFILL_MIN_CANDLES", "0"),
        ("BACKFILL_MIN_CANDLES", "2000"),
        ("BACKFILL_MIN_CANDLES", "150"),  # above the candle count (100)
        ("BACKFILL_CANDLE_COUNT", "-5"),
        ("BACKFILL_MAX_RETRIES", "-1"),
        ("BACKFILL_VISIBILITY_TIMEOUT_S", "0"),
        ("BACKFILL_CACHE_TTL_S", "0"),
        ("BACKFILL_USER_ID", "-3"),
    ],
)
def test_a_bad_setting_is_refused_before_anything_is_enqueued(rclient, redis_url, var, value):
    r = cli("dispatch", "--symbols", "BTC-USD", "--timeframes", "5m",
            env={"REDIS_URL": redis_url, var: value})  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert var in r.stderr and value in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert rclient.dbsize() == 0  # nothing enqueued, no run recorded


def test_status_of_a_run_works_with_a_bad_symbol_configured(rclient, redis_url):
    from backfill.dispatch import dispatch

    d = dispatch(BackfillConfig(symbols=("BTC-USD",), timeframes=("5m",)), redis_url=redis_url)
    env = {
        "REDIS_URL": redis_url,
        "BACKFILL_SYMBOLS": "BTC-USD,\x1b[2Jbad",
        "BACKFILL_TIMEFRAMES": "5m",
    }
    r = cli("status", "--run", d.run_id, "--timeout", "0.2", env=env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"run {d.run_id}: " in r.stdout
    assert "BACKFILL_SYMBOLS" in r.stderr and "bad" in r.stderr and "\x1b" not in r.stderr


# --- item 6: the breaker -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bad_products_trip_the_breaker_but_fail_only_themselves(fleet):
    bad = ("BADA-USD", "BADB-USD", "BADC-USD")
    for p in bad:
        fleet.server.behave(p, "body", status=503, body=b'{"error":"UNAVAILABLE"}')
    first = fleet.run(bad)
    assert fleet.breaker_state() == b"open"  # three failures, three series: it tripped
    f = failed(first)
    assert sorted(f) == sorted(f"{p}:5m" for p in bad)
    for item in f.values():  # each reports its own 503, never the breaker
        assert item["reason"] == "retries_exhausted", item
        assert "status=503" in item["error"] and "CircuitOpen" not in item["error"], item
    for p in bad:  # and each was asked at most 1 + BACKFILL_MAX_RETRIES times
        assert fleet.server.hits[p] == 2, (p, fleet.server.hits[p])

    # healthy series arrive while the bad ones hold the breaker open: they wait it out
    healthy = ("GOODA-USD", "GOODB-USD", "GOODC-USD", "GOODD-USD")
    assert fleet.breaker_state() == b"open"
    second = fleet.run(healthy)
    assert sorted(second["summary"]["ready"]) == sorted(f"{p}:5m" for p in healthy), second
    for p in healthy:
        assert fleet.server.hits[p] >= 1
    assert fleet.breaker_state() != b"open"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_while_the_exchange_is_down_the_fleet_stops_asking(fleet):
    from backfill.dispatch import dispatch

    down = tuple(f"DOWN{c}-USD" for c in "ABCD")
    for p in down:
        fleet.server.behave(p, "body", status=503, body=b'{"error":"UNAVAILABLE"}')
    d = dispatch(BackfillConfig(symbols=down, timeframes=("5m",)), redis_url=fleet.url)
    samples: list[tuple[float, int, bool]] = []  # (time, requests so far, breaker open)

    def gate_open() -> bool:
        asked = sum(fleet.server.hits[p] for p in down)
        samples.append((time.monotonic(), asked, fleet.breaker_state() == b"open"))
        return fleet.redis.exists(keys.gate(d.run_id)) == 1

    wait_until(gate_open, 120, "the run's gate")
    opened = next(i for i, (_, _, is_open) in enumerate(samples) if is_open)
    t_open, at_open, _ = samples[opened]
    t_end, total, _ = samples[-1]
    after = total - at_open
    print(f"exchange down: {at_open} requests before the trip, {after} in {t_end - t_open:.1f}s")
    # once tripped, at most one probe per cool-down goes out
    assert after <= (t_end - t_open) / COOLDOWN_S + 1
    f = {o.series: o for o in RunStore(fleet.redis).outcomes(d.run_id).values()}
    assert len(f) == len(down) and all(o.status == "failed" for o in f.values())
    for o in f.values():  # each reports its own 503
        assert "status=503" in o.error, o


# --- item 8: a bad entry in BACKFILL_SYMBOLS ------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_keeper_refreshes_the_valid_symbols_and_names_the_bad_ones(fleet):
    from backfill.app import app

    before = {p: fleet.server.hits[p] for p in ("KEEPA-USD", "KEEPB-USD")}
    app.send_task(keys.BOUNDARY_TASK, args=(["5m"],), queue=keys.CONTROL_QUEUE)
    wait_until(
        lambda: all(fleet.server.hits[p] > n for p, n in before.items()),
        30,
        "both valid symbols refreshed",
    )
    line = wait_until(
        lambda: [ln for ln in fleet.log_text().splitlines() if "bad_symbols" in ln],
        10,
        "the keeper's error line",
    )
    assert len(line) == 1, line
    assert "btc-usd" in line[0] and "EVIL" in line[0] and "BACKFILL_SYMBOLS" in line[0]
    assert "\x1b" not in line[0] and "\\u001b" not in line[0]
    assert "Traceback" not in fleet.log_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_beat_says_at_start_which_symbols_it_skips(redis_url, tmp_path):
    from backfill.local import BeatProcess

    env = {
        "REDIS_URL": redis_url,
        "BACKFILL_SYMBOLS": BAD_SYMBOLS,
        "BACKFILL_TIMEFRAMES": "5m",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "beat.log"
    beat = BeatProcess(env, log_path=log).start()
    try:
        text = wait_until(
            lambda: (
                log.exists()
                and "bad_symbols" in log.read_text(errors="replace")
                and log.read_text(errors="replace")
            ),
            30,
            "beat's error line about the bad symbols",
        )
        assert "btc-usd" in text and "EVIL" in text and "\x1b" not in text
        assert beat.proc.poll() is None  # it keeps the valid symbols fresh
    finally:
        beat.stop(timeout=10)

    # nothing valid at all: beat refuses to start
    env["BACKFILL_SYMBOLS"] = "nope,also-bad"
    log2 = tmp_path / "beat2.log"
    beat = BeatProcess(env, log_path=log2).start()
    try:
        wait_until(lambda: beat.proc.poll() is not None, 30, "beat to refuse to start")
        assert beat.proc.returncode != 0
        assert "no valid symbol" in log2.read_text(errors="replace")
    finally:
        beat.stop(timeout=10)
