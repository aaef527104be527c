"""The hostile exchange against the Binance personality (issue 23): the guarantees below
the exchange seam hold for Binance as they do for Coinbase (tests/system/test_hostile.py):
our clock decides what has closed, rows not asked for are dropped, two different rows for
one bucket fail the answer, redirects are never followed, a trickle is cut at the
deadline, huge bodies and gzip bombs fail one series, and a 429's Retry-After pauses."""

from __future__ import annotations

import time

import pytest
import redis
from hostile import hostile_workers, row

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from core import keys
from core.config import BackfillConfig
from core.run import RunStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory):
    logs = tmp_path_factory.mktemp("hostile-binance")
    url = redis_server.url
    with hostile_workers(url, logs, None, workers=2, name="hb", env={
        "BACKFILL_EXCHANGES": "binance", "BINANCE_WEIGHT_LIMIT": "100000",
        "BACKFILL_EXHAUSTED_RECHECK_S": "1",
    }) as (server, env, _):  # fmt: skip
        assert env["BINANCE_API_BASE_URL"] == server.url
        yield server, url, redis.Redis.from_url(url), env


def run(fleet, symbols: tuple[str, ...]) -> dict:
    _, url, client, _ = fleet
    config = BackfillConfig(symbols=symbols, timeframes=("5m",), exchange="binance")
    d = dispatch([config], redis_url=url)
    result = wait_ready(client, d.run_id, timeout=60)
    assert result.summary is not None, "the gate did not open"
    return {"summary": result.summary, "outcomes": RunStore(client).outcomes(d.run_id)}


def closes(client: redis.Redis, symbol: str) -> list[tuple[int, float]]:
    import json

    raw = client.zrange(keys.candles(1, 2, symbol, "5m"), 0, -1)
    return [(json.loads(m)["timestamp"] // 1000, json.loads(m)["close"]) for m in raw]


def failed(r: dict) -> dict[str, dict]:
    return {f["series"]: f for f in r["summary"]["failed"]}


def test_rows_clock_duplicates_and_conflicts(fleet):
    server, _, client, _ = fleet
    server.behave("SKEWFUSDT", "date", offset=86400.0)  # the exchange a day ahead
    server.behave("EXTRAUSDT", "extra")  # future buckets and buckets outside the range
    server.behave("DUPSUSDT", "dup_same")
    server.behave("CONFLUSDT", "dup_conflict")
    t0 = time.time()
    r = run(fleet, ("SKEWFUSDT", "EXTRAUSDT", "DUPSUSDT", "CONFLUSDT"))
    assert sorted(r["summary"]["ready"]) == ["DUPSUSDT:5m", "EXTRAUSDT:5m", "SKEWFUSDT:5m"], r
    for symbol in ("SKEWFUSDT", "EXTRAUSDT", "DUPSUSDT"):
        got = closes(client, symbol)[-100:]
        starts = [s for s, _ in got]
        assert starts == list(range(starts[0], starts[-1] + 1, 300)) and len(starts) == 100
        assert starts[-1] + 300 <= time.time() and starts[-1] >= (int(t0) // 300 - 1) * 300
        assert [c for _, c in got] == [float(row(s, 300)["close"]) for s in starts]
    assert "two different candles" in failed(r)["CONFLUSDT:5m"]["error"]
    assert not closes(client, "CONFLUSDT")


def test_redirects_trickles_huge_bodies_and_bombs(fleet):
    server = fleet[0]
    server.behave("REDIRUSDT", "redirect", status=302, to=server.url + "/api/v3/klines")
    server.behave("SLOWUSDT", "trickle", every=0.05)
    server.behave("HUGEUSDT", "huge", declare=False)
    server.behave("BOMBUSDT", "bomb")
    r = run(fleet, ("REDIRUSDT", "SLOWUSDT", "HUGEUSDT", "BOMBUSDT", "FINEUSDT"))
    f = failed(r)
    assert "redirect 302 not followed" in f["REDIRUSDT:5m"]["error"]
    assert "2s deadline" in f["SLOWUSDT:5m"]["error"]
    assert "body over the 2097152-byte cap" in f["HUGEUSDT:5m"]["error"]
    assert "decompressed body over the 2097152-byte cap" in f["BOMBUSDT:5m"]["error"]
    assert r["summary"]["ready"] == ["FINEUSDT:5m"]
    assert max(r["outcomes"]["FINEUSDT:5m"].elapsed_s, 0) < 2


def test_a_429_retry_after_pauses_the_binance_fleet_briefly(fleet):
    server, _, client, _ = fleet
    server.behave("THROTUSDT", "throttle", reset="1", header="Retry-After", times=1)
    r = run(fleet, ("THROTUSDT",))
    assert r["summary"]["ready"] == ["THROTUSDT:5m"], r["summary"]
    assert r["outcomes"]["THROTUSDT:5m"].retries == 1
    assert client.exists(keys.budget("binance").slow)  # the whole Binance fleet slowed


def test_hostile_error_text_stays_short_and_clean(fleet):
    server = fleet[0]
    evil = "\x1b]0;owned\x07\x1b[2J\x1b[31mPWNED\r\u202e" + "A" * 1_000_000
    server.behave("EVILUSDT", "error_text", message=evil, status=400)
    r = run(fleet, ("EVILUSDT",))
    item = failed(r)["EVILUSDT:5m"]
    assert item["error"].isprintable() and len(item["error"]) <= 300, item
    assert "\x1b" not in item["error"] and "A" * 400 not in item["error"]


def test_any_shape_is_a_named_error_never_a_traceback(fleet):
    server = fleet[0]
    bucket = (int(time.time()) // 300 - 2) * 300 * 1000
    shapes = {
        "SHAPEAUSDT": b'{"klines": []}',
        "SHAPECUSDT": b"null",
        "SHAPEDUSDT": b"[" * 100_000,
        "SHAPEEUSDT": b"[[1, 2]]",
        "SHAPEFUSDT": b'[[null, "1", "1", "1", "1", "1"]]',
        "SHAPEGUSDT": f'[[{bucket}, "1", "2", "1e400", "1", "1"]]'.encode(),
        "SHAPEHUSDT": f'[[{bucket + 1}, "1", "2", "1", "1", "1"]]'.encode(),
    }
    for product, body in shapes.items():
        server.behave(product, "body", body=body)
    r = run(fleet, tuple(shapes))
    f = failed(r)
    assert sorted(f) == sorted(f"{p}:5m" for p in shapes), r["summary"]
    for item in f.values():
        assert item["reason"] == "retries_exhausted", item
        assert item["error"].startswith("InvalidResponse: "), item
