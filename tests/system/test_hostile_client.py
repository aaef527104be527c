"""The candle client against the hostile server, in-process and fast: every class of bad
answer is a typed, named error or a correct result, within its limit (issue 12)."""

from __future__ import annotations

import json
import time

import pytest
from hostile import HostileServer, gzip_bomb, row

from core.errors import InvalidResponse, NotFound, RateLimited, TransientError
from core.timeframe import timeframe
from workers.budget import MemoryBudget
from workers.coinbase.client import CoinbaseClient

M5 = timeframe("5m")


@pytest.fixture(scope="module")
def server():
    with HostileServer() as s:
        yield s


@pytest.fixture
def client(server) -> CoinbaseClient:
    return CoinbaseClient(
        server.url, budget=MemoryBudget(), deadline_s=1.0, max_body_bytes=256 * 1024
    )


def newest_100(client: CoinbaseClient, product: str):
    now = time.time()
    end = M5.floor(int(now))
    return client.get_candles(product, M5, end - 299 * 300, end, newest=101), now


def truth(now: float, n: int = 100) -> list[float]:
    last = M5.last_closed_start(now)
    return [float(row(s, 300)["close"]) for s in range(last - (n - 1) * 300, last + 1, 300)]


@pytest.mark.parametrize("offset", [86400.0, 3600.0, -120.0, -86400.0])
def test_exchange_clock_far_off_never_closes_a_bucket_early(server, client, offset):
    server.behave("SKEW-USD", "date", offset=offset)
    candles, now = newest_100(client, "SKEW-USD")
    current = [c for c in candles if c.start == M5.floor(int(now))]
    assert current and not current[0].closed  # in progress by our clock
    closed = [c for c in candles if c.closed]
    if offset > 0:  # ahead: our clock decides
        assert [c.close for c in closed] == truth(now)
    else:  # behind: nothing the exchange had not closed yet counts as closed
        assert all(c.start + 300 <= now + offset + 1 for c in closed)
    assert client.last_server_time <= time.time()


def test_rows_not_asked_for_are_dropped_identical_duplicates_collapse(server, client):
    for product, kind in (("EXTRA-USD", "extra"), ("DUPS-USD", "dup_same")):
        server.behave(product, kind)
        candles, now = newest_100(client, product)
        closed = [c for c in candles if c.closed]
        assert [c.close for c in closed] == truth(now), product
        assert max(c.start for c in candles) == M5.floor(int(now))


def test_conflicting_duplicates_make_the_page_invalid(server, client):
    server.behave("CONFL-USD", "dup_conflict")
    with pytest.raises(InvalidResponse, match="two different candles"):
        newest_100(client, "CONFL-USD")


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(server, client, status):
    server.behave(
        "REDIR-USD",
        "redirect",
        status=status,
        to=server.url + "/api/v3/brokerage/market/products/BTC-USD/candles",
    )
    before = server.hits["BTC-USD"]
    with pytest.raises(InvalidResponse, match=f"redirect {status} not followed"):
        newest_100(client, "REDIR-USD")
    assert server.hits["BTC-USD"] == before


@pytest.mark.parametrize("kind", ["trickle", "trickle_head"])
def test_a_trickle_is_cut_at_the_total_deadline(server, client, kind):
    product = "DRIP-USD" if kind == "trickle" else "DRIPH-USD"
    server.behave(product, kind, every=0.05)  # each byte well inside the per-read timeout
    t0 = time.monotonic()
    with pytest.raises(TransientError, match="deadline"):
        newest_100(client, product)
    took = time.monotonic() - t0
    print(f"{kind} cut after {took:.2f}s (deadline 1.0s)")
    assert 0.9 <= took < 1.8


@pytest.mark.parametrize("declare", [True, False])
def test_a_huge_body_stops_at_the_cap(server, client, declare):
    product = "HUGE-USD" if declare else "HUGEU-USD"
    server.behave(product, "huge", declare=declare)
    with pytest.raises(InvalidResponse, match="262144-byte cap"):
        newest_100(client, product)


