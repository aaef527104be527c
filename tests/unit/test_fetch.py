"""The fill rules (fresh / tail / cold / 4h from 1h / look-back through gaps), on the
in-memory store and an in-memory exchange: fast, and the Redis tests stay the reference."""

from __future__ import annotations

import json

import pytest

from core.candle import Candle
from core.errors import BadRequest
from core.series import Series
from core.timeframe import Timeframe, timeframe
from workers.cache import MemoryCandleStore
from workers.fetch import FetchOptions, FourHourMemory, fill_series

T0 = 1_700_000_000 - 1_700_000_000 % 86400  # a UTC midnight


class StubExchange:
    """Candles by bucket; a request returns [start, end] as the real client does, one
    request per `cap - 1` buckets of span; buckets not closed at `now` come back open."""

    dense = False  # like Coinbase: a bucket without trades is absent

    def __init__(self, cap: int = 300, reject_4h: bool = False) -> None:
        self.cap = cap
        self.reject_4h = reject_4h
        self.now = float(T0)
        self.requests_made = 0
        self.last_server_time: float | None = None
        self.asked: list[tuple[str, int, int]] = []
        self.missing: set[int] = set()  # bucket starts (any timeframe) with no trades

    def candle(self, tf: Timeframe, start: int) -> Candle:
        price = 100.0 + (start // tf.seconds) % 7
        return Candle(
            start, price, price + 1, price - 1, price + 0.5, 2.0,
            closed=start + tf.seconds <= self.now, volume_text="2",
        )  # fmt: skip

    def get_candles(self, product_id, tf: Timeframe, start, end, *, newest=None):
        if self.reject_4h and tf.name == "4h":
            self.asked.append((tf.name, int(start), int(end)))
            raise BadRequest(
                "bad", detail="granularity: FOUR_HOUR is not a valid value", status=400
            )
        first, last = tf.floor(int(start)), min(tf.floor(int(end)), tf.floor(int(self.now)))
        self.requests_made += max(1, -(-((last - first) // tf.seconds) // (self.cap - 1)))
        self.asked.append((tf.name, first, last))
        self.last_server_time = self.now
        out = [
            self.candle(tf, s)
            for s in range(first, last + 1, tf.seconds)
            if s not in self.missing
        ]
        return out[-newest:] if newest else out


def series(name: str = "5m") -> Series:
    return Series.of("BTC-USD", name)


def test_cold_writes_the_newest_n_closed_candles_in_one_request():
    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    out = fill_series(s, ex, store, FetchOptions(candle_count=100), now=ex.now + 10)
    assert (out.mode, out.requests, out.candles_cached, out.ready) == ("cold", 1, 100, True)
    held = sorted(store.members[s.name])
    last_closed = s.timeframe.last_closed_start(ex.now + 10)
    assert held[-1] == last_closed and held[0] == last_closed - 99 * 300
    assert out.newest_ts == last_closed * 1000


def test_fresh_costs_nothing_and_tail_fetches_only_what_is_missing():
    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    fresh = fill_series(s, ex, store, FetchOptions(), now=ex.now + 20)
    assert (fresh.mode, fresh.requests) == ("fresh", 0)
    ex.now += 3 * 300
    tail = fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    assert (tail.mode, tail.requests, tail.candles_written) == ("tail", 1, 4)  # 3 new + overlap
    assert ex.asked[-1][1] == T0 - 300  # from the newest cached bucket
    assert max(store.members[s.name]) == s.timeframe.last_closed_start(ex.now + 10)


def test_full_refetches_a_fresh_series():
    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    out = fill_series(s, ex, store, FetchOptions(full=True), now=ex.now + 10)
    assert (out.mode, out.requests) == ("cold", 1)


def test_after_an_outage_every_missed_bucket_is_filled_paginated():
    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    ex.now += 500 * 300
    out = fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    assert out.mode == "tail" and out.requests == 2  # 501 buckets: two pages
    held = sorted(store.members[s.name])
    assert held == list(range(held[0], held[-1] + 300, 300))  # no hole
    assert held[-1] == s.timeframe.last_closed_start(ex.now + 10)


def test_a_series_further_behind_than_the_cache_holds_is_fetched_cold():
    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    ex.now += 1500 * 300
    out = fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    assert out.mode == "cold" and out.requests == 1


def test_startup_announces_its_newest_candle_a_refresh_every_new_one():
    from workers.cache import ANNOUNCE_NEW

    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    cold = fill_series(s, ex, store, FetchOptions(), now=ex.now + 10)
    newest = max(store.members[s.name])
    assert cold.announced == 1 and store.announced == [store.members[s.name][newest]]
    ex.now += 3 * 300
    tail = fill_series(s, ex, store, FetchOptions(announce=ANNOUNCE_NEW), now=ex.now + 10)
    new = sorted(store.members[s.name])[-3:]
    assert tail.announced == 3
    assert store.announced[1:] == [store.members[s.name][t] for t in new]  # oldest first
    again = fill_series(s, ex, store, FetchOptions(announce=ANNOUNCE_NEW), now=ex.now + 20)
    assert again.announced == 0 and len(store.announced) == 4  # nothing new, nothing sent


def test_gaps_look_further_back_page_by_page_and_never_invent_candles():
    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    # only every 5th bucket traded in the last 2,000 buckets
    ex.missing = {T0 - i * 300 for i in range(2000) if i % 5}
    out = fill_series(s, ex, store, FetchOptions(candle_count=100), now=ex.now + 10)
    assert out.mode == "cold" and out.requests == 2 and out.candles_cached == 100
    assert not set(store.members[s.name]) & ex.missing
    assert out.gaps > 0


def test_four_hour_rejected_is_derived_from_one_hour_and_remembered():
    class Memory(FourHourMemory):
        def __init__(self) -> None:
            self.flag = False

        def rejected(self) -> bool:
            return self.flag

        def remember(self) -> None:
            self.flag = True

    ex, store, memory = StubExchange(reject_4h=True), MemoryCandleStore(), Memory()
    out = fill_series(series("4h"), ex, store, FetchOptions(), memory, now=ex.now + 10)
    assert out.derived and memory.flag and out.candles_cached == 100
    assert {tf for tf, *_ in ex.asked} == {"4h", "1h"}
    ex.asked.clear()
    again = fill_series(
        Series.of("ETH-USD", "4h"), ex, store, FetchOptions(), memory, now=ex.now + 10
    )
    assert again.derived and {tf for tf, *_ in ex.asked} == {"1h"}  # no 4h request any more
    # each derived 4h candle aggregates its four closed 1h candles
    h1, start = timeframe("1h"), T0 - 14400
    hours = [ex.candle(h1, start + i * 3600) for i in range(4)]
    member = json.loads(store.members["BTC-USD:4h"][start])
    assert member["open"] == hours[0].open and member["close"] == hours[-1].close
    assert member["high"] == max(c.high for c in hours)
    assert member["low"] == min(c.low for c in hours) and member["volume"] == 8


def test_too_few_candles_is_not_ready_and_says_why():
    ex, store, s = StubExchange(), MemoryCandleStore(), series()
    ex.missing = {T0 - i * 300 for i in range(5000) if i % 50}
    out = fill_series(s, ex, store, FetchOptions(candle_count=100), now=ex.now + 10)
    assert not out.ready and "closed candles exist" in out.reason


@pytest.mark.parametrize("name", ["1m", "5m", "1h", "1d"])
def test_in_progress_bucket_is_never_written(name):
    ex, store, s = StubExchange(), MemoryCandleStore(), series(name)
    now = ex.now + s.timeframe.seconds // 2
    ex.now = now
    fill_series(s, ex, store, FetchOptions(), now=now)
    assert max(store.members[s.name]) + s.timeframe.seconds <= now


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_watched_pools_reach_the_network_on_both_schemes(scheme):
    """HTTPS (every real exchange) goes through the same send hook as the simulators'
    HTTP: nothing listens on port 1, so the answer is a connection error, never a
    TypeError of the hook itself."""
    import urllib3

    from workers.exchange.body import Http

    with pytest.raises(urllib3.exceptions.NewConnectionError):
        Http().get(f"{scheme}://127.0.0.1:1/api/v3/klines", {}, (2, 2))
