"""Issue 12 with real worker processes: every class of wrong, broken or hostile answer from
the exchange ends as a correct cache or a named failure, never as wrong data reported ready.

One hostile server and two workers serve the whole module (started once); each test uses
its own product ids, so tests share nothing in Redis but the fleet budget.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from helpers import cached, wait_until
from hostile import WORKER_ENV, HostileServer, row

from core import keys
from core.config import BackfillConfig
from core.run import RunStore
from core.series import Series

pytestmark = pytest.mark.slow
VT_S = 8
ENV = {**WORKER_ENV, "BACKFILL_VISIBILITY_TIMEOUT_S": str(VT_S),
       "BACKFILL_EXHAUSTED_RECHECK_S": "1"}  # fmt: skip


@dataclass
class Fleet:
    url: str
    redis: redis.Redis
    workers: list
    logs: Path
    server: HostileServer

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    def run(self, symbols: tuple[str, ...], timeframes: tuple[str, ...] = ("5m",)) -> dict:
        from backfill.dispatch import dispatch
        from backfill.gate import wait_ready

        d = dispatch(BackfillConfig(symbols=symbols, timeframes=timeframes), redis_url=self.url)
        result = wait_ready(self.redis, d.run_id, timeout=60)
        assert result.summary is not None, "the gate did not open"
        outcomes = RunStore(self.redis).outcomes(d.run_id)
        return {"summary": result.summary, "outcomes": outcomes, "run_id": d.run_id}


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory):
    from backfill.app import app, use_redis
    from backfill.local import WorkerProcess, stop_all, wait_for_workers

    url = redis_server.url
    redis.Redis.from_url(url).flushall()
    use_redis(url)
    logs = tmp_path_factory.mktemp("hostile-workers")
    with HostileServer() as server:
        env = {**ENV, "REDIS_URL": url, "COINBASE_API_BASE_URL": server.url}
        workers = [
            WorkerProcess(env, name=f"h{i}-{os.getpid()}@%h", log_path=logs / f"w{i}.log").start()
            for i in range(2)
        ]
        try:
            wait_for_workers(app, 2, timeout=60)
            yield Fleet(url, redis.Redis.from_url(url), workers, logs, server)
        finally:
            stop_all(workers, timeout=10)


def assert_true_newest(fleet: Fleet, symbol: str, n: int, not_before: float) -> None:
    """Exactly the newest n closed buckets by our clock, no hole, the server's true values."""
    members = cached(fleet.redis, Series.of(symbol, "5m"))[-n:]
    starts = [m["timestamp"] // 1000 for m in members]
    assert len(starts) == n and starts == list(range(starts[0], starts[-1] + 1, 300)), symbol
    assert starts[-1] >= (int(not_before) // 300 - 1) * 300, f"{symbol}: old data cached"
    assert starts[-1] + 300 <= time.time(), f"{symbol}: an in-progress bucket was cached"
    assert [m["close"] for m in members] == [float(row(s, 300)["close"]) for s in starts]


def failed(run: dict) -> dict[str, dict]:
    return {f["series"]: f for f in run["summary"]["failed"]}


def test_1_clock_far_off_closes_nothing_early(fleet):
    fleet.server.behave("SKEWF-USD", "date", offset=86400.0)  # a day ahead
    fleet.server.behave("SKEWB-USD", "date", offset=-86400.0)  # a day behind
    t0 = time.time()
    run = fleet.run(("SKEWF-USD", "SKEWB-USD"))
    assert run["summary"]["ready"] == ["SKEWF-USD:5m"], run["summary"]
    assert_true_newest(fleet, "SKEWF-USD", 100, t0)
    # a day behind: the exchange cannot have closed the last day's buckets; what it had
    # closed (older) is cached, and the series is not ready on old data
    behind = cached(fleet.redis, Series.of("SKEWB-USD", "5m"))
    assert all(m["timestamp"] / 1000 + 300 <= t0 - 86400 + 1 for m in behind)
    (old,) = run["summary"]["not_ready"]
    assert old["series"] == "SKEWB-USD:5m" and "older than" in old["reason"]
    wait_until(lambda: '"event":"clock_skew"' in fleet.log_text(), 10, "a clock_skew warning")


def test_2_rows_not_asked_for_duplicates_and_old_data(fleet):
    s = fleet.server
    s.behave("EXTRA-USD", "extra")  # future buckets and buckets outside [start, end]
    s.behave("DUPS-USD", "dup_same")  # identical duplicates
    s.behave("CONFL-USD", "dup_conflict")  # two different candles for one bucket
    s.behave("OLD-USD", "old", ago=150)  # a stuck feed: nothing newer than 150 buckets ago
    t0 = time.time()
    run = fleet.run(("EXTRA-USD", "DUPS-USD", "CONFL-USD", "OLD-USD"))
    summary = run["summary"]
    assert sorted(summary["ready"]) == ["DUPS-USD:5m", "EXTRA-USD:5m"], summary
    assert_true_newest(fleet, "EXTRA-USD", 100, t0)
    assert_true_newest(fleet, "DUPS-USD", 100, t0)
    conflict = failed(run)["CONFL-USD:5m"]
    assert conflict["reason"] == "retries_exhausted" and conflict["retries"] == 1
    assert "InvalidResponse" in conflict["error"] and "two different candles" in conflict["error"]
    assert not cached(fleet.redis, Series.of("CONFL-USD", "5m"))
    old = {o["series"]: o for o in summary["not_ready"]}["OLD-USD:5m"]
    assert "older than the newest 100 closed 5m buckets" in old["reason"]


def test_3_redirects_are_never_followed(fleet):
    target = "/api/v3/brokerage/market/products/BTC-USD/candles"
    fleet.server.behave("REDIR-USD", "redirect", status=302, to=fleet.server.url + target)
    port = fleet.server.server_address[1]
    fleet.server.behave("REDIRX-USD", "redirect", status=307, to=f"http://127.0.0.2:{port}{target}")
    run = fleet.run(("REDIR-USD", "REDIRX-USD"))
    f = failed(run)
    assert "redirect 302 not followed" in f["REDIR-USD:5m"]["error"]
    assert "redirect 307 not followed" in f["REDIRX-USD:5m"]["error"]
    assert fleet.server.hits["BTC-USD"] == 0  # the other product was never asked
    assert not cached(fleet.redis, Series.of("REDIR-USD", "5m"))


def test_4_a_trickle_is_cut_and_stalls_no_other_series(fleet):
    from backfill.app import app

    fleet.server.behave("SLOW-USD", "trickle", every=0.05)
    run = fleet.run(("SLOW-USD", "FASTA-USD", "FASTB-USD", "FASTC-USD"))
    slow = failed(run)["SLOW-USD:5m"]
    assert "2s deadline" in slow["error"] and slow["retries"] == 1
    assert sorted(run["summary"]["ready"]) == ["FASTA-USD:5m", "FASTB-USD:5m", "FASTC-USD:5m"]
    out = run["outcomes"]
    assert max(out[f"{s}-USD:5m"].elapsed_s for s in ("FASTA", "FASTB", "FASTC")) < 2
    # the server notices a hang-up at its next byte: wait for both answers to be over
    held = wait_until(
        lambda: (
            [t for p, t in fleet.server.open_s if p == "SLOW-USD"][1:]
            and [t for p, t in fleet.server.open_s if p == "SLOW-USD"]
        ),
        5,
        "both trickled answers to end",
    )
    print(f"trickle answers held for {[round(t, 2) for t in held]} s (deadline 2 s)")
    assert len(held) == 2 and max(held) < 3.0
    # every task runs under soft < hard < visibility timeout
    for conf in (app.control.inspect(timeout=2).conf() or {}).values():
        assert 0 < conf["task_soft_time_limit"] < conf["task_time_limit"] < VT_S


def test_5_huge_bodies_and_bombs_fail_one_series_not_the_worker(fleet):
    s = fleet.server
    s.behave("HUGE-USD", "huge", declare=True)
    s.behave("HUGEU-USD", "huge", declare=False)
    s.behave("BOMB-USD", "bomb")
    pids = [w.pid for w in fleet.workers]
    run = fleet.run(("HUGE-USD", "HUGEU-USD", "BOMB-USD", "FINE-USD"))
    f = failed(run)
    assert "over the 2097152-byte cap" in f["HUGE-USD:5m"]["error"]
    assert "body over the 2097152-byte cap" in f["HUGEU-USD:5m"]["error"]
    assert "decompressed body over the 2097152-byte cap" in f["BOMB-USD:5m"]["error"]
    assert run["summary"]["ready"] == ["FINE-USD:5m"]
    assert [w.pid for w in fleet.workers] == pids and all(
        w.proc.poll() is None for w in fleet.workers
    )
    print(f"undeclared huge body: server sent {s.hits['HUGEU-USD:bytes_sent']} bytes in all")


def test_6_an_absurd_reset_slows_the_fleet_briefly(fleet):
    fleet.server.behave("THROT-USD", "throttle", reset="1e15", times=1)  # 'in 31 000 years'
    paused = keys.budget("public").paused
    t0 = time.monotonic()
    run = fleet.run(("THROT-USD",))
    took = time.monotonic() - t0
    assert run["summary"]["ready"] == ["THROT-USD:5m"], run["summary"]
    assert run["outcomes"]["THROT-USD:5m"].retries == 1
    assert fleet.redis.pttl(paused) <= 3000  # gone, or expiring within the clamp + 1 s
    print(f"throttled series ready after {took:.2f}s (reset clamped to 2 s)")
    assert took < 10


def test_7_hostile_error_text_stays_short_and_clean(fleet):
    evil = "\x1b]0;owned\x07\x1b[2J\x1b[31mPWNED\r\u202e" + "A" * 1_000_000
    for p in ("EVILA-USD", "EVILB-USD"):
        fleet.server.behave(p, "error_text", message=evil, status=404)
    run = fleet.run(("EVILA-USD", "EVILB-USD"), ("5m", "15m", "1h", "4h", "1d"))
    f = failed(run)
    assert len(f) == 10
    for item in f.values():
        assert item["reason"] == "NotFound" and item["error"].isprintable()
        assert len(item["error"]) <= 300
    gate = fleet.redis.get(keys.gate(run["run_id"]))
    assert len(gate) < 10 * 700 + 2000, len(gate)
    logs = fleet.log_text()
    assert "\x1b" not in logs and "\\u001b" not in logs and "A" * 400 not in logs


SHAPES = {
    "SHAPEA-USD": b'{"candles": {}}',
    "SHAPEB-USD": b"[]",
    "SHAPEC-USD": b"null",
    "SHAPED-USD": b"[" * 100_000,
    "SHAPEE-USD": b'{"candles": [[1, 2]]}',
    "SHAPEF-USD": json.dumps(
        {"candles": [{"start": None, "low": 1, "high": 1, "open": 1, "close": 1, "volume": 1}]}
    ).encode(),
}


def test_8_any_shape_is_a_named_error_never_a_traceback(fleet):
    bucket = str((int(time.time()) // 300 - 2) * 300)  # asked for: only its value is wrong
    big = {**row(int(bucket), 300), "low": "1e400"}
    shapes = {**SHAPES, "SHAPEG-USD": json.dumps({"candles": [big]}).encode()}
    for product, body in shapes.items():
        fleet.server.behave(product, "body", body=body)
    run = fleet.run(tuple(shapes))
    f = failed(run)
    assert sorted(f) == sorted(f"{p}:5m" for p in shapes)
    for item in f.values():
        assert item["reason"] == "retries_exhausted", item
        assert item["error"].startswith("InvalidResponse: "), item
    logs = fleet.log_text()
    assert "Traceback" not in logs and "unexpected" not in logs


def test_9_short_history_is_checked_again_on_a_later_run(fleet):
    fleet.server.behave("NEW-USD", "short", buckets=30)  # listed 30 buckets ago
    first = fleet.run(("NEW-USD",))
    assert first["summary"]["not_ready"][0]["candles"] == 30
    fleet.server.behave("NEW-USD", "ok")  # the exchange's whole history is there now
    hits = fleet.server.hits["NEW-USD"]
    t_found = time.time()
    wait_until(lambda: time.time() > t_found + 1.0, 5, "the 1 s exhausted re-check to pass")
    second = fleet.run(("NEW-USD",))
    assert second["summary"]["ready"] == ["NEW-USD:5m"], second["summary"]
    assert fleet.server.hits["NEW-USD"] > hits
    assert_true_newest(fleet, "NEW-USD", 100, t_found)
