"""The cache writer against a real redis-server: the contract, atomicity, idempotence."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.candle import Candle
from core.errors import InvalidCandle
from core.series import Series
from workers.cache import CandleCache

S = Series.of("BTC-USD", "5m")
T0 = 1_700_000_100 - 1_700_000_100 % 300


def candles(n, start=T0, px=100.0):
    return [
        Candle(start + i * 300, px + i, px + i + 1, px + i - 1, px + i + 0.5, 2.0) for i in range(n)
    ]


def test_contract_key_members_ttl(rclient):
    cache = CandleCache(rclient)
    cache.write(S, candles(3))
    key = "candles:1:1:BTC-USD:5m"
    items = rclient.zrange(key, 0, -1, withscores=True)
    assert [int(s) for _, s in items] == [(T0 + i * 300) * 1000 for i in range(3)]
    m = json.loads(items[0][0])
    assert list(m) == ["timestamp", "open", "high", "low", "close", "volume", "symbol", "timeframe"]
    assert m["timestamp"] == T0 * 1000 and m["symbol"] == "BTC-USD" and m["timeframe"] == "5m"
    assert 86000 < rclient.ttl(key) <= 86400


def test_replaces_same_timestamp_and_trims_to_1000(rclient):
    cache = CandleCache(rclient)
    key = cache.key(S)
    # a live writer's in-progress version of a bucket is replaced by the closed one
    rclient.zadd(
        key,
        {
            f'{{"timestamp":{T0 * 1000},"open":1,"high":1,"low":1,"close":1,"volume":0,'
            '"symbol":"BTC-USD","timeframe":"5m"}': T0 * 1000
        },
    )
    assert cache.write(S, candles(1)).held == 1
    assert json.loads(rclient.zrange(key, 0, -1)[0])["open"] == 100.0
    assert cache.write(S, candles(1100)).held == 1000
    assert int(rclient.zrange(key, 0, 0, withscores=True)[0][1]) == (T0 + 100 * 300) * 1000


@pytest.mark.parametrize(
    "bad",
    [
        Candle(T0, 1, 2, 0.5, 1, 1, closed=False),
        Candle(T0 + 1, 1, 2, 0.5, 1, 1),
        Candle(T0, -1, 2, -2, 1, 1),
        Candle(T0, 1, 2, 0.5, 1, -1),
        Candle(T0, 3, 2, 0.5, 1, 1),
    ],
)
def test_nothing_invalid_is_written(rclient, bad):
    cache = CandleCache(rclient)
    with pytest.raises(InvalidCandle):
        cache.write(S, [*candles(2, start=T0 + 600), bad])
    assert rclient.zcard(cache.key(S)) == 0


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 60), st.floats(1, 1e5)), max_size=40),
        min_size=1,
        max_size=4,
    )
)
def test_writes_are_idempotent_one_member_per_timestamp(rclient, batches):
    cache = CandleCache(rclient)
    rclient.delete(cache.key(S))
    last: dict[int, float] = {}
    for batch in batches:
        cs = {i: Candle(T0 + i * 300, px, px, px, px, 1.0) for i, px in batch}
        cache.write(S, [cs[i] for i in sorted(cs)])
        last.update({T0 + i * 300: c.open for i, c in cs.items()})
    items = rclient.zrange(cache.key(S), 0, -1, withscores=True)
    assert [int(s) // 1000 for _, s in items] == sorted(last)
    assert all(json.loads(m)["open"] == last[int(s) // 1000] for m, s in items)


def test_state_ignores_members_after_the_last_closed_bucket(rclient):
    cache = CandleCache(rclient)
    cache.write(S, candles(5))
    st_ = cache.state(S, T0 + 2 * 300, 100)
    assert (st_.count, st_.newest_start, st_.checked_upto) == (3, T0 + 600, None)
    assert cache.state(S, T0 + 4 * 300, 2).starts == [T0 + 1200, T0 + 900]


def test_checked_marker_and_gaps(rclient):
    cache = CandleCache(rclient)
    cs = candles(6)
    cache.write(S, [cs[0], cs[2], cs[5]], checked_upto=T0 + 7 * 300, exhausted=True)
    st_ = cache.state(S, T0 + 7 * 300, 100)
    assert st_.checked_upto == T0 + 7 * 300 and st_.exhausted
    assert st_.gaps(300) == 3  # buckets 1, 3, 4 had no trades
    cache.write(S, [], checked_upto=T0 + 300)  # an older check never moves the marker back
    assert cache.state(S, T0 + 7 * 300, 100).checked_upto == T0 + 7 * 300


def test_a_member_written_by_the_platform_is_replaced_not_duplicated(rclient):
    cache = CandleCache(rclient)
    c = Candle(T0, 310.0, 311.5, 309.0, 310.0, 2.0)
    # the platform's writer: JSON.stringify of the same candle, and of a corrected one
    platform = (
        f'{{"timestamp":{T0 * 1000},"open":310,"high":311.5,"low":309,"close":310,'
        '"volume":2,"symbol":"BTC-USD","timeframe":"5m"}'
    )
    rclient.zadd(S.cache_key(), {platform: T0 * 1000})
    cache.write(S, [c])
    assert rclient.zrange(S.cache_key(), 0, -1) == [platform.encode()]  # the same bytes
    corrected = Candle(T0, 310.0, 312.0, 309.0, 311.0, 3.0)
    cache.write(S, [corrected])
    held = rclient.zrangebyscore(S.cache_key(), T0 * 1000, T0 * 1000)
    assert held == [corrected.member("BTC-USD", "5m").encode()]  # replaced, one per bucket


def test_the_write_reads_the_series_back_as_state_reads_it(rclient):
    """`read_back`: the state after the write, in the same call, equal to a separate
    `state()`: another writer's members are checked (junk named), ours are not resent."""
    cache = CandleCache(rclient)
    key = cache.key(S)
    other = candles(2, start=T0 - 600, px=50.0)  # another writer's sound members, older
    for c in other:
        rclient.zadd(key, {c.member("BTC-USD", "5m"): c.timestamp_ms})
    rclient.zadd(key, {b"not json": (T0 - 900) * 1000})  # junk, older still
    rclient.zadd(key, {b"\xff after": (T0 + 10 * 300) * 1000})  # junk after the bucket asked
    newest = T0 + 4 * 300
    for n in (3, 7, 50):
        written = cache.write(S, candles(5), checked_upto=newest, read_back=(newest, n))
        assert written.state == cache.state(S, newest, n)
    st = written.state
    assert st.starts == [T0 + i * 300 for i in range(4, -3, -1)]  # 5 ours, 2 the other's
    assert st.junk == (b"not json",) and st.checked_upto == newest
    assert cache.write(S, candles(1)).state is None  # none asked for: none read
