"""The consumer side's reading rules: members are checked against the cache contract, and
nothing is computed from fewer than 60 candles (pure logic: fakeredis)."""

import json

import fakeredis
import pytest

from backfill import macdv
from backfill.indicators import CacheContractError, indicator_rows, validate_member
from core import keys
from core.candle import Candle
from core.config import BackfillConfig
from core.series import Series

S = Series.of("BTC-USD", "5m")
KEY = S.cache_key()
GOOD = Candle(1_700_000_100, 10.0, 11.0, 9.0, 10.5, 1.0).member("BTC-USD", "5m")


def test_a_contract_member_passes():
    assert validate_member(GOOD, S, KEY)["close"] == 10.5


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: {**m, "extra": 1},
        lambda m: dict(reversed(list(m.items()))),
        lambda m: {**m, "timestamp": m["timestamp"] + 1},
        lambda m: {**m, "open": -1},
        lambda m: {**m, "volume": -0.5},
        lambda m: {**m, "close": "10.5"},
        lambda m: {**m, "symbol": "ETH-USD"},
        lambda m: {**m, "timeframe": "1h"},
    ],
)
def test_members_breaking_the_contract_are_refused(mutate):
    bad = json.dumps(mutate(json.loads(GOOD)), separators=(",", ":"))
    with pytest.raises(CacheContractError, match=KEY):
        validate_member(bad, S, KEY)
    with pytest.raises(CacheContractError):
        validate_member("not json", S, KEY)


def test_too_few_candles_are_not_computed():
    r = fakeredis.FakeRedis()
    t0 = 1_700_000_100 - 1_700_000_100 % 300
    for i, n in ((0, 59), (1, 100)):
        s = Series.of(["BTC-USD", "ETH-USD"][i], "5m")
        for k in range(n):
            c = Candle(t0 + k * 300, 10 + k % 7, 12 + k % 7, 9 + k % 7, 11 + k % 7, 1.0)
            r.zadd(s.cache_key(), {c.member(s.symbol, "5m"): c.timestamp_ms})
    config = BackfillConfig(symbols=("BTC-USD", "ETH-USD"), timeframes=("5m",))
    summary = {"ready": ["BTC-USD:5m", "ETH-USD:5m"]}  # even if a gate said so
    rows = {row["symbol"]: row for row in indicator_rows(r, config, summary, publish_values=False)}
    assert rows["BTC-USD"]["macd_v"] is None and rows["BTC-USD"]["candles"] == 59
    assert rows["ETH-USD"]["macd_v"] is not None and rows["ETH-USD"]["candles"] == 100


def test_gappy_series_are_computed_as_the_platform_does_and_published_on_its_names():
    r = fakeredis.FakeRedis()
    t0 = 1_700_000_100 - 1_700_000_100 % 300
    s = Series.of("BTC-USD", "5m")
    kept = [k for k in range(150) if k % 4 != 3]  # every 4th bucket had no trades
    candles = [
        Candle(t0 + k * 300, 10 + k % 7, 12 + k % 7, 9 + k % 7, 11 + k % 7, 1.0) for k in kept
    ]
    for c in candles:
        r.zadd(s.cache_key(), {c.member(s.symbol, "5m"): c.timestamp_ms})
    pubsub = r.pubsub()
    pubsub.subscribe(keys.indicator_channel(1, 1, "BTC-USD", "5m"))
    config = BackfillConfig(symbols=("BTC-USD",), timeframes=("5m",))
    (row,) = indicator_rows(r, config, {"ready": ["BTC-USD:5m"]})
    want = macdv.compute_gap_filled(
        [json.loads(c.member(s.symbol, "5m")) for c in candles], 300_000
    )
    assert (row["macd_v"], row["signal"], row["histogram"]) == (
        want.macd_v,
        want.signal,
        want.histogram,
    )  # full precision, and signal/histogram in their own places
    assert row["gap_ratio"] == want.gap_ratio > 0 and row["liquidity"] == want.liquidity
    assert row["seeded"] is True
    stored = json.loads(r.get(keys.indicator(1, 1, "BTC-USD", "5m")))
    assert stored["macd_v"] == row["macd_v"] and stored["signal"] == row["signal"]
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    message = pubsub.get_message(timeout=1)
    assert message and json.loads(message["data"])["histogram"] == row["histogram"]
