"""The consumer side's reading rules: members are checked against the cache contract, and
nothing is computed from fewer than 60 candles (pure logic: fakeredis)."""

import json

import fakeredis
import pytest

from backfill import macdv
from backfill.indicators import indicator_rows, platform_value
from core import keys
from core.candle import Candle
from core.config import BackfillConfig
from core.errors import CacheContractError
from core.jsnum import js_number
from core.member import validate_member
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
    raw = r.get(keys.indicator(1, 1, "BTC-USD", "5m"))
    stored = json.loads(raw)
    assert stored["value"]["macdV"] == row["macd_v"] and stored["value"]["signal"] == row["signal"]
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    message = pubsub.get_message(timeout=1)
    assert message and message["data"] == raw  # the same bytes on key and channel
    assert json.loads(message["data"])["value"]["histogram"] == row["histogram"]


# --- the value's bytes: the platform's own shape (cache-contract.md, "Indicator value") ----

TOP = ["timestamp", "type", "symbol", "timeframe", "value", "params"]
VALUE = ["macdV", "signal", "histogram", "fastEMA", "slowEMA", "atr"]
PARAMS = [
    "fastPeriod",
    "slowPeriod",
    "atrPeriod",
    "signalPeriod",
    "stage",
    "liquidity",
    "gapRatio",
    "zeroRangeRatio",
    "seeded",
    "nEff",
    "spanBars",
    "reason",
]
CONTRACT_EXAMPLE = (
    '{"timestamp":1712192400000,"type":"macd-v","symbol":"BTC-USD","timeframe":"1h",'
    '"value":{"macdV":12.3,"signal":10.1,"histogram":2.2,"fastEMA":65100.1,"slowEMA":65020.7,'
    '"atr":650.2},"params":{"fastPeriod":12,"slowPeriod":26,"atrPeriod":26,"signalPeriod":9,'
    '"stage":"rallying","liquidity":"high","gapRatio":0,"zeroRangeRatio":0,"seeded":true,'
    '"nEff":26,"spanBars":200,"reason":null}}'
)


def _pairs(text: str | bytes) -> list:
    """The JSON as nested (key, value) lists: key order is part of the bytes."""
    return json.loads(text, object_pairs_hook=list)


def _stringify(v) -> str:
    """JSON.stringify restated for this shape: no spaces, numbers by js_number (checked
    against node in test_jsnum), dicts in order."""
    if isinstance(v, list) and all(isinstance(p, tuple) for p in v):
        return "{" + ",".join(f"{json.dumps(k)}:{_stringify(x)}" for k, x in v) + "}"
    if v is None or isinstance(v, bool | str):
        return json.dumps(v)
    return js_number(v)


def assert_platform_shape(text: str | bytes) -> dict:
    text = text.decode() if isinstance(text, bytes) else text
    top = _pairs(text)
    assert [k for k, _ in top] == TOP
    d = dict(top)
    assert [k for k, _ in d["value"]] == VALUE and [k for k, _ in d["params"]] == PARAMS
    assert all(isinstance(x, int | float) and not isinstance(x, bool) for _, x in d["value"])
    assert _stringify(top) == text  # every number as JavaScript prints it, no spaces
    return json.loads(text)


def test_the_contracts_example_is_written_byte_for_byte():
    v = macdv.GapFilledMacdV(
        12.3, 10.1, 2.2, "rallying", seeded=True, reason=None, gap_ratio=0.0,
        liquidity="high", bars=200, synthetic=0, observed=26, candles=200, skipped=False,
        fast_ema=65100.1, slow_ema=65020.7, atr=650.2, zero_range_ratio=0.0, span_bars=200,
    )  # fmt: skip
    got = platform_value(Series.of("BTC-USD", "1h"), v, 1712192400000)
    assert got == CONTRACT_EXAMPLE
    assert_platform_shape(got)


def _gappy(r, s: Series, n: int = 150, every: int = 4, flat_from: int | None = None) -> list:
    t0 = 1_700_000_100 - 1_700_000_100 % 300
    kept = [k for k in range(n) if k % every != every - 1]
    candles = []
    for k in kept:
        if flat_from is not None and k >= flat_from:
            c = Candle(t0 + k * 300, 10.0, 10.0, 10.0, 10.0, 0.5)
        else:  # awkward numbers: JavaScript and Python print them differently
            c = Candle(t0 + k * 300, 1e-7 * (10 + k % 7), 1e-7 * (12 + k % 7), 1e-7 * (9 + k % 7),
                       1e-7 * (11 + k % 7), 310.0 + k)  # fmt: skip
        candles.append(c)
        r.zadd(s.cache_key(), {c.member(s.symbol, s.timeframe.name): c.timestamp_ms})
    return [json.loads(c.member(s.symbol, s.timeframe.name)) for c in candles]


def test_the_value_is_the_platforms_shape_with_its_ttl_and_numbers():
    r = fakeredis.FakeRedis()
    s = Series.of("BTC-USD", "5m")
    members = _gappy(r, s)
    config = BackfillConfig(symbols=("BTC-USD",), timeframes=("5m",))
    (row,) = indicator_rows(r, config, {"ready": ["BTC-USD:5m"]})
    key = keys.indicator(1, 1, "BTC-USD", "5m")
    assert 89_999 <= r.ttl(key) <= 90_000
    got = assert_platform_shape(r.get(key))
    want = macdv.compute_gap_filled(members, 300_000)
    bars = macdv.fill_gaps(members, 300_000)
    closes = [b.close for b in bars]
    assert got["timestamp"] == members[-1]["timestamp"] and got["type"] == "macd-v"
    assert (got["symbol"], got["timeframe"]) == ("BTC-USD", "5m")
    assert got["value"] == {
        "macdV": want.macd_v,
        "signal": want.signal,
        "histogram": want.histogram,
        "fastEMA": macdv.ema(closes, 12)[-1],
        "slowEMA": macdv.ema(closes, 26)[-1],
        "atr": macdv.observed_atr(bars, 26)[-1],
    }
    synthetic = sum(b.synthetic for b in bars)
    assert got["params"] == {
        "fastPeriod": 12,
        "slowPeriod": 26,
        "atrPeriod": 26,
        "signalPeriod": 9,
        "stage": row["stage"],
        "liquidity": "medium",  # one bucket in four missing: 0.2 <= gap ratio < 0.5
        "gapRatio": synthetic / len(bars),
        "zeroRangeRatio": synthetic / len(bars),  # only the synthetic bars are flat
        "seeded": True,
        "nEff": len(members),  # observed true ranges: every cached candle is real
        "spanBars": len(bars),  # first to last observed bar
        "reason": None,
    }
    assert 0.2 <= got["params"]["gapRatio"] < 0.5


def test_no_value_is_written_where_the_platform_writes_none():
    r = fakeredis.FakeRedis()
    few, flat = Series.of("ETH-USD", "5m"), Series.of("SOL-USD", "5m")
    _gappy(r, few, n=70)  # 53 candles: fewer than 60
    _gappy(r, flat, n=150, flat_from=0)  # no price movement: ATR 0, MACD-V undefined
    config = BackfillConfig(symbols=("ETH-USD", "SOL-USD"), timeframes=("5m",))
    rows = indicator_rows(r, config, {"ready": ["ETH-USD:5m", "SOL-USD:5m"]})
    assert [row["macd_v"] for row in rows] == [None, None]
    assert r.keys("indicator:*") == []
