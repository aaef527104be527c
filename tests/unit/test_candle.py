"""Candle parsing, page merging and 4h aggregation: properties (hypothesis) and examples."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.candle import Candle, aggregate, merge, parse_candle, parse_candles
from core.errors import TransientError
from core.jsnum import js_number
from core.timeframe import timeframe

H1, H4, M5 = timeframe("1h"), timeframe("4h"), timeframe("5m")
T0 = 1_700_000_000 - 1_700_000_000 % 14400


def raw(start, o="10", h="12", low="9", c="11", v="1.5"):
    return {"start": str(start), "open": o, "high": h, "low": low, "close": c, "volume": v}


def test_parse_strings_and_closed_flag():
    c = parse_candle(raw(T0), H1, closed_before=T0 + 3600)
    assert (c.start, c.open, c.high, c.low, c.close, c.volume, c.closed) == (
        T0,
        10.0,
        12.0,
        9.0,
        11.0,
        1.5,
        True,
    )
    assert not parse_candle(raw(T0), H1, closed_before=T0 + 3599).closed


@pytest.mark.parametrize(
    "bad",
    [
        raw(T0 + 1),
        raw(T0, o="0"),
        raw(T0, v="-1"),
        raw(T0, h="10.5"),
        raw(T0, low="10.5"),
        raw(T0, c="nan"),
        {"start": str(T0)},
        raw(T0, o="abc"),
        raw(-3600),
    ],
)
def test_invalid_candles_are_refused(bad):
    with pytest.raises(TransientError):
        parse_candle(bad, H1, closed_before=T0 + 10**6)


candle_st = st.builds(
    lambda i, closed, px: Candle(T0 + i * 300, px, px * 1.01, px * 0.99, px, 1.0, closed),
    st.integers(0, 50),
    st.booleans(),
    st.floats(1, 1000),
)


@given(st.lists(st.lists(candle_st, max_size=30), max_size=5))
def test_merge_sorted_unique_and_prefers_closed(pages):
    merged = merge(*pages)
    starts = [c.start for c in merged]
    assert starts == sorted(set(starts))
    assert set(starts) == {c.start for p in pages for c in p}
    for c in merged:
        if any(x.start == c.start and x.closed for p in pages for x in p):
            assert c.closed


hour_st = st.lists(
    st.tuples(
        st.integers(0, 47),
        st.floats(1, 100),
        st.floats(0, 0.05),
        st.floats(0, 0.05),
        st.floats(-0.03, 0.03),
        st.integers(0, 10**9),
    ),
    max_size=48,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200)
@given(hour_st, st.integers(0, 48))
def test_aggregate_4h_matches_definition(hours, closed_upto):
    candles = []
    for i, o, up, down, move, vol in sorted(hours):
        c = o * (1 + move)
        candles.append(
            Candle(
                T0 + i * 3600,
                o,
                max(o, c) * (1 + up),
                min(o, c) * (1 - down),
                c,
                vol / 1e8,
                closed=i < closed_upto,
            )
        )
    fetched = (T0, T0 + closed_upto * 3600)
    out = aggregate(candles, H4, H1, fetched=fetched)
    for b in out:
        assert b.start % 14400 == 0 and b.closed
        assert fetched[0] <= b.start and b.start + 14400 <= fetched[1]
        kids = [c for c in candles if b.start <= c.start < b.start + 14400]
        assert kids and all(k.closed for k in kids)
        assert (b.open, b.close) == (kids[0].open, kids[-1].close)
        assert b.high == max(k.high for k in kids) and b.low == min(k.low for k in kids)
        assert (
            b.volume == round(sum(round(k.volume, 8) for k in kids), 8)
            or abs(b.volume - sum(k.volume for k in kids)) < 1e-8
        )
    expected = {
        T0 + j * 14400
        for j in range(closed_upto // 4)
        if any(T0 + j * 14400 <= c.start < T0 + (j + 1) * 14400 for c in candles)
    }
    assert {b.start for b in out} == expected


def test_aggregate_never_uses_partial_span_or_open_hour():
    hours = [Candle(T0 + i * 3600, 10, 11, 9, 10, 1, closed=i < 6) for i in range(7)]
    out = aggregate(hours, H4, H1, fetched=(T0 + 3600, T0 + 6 * 3600))
    assert out == []  # first 4h bucket starts before the fetched range, second not closed
    out = aggregate(hours, H4, H1, fetched=(T0, T0 + 6 * 3600))
    assert [b.start for b in out] == [T0] and out[0].volume == 4


def test_member_is_what_the_platforms_writer_stores():
    c = Candle(1712192400, 65100.2, 65210.0, 65000.1, 65180.9, 12.3456)
    assert c.member("BTC-USD", "1h") == (  # JSON.stringify: 65210, not 65210.0
        '{"timestamp":1712192400000,"open":65100.2,"high":65210,"low":65000.1,'
        '"close":65180.9,"volume":12.3456,"symbol":"BTC-USD","timeframe":"1h"}'
    )


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (
            (310.0, 310.5, 309.0, 310.0, 0.0),
            '"open":310,"high":310.5,"low":309,"close":310,"volume":0',
        ),
        (
            (0.00001289, 0.0000129, 0.00001288, 0.00001289, 1e-7),
            '"open":0.00001289,"high":0.0000129,"low":0.00001288,"close":0.00001289,"volume":1e-7',
        ),
        ((1e21, 1e21, 1e21, 1e21, 123456789.0), '"open":1e+21,"high":1e+21,"low":1e+21,'
         '"close":1e+21,"volume":123456789'),
    ],
)  # fmt: skip
def test_member_numbers_are_printed_as_javascript_prints_them(values, text):
    assert text in Candle(1712192400, *values).member("BTC-USD", "1h")


@given(
    st.integers(1, 10**7),
    st.lists(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False), min_size=5, max_size=5),
)
def test_member_round_trips_every_value_exactly(bucket, values):
    import json

    o, h, low, c, v = values
    candle = Candle(bucket * 300, o, h, low, c, v)
    text = candle.member("BTC-USD", "5m")
    back = json.loads(text)
    assert list(back) == ["timestamp", "open", "high", "low", "close", "volume", "symbol",
                          "timeframe"]  # fmt: skip
    assert [back[k] for k in ("open", "high", "low", "close", "volume")] == values
    assert back["timestamp"] == bucket * 300_000
    assert ".0," not in text and "e-0" not in text  # never Python's 310.0 or 1e-05


any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([310.0, -0.0, 0.0, 1e-4, 9.9e-5, 1e16, 9999999999999998.0, 1e21, 0.1]),
)


@given(st.lists(any_float, min_size=5, max_size=5))
def test_member_fast_path_prints_what_js_number_prints(values):
    """The member's one-pass layout (repr where it is already JavaScript's) against the
    reference, `js_number` for each value: the same text, or the same refusal."""
    candle = Candle(1712192400, *values)
    try:
        want = [js_number(x) for x in values]
    except ValueError:
        with pytest.raises(ValueError):
            candle.member("BTC-USD", "1h")
        return
    text = candle.member("BTC-USD", "1h")
    got = [text.split(f'"{k}":')[1].split(",")[0] for k in ("open", "high", "low", "close")]
    got.append(text.split('"volume":')[1].split(",")[0])
    assert got == want


number_text = st.one_of(
    st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{0,8})?\Z"),
    st.sampled_from(["0", "1.", ".5", ".", "", "1e3", "1_0", "\u0661", " 1", "-1", "1e400",
                     "9" * 400, "NaN", "Infinity", "0x10", "1.2.3"]),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.none(),
)  # fmt: skip


def _outcome(parse):
    try:
        return parse()
    except TransientError as e:
        return ("error", str(e))


@given(
    st.lists(
        st.tuples(st.integers(-2, 4), st.lists(number_text, min_size=5, max_size=5)),
        max_size=6,
    )
)
@settings(max_examples=400)
def test_page_parse_is_parse_candle_row_by_row(rows):
    """`parse_candles`' fast path gives the candles (volume text included) and the first
    error `parse_candle` gives, on usual rows and on hostile ones."""
    raws, starts = [], []
    for bucket, (o, h, low, c, v) in rows:
        start = T0 + bucket * 3600 + (1 if bucket == 4 else 0)  # 4: not aligned
        raws.append({"start": str(start), "open": o, "high": h, "low": low, "close": c,
                     "volume": v})  # fmt: skip
        starts.append(start)

    def one_by_one():
        return [parse_candle(r, H1, T0 + 7200, start=s) for r, s in zip(raws, starts, strict=True)]

    want = _outcome(one_by_one)
    got = _outcome(lambda: parse_candles(raws, starts, H1, T0 + 7200))
    assert got == want
    if not isinstance(want, tuple):
        assert [c.volume_text for c in got] == [c.volume_text for c in want]


plain = st.from_regex(r"\A(0|[1-9][0-9]{0,6})(\.[0-9]{0,9})?\Z|\A\.[0-9]{1,6}\Z")


@given(st.lists(st.tuples(st.lists(plain, min_size=4, max_size=4), plain), max_size=8))
def test_page_parse_of_sound_rows_is_parse_candle_row_by_row(rows):
    """Sound rows of plain text (the fast path's case: low <= open, close <= high)."""
    raws, starts = [], []
    for i, (prices, v) in enumerate(rows):
        low, o, c, h = sorted(prices, key=float)
        raws.append({"start": str(T0 + i * 3600), "open": o, "high": h, "low": low,
                     "close": c, "volume": v})  # fmt: skip
        starts.append(T0 + i * 3600)
    want = _outcome(lambda: [parse_candle(r, H1, T0 + 7200) for r in raws])
    got = _outcome(lambda: parse_candles(raws, starts, H1, T0 + 7200))
    assert got == want
    if not isinstance(want, tuple):
        assert [(c.volume_text, c.closed) for c in got] == [
            (c.volume_text, c.closed) for c in want
        ]