def test_a_gzip_bomb_stops_at_the_decoded_cap(server, client):
    import tracemalloc

    server.behave("BOMB-USD", "bomb")
    gzip_bomb()  # built before tracing: the server shares this process
    tracemalloc.start()
    try:
        with pytest.raises(InvalidResponse, match="decompressed body over the 262144-byte cap"):
            newest_100(client, "BOMB-USD")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"bomb: {len(gzip_bomb())} bytes on the wire, 64 MiB decoded; peak {peak} bytes")
    assert peak < 4 * 256 * 1024 + len(gzip_bomb()) + 512 * 1024


@pytest.mark.parametrize(
    "header,value,want",
    [
        ("x-ratelimit-reset", "1e15", 60.0),  # epoch ms, 31 000 years ahead
        ("x-ratelimit-reset", "1e12", 0.0),  # epoch ms, 2001
        ("x-ratelimit-reset", "99999999999", 60.0),  # epoch s, year 5138
        ("x-ratelimit-reset", "inf", 60.0),
        ("x-ratelimit-reset", "-5", 0.0),
        ("x-ratelimit-reset", "NaN", None),
        ("x-ratelimit-reset", "soon", None),
        ("x-ratelimit-reset", "2.5", 2.5),
        ("Retry-After", "Wed, 21 Oct 2099 07:28:00 GMT", 60.0),
    ],
)
def test_a_reset_header_is_clamped(server, header, value, want):
    budget = MemoryBudget()
    client = CoinbaseClient(server.url, budget=budget)
    server.behave("THROT-USD", "throttle", reset=value, header=header, times=10**9)
    with pytest.raises(RateLimited) as e:
        newest_100(client, "THROT-USD")
    assert e.value.reset_after == want and budget.throttles == [want]


def test_error_text_is_short_and_clean(server, client):
    evil = "\x1b[2J\x1b[31mPWNED\r\x07" + "A" * 1_000_000
    server.behave("EVIL-USD", "error_text", message=evil)
    with pytest.raises(NotFound) as e:
        newest_100(client, "EVIL-USD")
    text = str(e.value)
    assert len(text) < 400 and text.isprintable() and "\x1b" not in text


SHAPES = {
    "object": b'{"candles": {}}',
    "array": b"[]",
    "number": b"123",
    "null": b"null",
    "string": b'"candles"',
    "no_key": b'{"data": []}',
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "row_array": b'{"candles": [[1, 2, 3]]}',
    "row_null": b'{"candles": [null]}',
    "null_value": b'{"candles": [{"start": null, "low": "1", "high": "1", "open": "1", '
    b'"close": "1", "volume": "1"}]}',
    "object_value": b'{"candles": [{"start": "1", "low": {}, "high": "1", "open": "1", '
    b'"close": "1", "volume": "1"}]}',
    "missing_key": b'{"candles": [{"start": "1", "low": "1"}]}',
    "bool_value": b'{"candles": [{"start": true, "low": "1", "high": "1", "open": "1", '
    b'"close": "1", "volume": "1"}]}',
    "not_json": b"<html>Please wait</html>",
    "bad_utf8": b'{"candles": "\xff\xfe"}',
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_any_json_shape_is_a_named_invalid_response(server, client, name):
    product = "SHAPE" + str(sorted(SHAPES).index(name)) + "-USD"
    server.behave(product, "body", body=SHAPES[name])
    with pytest.raises(InvalidResponse) as e:
        newest_100(client, product)
    assert str(e.value).isprintable() and len(str(e.value)) < 400


@pytest.mark.parametrize("value", ["NaN", "inf", "1e400", "-1", "0"])
def test_non_finite_or_impossible_values_are_invalid(server, client, value):
    now = time.time()
    s = M5.last_closed_start(now)
    bad = {**row(s, 300), "close": value}
    server.behave("VAL-USD", "body", body=json.dumps({"candles": [bad]}).encode())
    with pytest.raises(InvalidResponse, match="invalid candle"):
        newest_100(client, "VAL-USD")
