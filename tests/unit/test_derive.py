"""Longer timeframes from finer cached candles: the pure rule (core/derive.py) and the job."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core import keys
from core.candle import Candle
from core.derive import Derived, Incomplete, SourceView, TargetView, derive, plan, sources
from core.errors import InvalidInput
from core.jobs import RefreshJob
from core.series import Series
from core.timeframe import parse_timeframes, timeframe

M5, H1 = timeframe("5m"), timeframe("1h")
HOUR = 1_712_192_400  # a 1h (and 5m) bucket start
SERIES = Series.of("BTC-USD", "1h")


def member(start: int, o, h, low, c, v, tf: str = "5m") -> tuple[bytes, float]:
    m = Candle(start, float(o), float(h), float(low), float(c), float(v)).member("BTC-USD", tf)
    return m.encode(), float(start * 1000)


def five_minutes(n: int = 12, skip: tuple[int, ...] = ()) -> list[tuple[bytes, float]]:
    out = []
    for i in range(n):
        if i in skip:
            continue
        p = 100 + i
        out.append(member(HOUR + i * 300, p, p + 0.5, p - 0.25, p + 0.1, f"0.{i + 1}0000001"))
    return out


def source(members, upto=HOUR + 3300, oldest=HOUR - 300 * 50) -> SourceView:
    return SourceView(M5, members, upto, oldest)


TARGET = TargetView(newest_before=HOUR - 3600, checked_upto=HOUR - 3600, count=100)


def test_the_hour_is_the_aggregate_of_its_five_minutes_with_the_exchanges_bytes():
    got = derive(SERIES, HOUR, source(five_minutes(skip=(0, 11))), TARGET, 100)
    assert isinstance(got, Derived) and got.source == "5m"
    # open of the first present, close of the last, max high, min low, exact volume sum
    volume = float(sum(Decimal(f"0.{i + 1}0000001") for i in range(1, 11)))
    want = Candle(HOUR, 101.0, 110.5, 100.75, 110.1, volume)
    assert got.candle.member("BTC-USD", "1h") == want.member("BTC-USD", "1h")
    assert '"open":101,"high":110.5,"low":100.75,"close":110.1,"volume":4.610000082,' in (
        got.candle.member("BTC-USD", "1h")
    )


def test_volumes_sum_exactly_where_floats_would_not():
    ms = [member(HOUR + i * 300, 1, 1, 1, 1, "0.1") for i in range(3)]
    got = derive(SERIES, HOUR, source(ms), TARGET, 100)
    assert '"volume":0.3,' in got.candle.member("BTC-USD", "1h")  # not 0.30000000000000004


def test_no_trades_in_the_hour_is_known_and_writes_nothing():
    got = derive(SERIES, HOUR, source([]), TARGET, 100)
    assert isinstance(got, Derived) and got.candle is None


@pytest.mark.parametrize(
    "src,target,why",
    [
        (source(five_minutes(), upto=HOUR + 3000), TARGET, "checked up to"),
        (source(five_minutes(), upto=None), TARGET, "checked up to"),
        (source(five_minutes(skip=(0,)), oldest=HOUR + 300), TARGET, "cache starts after"),
        (source(five_minutes(), oldest=None), TARGET, "cache starts after"),
        (source(five_minutes()), TargetView(HOUR - 7200, HOUR - 7200, 100), "a hole first"),
        (source(five_minutes()), TargetView(None, None, 0), "a hole first"),
        (source(five_minutes()), TargetView(HOUR - 3600, None, 40), "41 of 100"),
        (source([]), TargetView(HOUR - 3600, None, 99), "99 of 100"),
        (source([(b'{"timestamp":1}', HOUR * 1000.0)]), TARGET, "breaks the contract"),
        (
            source([(member(HOUR + 300, 1, 1, 1, 1, 1)[0], HOUR * 1000.0)]),
            TARGET,
            "own timestamp",
        ),
    ],
)
def test_anything_less_than_complete_data_is_not_derived(src, target, why):
    got = derive(SERIES, HOUR, src, target, 100)
    assert isinstance(got, Incomplete) and why in got.reason


def test_a_short_series_that_has_all_the_exchange_has_is_derived():
    target = TargetView(HOUR - 3600, HOUR - 3600, 40, exhausted=True)
    assert isinstance(derive(SERIES, HOUR, source(five_minutes()), target, 100), Derived)


def test_a_bucket_not_aligned_or_a_source_that_does_not_divide_is_refused():
    assert isinstance(derive(SERIES, HOUR + 300, source(five_minutes()), TARGET, 100), Incomplete)
    four, b4 = Series.of("BTC-USD", "4h"), HOUR - HOUR % 14400
    s30 = SourceView(timeframe("30m"), [], b4 + 14400 - 1800, b4 - 86400)
    t4 = TargetView(b4 - 14400, b4 - 14400, 100)
    assert isinstance(derive(four, b4, s30, t4, 100), Derived)
    s4h = SourceView(timeframe("4h"), [], HOUR, HOUR - 86400)
    assert isinstance(derive(Series.of("BTC-USD", "6h"), 0, s4h, TARGET, 100), Incomplete)


def test_the_plan_derives_every_longer_timeframe_and_sources_go_coarsest_first():
    tfs = parse_timeframes("5m,15m,1h,4h,1d")
    assert [t.name for t in plan(tfs[0], tfs)] == ["15m", "1h", "4h", "1d"]
    assert [t.name for t in sources(timeframe("1d"), tfs[:4])] == ["4h", "1h", "15m", "5m"]
    assert [t.name for t in sources(timeframe("6h"), parse_timeframes("5m,4h"))] == ["5m"]


def test_the_refresh_job_carries_what_to_derive_and_audit():
    job = RefreshJob("BTC-USD", "5m", boundary_ms=HOUR * 1000, derive=("15m", "1h"),
                     audit=("1h",))  # fmt: skip
    assert RefreshJob.from_message(job.to_message()) == job
    check = RefreshJob("BTC-USD", "1h", boundary_ms=HOUR * 1000, check=True)
    assert check.queue == keys.AUDIT_QUEUE == keys.queue_order()[-1]
    assert RefreshJob.from_message(check.to_message()) == check


@pytest.mark.parametrize(
    "change,named",
    [
        ({"derive": "1h"}, "derive"),
        ({"derive": ["7m"]}, "7m"),
        ({"derive": ["5m"]}, "multiples"),
        ({"derive": ["1h", "15m"]}, "order"),
        ({"derive": ["15m"], "audit": ["1h"]}, "audit"),
        ({"derive": ["15m"], "boundary_ms": None}, "boundary_ms"),
        ({"check": True, "derive": ["15m"]}, "check"),
        ({"check": 1}, "check"),
    ],
)
def test_a_bad_derive_field_is_refused_by_name(change, named):
    raw = {**RefreshJob("BTC-USD", "5m", boundary_ms=0).to_message(), **change}
    with pytest.raises(InvalidInput, match=named):
        RefreshJob.from_message(raw)
