"""MACD-V as the platform computes it: gaps filled with synthetic bars, ATR over observed TRs.

Hand-computed small cases, an independent pandas implementation on random gappy series, the
gap-free case against the plain formulas (exactly), the liquidity tiers at their bounds and
the 200-newest read rule.
"""

from __future__ import annotations

import random
from fractions import Fraction as F

import numpy as np
import pytest
from helpers import pandas_platform_macd_v
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.macdv import (
    LOW_ACTIVITY,
    MIN_CANDLES,
    NO_MOVEMENT,
    READ_CANDLES,
    Bar,
    GapFilledMacdV,
    compute,
    compute_gap_filled,
    fill_gaps,
    first_signal_index,
    gap_filled_series,
    liquidity,
    macd_v_series,
    observed_atr,
    platform_signal,
    stage,
)

TF = 60_000  # 1m
SMALL = {"fast": 2, "slow": 3, "atr": 2, "signal": 2}


def candle(i: int, h: float, lo: float, c: float, o: float | None = None, v: float = 1.0) -> dict:
    """A cache member at bucket i (timestamps in ms, a multiple of the timeframe)."""
    return {
        "timestamp": 1_700_000_040_000 + i * TF,
        "open": c if o is None else o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": v,
        "symbol": "BTC-USD",
        "timeframe": "1m",
    }


def random_candles(
    n: int, seed: int, gap_p: float = 0.3, max_run: int = 4, price: float = 100.0
) -> list[dict]:
    """n real candles; before each (but the first) a run of up to max_run empty buckets."""
    rng = random.Random(seed)
    out, bucket = [], 0
    for k in range(n):
        if k and rng.random() < gap_p:
            bucket += rng.randint(1, max_run)
        open_ = price
        price = max(1.0, price * (1 + rng.gauss(0, 0.02)))
        high = max(open_, price) * (1 + abs(rng.gauss(0, 0.005)))
        low = min(open_, price) * (1 - abs(rng.gauss(0, 0.005)))
        out.append(candle(bucket, high, low, price, o=open_, v=rng.random() * 10))
        bucket += 1
    return out


# --- hand-computed cases ----------------------------------------------------------------


def test_one_gap_by_hand() -> None:
    # buckets 0 1 2 _ 4; the missing bucket 3 becomes a flat bar at close 11.
    cs = [candle(0, 11, 9, 10), candle(1, 13, 10, 12), candle(2, 12, 10, 11), candle(4, 16, 13, 15)]
    bars = fill_gaps(cs, TF)
    assert [b.synthetic for b in bars] == [False, False, False, True, False]
    gap = bars[3]
    assert gap == Bar(cs[2]["timestamp"] + TF, 11, 11, 11, 11, 0.0, True)
    # TR: 2; max(3, 3, 0) = 3; max(2, 0, 2) = 2; missing; max(3, |16-11|, |13-11|) = 5.
    # ATR2: mean(2, 3) = 2.5; (2.5 + 2) / 2 = 2.25; carried 2.25; (2.25 + 5) / 2 = 3.625.
    # (A TR of 0 for the gap would give 1.125 and then 3.0625.)
    assert observed_atr(bars, 2) == [None, 2.5, 2.25, 2.25, 3.625]
    # EMA2 (alpha 2/3) over 10 12 11 11 15: -, 11, 11, 11, 11 + 2/3*4 = 41/3.
    # EMA3 (alpha 1/2): -, -, 11, 11, 13.  MACD-V: 0, 0, (41/3 - 13) / 3.625 * 100.
    m4 = (F(41, 3) - 13) / F(29, 8) * 100
    # Signal EMA2 from the first defined MACD-V (index 2): seed mean(0, 0) = 0, then 2/3 * m4.
    s4 = F(2, 3) * m4
    m, s, h = gap_filled_series(bars, **SMALL)
    assert m[:4] == [None, None, 0.0, 0.0]
    assert m[4] == pytest.approx(float(m4), rel=1e-12)
    assert s[:4] == [None, None, None, 0.0]
    assert s[4] == pytest.approx(float(s4), rel=1e-12)
    assert h[4] == pytest.approx(float(m4 - s4), rel=1e-12)

    r = compute_gap_filled(cs, TF, min_candles=1, **SMALL)
    assert (r.macd_v, r.signal, r.histogram) == (m[4], s[4], h[4])
    assert r.stage == "rebounding"  # -150 < 18.39 < 50 and m > s
    assert (r.bars, r.synthetic, r.observed, r.candles) == (5, 1, 4, 4)
    assert r.gap_ratio == 0.2 and r.liquidity == "medium"
    assert r.seeded and r.reason is None and not r.skipped


def test_run_of_gaps_by_hand() -> None:
    # buckets 0 1 _ _ _ 5: three flat bars at 12; the ATR carries over all three.
    cs = [candle(0, 11, 9, 10), candle(1, 13, 11, 12), candle(5, 17, 15, 16)]
    bars = fill_gaps(cs, TF)
    assert [b.close for b in bars] == [10, 12, 12, 12, 12, 16]
    assert [b.synthetic for b in bars] == [False, False, True, True, True, False]
    assert all(b.volume == 0 and b.open == b.high == b.low == b.close for b in bars[2:5])
    # TR: 2; max(2, 3, 1) = 3; -, -, -; max(2, |17-12|, |15-12|) = 5.
    assert observed_atr(bars, 2) == [None, 2.5, 2.5, 2.5, 2.5, 3.75]
    ema2 = [None, F(11), F(35, 3), F(107, 9), F(323, 27), F(1187, 81)]
    ema3 = [None, None, F(34, 3), F(35, 3), F(71, 6), F(167, 12)]
    atr = [None, None, F(5, 2), F(5, 2), F(5, 2), F(15, 4)]
    want_m = [None, None] + [(ema2[i] - ema3[i]) / atr[i] * 100 for i in range(2, 6)]
    assert want_m[2:] == [F(40, 3), F(80, 9), F(140, 27), F(4780, 243)]
    # signal EMA2: seed mean(40/3, 80/9) = 100/9; 580/81; 11300/729.
    want_s = [None, None, None, F(100, 9), F(580, 81), F(11300, 729)]
    m, s, h = gap_filled_series(bars, **SMALL)
    for got, want in ((m, want_m), (s, want_s)):
        assert [g is None for g in got] == [w is None for w in want]
        for g, w in zip(got, want, strict=True):
            if w is not None:
                assert g == pytest.approx(float(w), rel=1e-12)
    assert h[5] == pytest.approx(float(want_m[5] - want_s[5]), rel=1e-12)
    r = compute_gap_filled(cs, TF, min_candles=1, **SMALL)
    assert r.gap_ratio == 0.5 and r.liquidity == "low"
    assert (r.bars, r.synthetic, r.observed) == (6, 3, 3)


def test_too_few_observed_bars_to_seed_is_low_trading_activity() -> None:
    # 25 real candles, 3 empty buckets after each: 97 bars, EMAs defined, ATR26 never seeded.
    cs = [candle(4 * i, 101 + i, 99, 100 + i) for i in range(25)]
    r = compute_gap_filled(cs, TF, min_candles=20)
    assert (r.macd_v, r.signal, r.histogram) == (None, None, None)
    assert r.stage == "unknown" and not r.seeded and r.reason == LOW_ACTIVITY
    assert (r.bars, r.synthetic, r.observed) == (97, 72, 25)
    assert r.liquidity == "low" and not r.skipped
    # one more real candle seeds it at that bar (the 26th observed TR)
    cs.append(candle(100, 130, 120, 125))
    r = compute_gap_filled(cs, TF, min_candles=20)
    assert r.seeded and r.macd_v is not None and r.reason is None
    bars = fill_gaps(cs, TF)
    atr = observed_atr(bars)
    assert atr[-2] is None and atr[-1] is not None


def test_sixty_real_candles_always_seed() -> None:
    # Every cached candle is a real bar with a TR, so the 60-candle rule implies >= 26
    # observed TRs: 'Low trading activity' is reachable only below the 60-candle minimum.
    cs = random_candles(MIN_CANDLES, seed=3, gap_p=0.9, max_run=10)
    r = compute_gap_filled(cs, TF)
    assert r.seeded and r.observed == 60 and r.macd_v is not None and r.signal is not None


def test_fewer_than_60_candles_is_skipped() -> None:
    cs = random_candles(MIN_CANDLES - 1, seed=4)
    r = compute_gap_filled(cs, TF)
    assert r.skipped and not r.seeded and r.reason == "Fewer than 60 candles"
    assert (r.macd_v, r.signal, r.histogram, r.stage) == (None, None, None, "unknown")
    assert r.candles == 59 and r.observed == 59 and r.bars >= 59
    empty = compute_gap_filled([], TF)
    assert empty.skipped and empty.gap_ratio is None and empty.liquidity is None
    assert empty.bars == 0


def test_flat_series_has_no_movement() -> None:
    cs = [candle(2 * i, 100, 100, 100) for i in range(60)]
    r = compute_gap_filled(cs, TF)
    assert r.seeded and r.macd_v is None and r.reason == NO_MOVEMENT and r.stage == "unknown"


def test_signal_counts_a_later_undefined_macd_v_as_zero() -> None:
    # n=2, alpha 2/3: inputs 3, 0 (the gap), 6 -> seed 1.5, then 1.5 + 2/3 * 4.5 = 4.5.
    assert platform_signal([None, 3.0, None, 6.0], 2) == [None, None, 1.5, 4.5]
    assert platform_signal([None, None], 2) == [None, None]
    assert platform_signal([], 9) == []


# --- gap-free: exactly the plain formulas -----------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gap_free_equals_plain_formulas_exactly(seed: int) -> None:
    cs = random_candles(200, seed, gap_p=0.0)
    high, low, close = ([c[k] for c in cs] for k in ("high", "low", "close"))
    bars = fill_gaps(cs, TF)
    assert not any(b.synthetic for b in bars)
    assert gap_filled_series(bars) == macd_v_series(high, low, close)
    plain = compute(high, low, close)
    r = compute_gap_filled(cs, TF)
    assert (r.macd_v, r.signal, r.histogram, r.stage) == (
        plain.macd_v,
        plain.signal,
        plain.histogram,
        plain.stage,
    )
    assert r.gap_ratio == 0.0 and r.liquidity == "high" and r.synthetic == 0


def test_gap_free_with_flat_start_equals_plain_formulas_exactly() -> None:
    cs = [candle(i, 50, 50, 50) for i in range(40)]
    cs += [dict(c, timestamp=c["timestamp"] + 40 * TF) for c in random_candles(100, 5, 0.0)]
    high, low, close = ([c[k] for c in cs] for k in ("high", "low", "close"))
    assert gap_filled_series(fill_gaps(cs, TF)) == macd_v_series(high, low, close)


def test_gap_free_first_signal_at_index_33() -> None:
    cs = random_candles(40, 6, gap_p=0.0)
    _, s, _ = gap_filled_series(fill_gaps(cs, TF))
    first = next(i for i, v in enumerate(s) if v is not None)
    assert first == first_signal_index() == 33


def test_gaps_change_the_value() -> None:
    cs = random_candles(200, 7, gap_p=0.4)
    high, low, close = ([c[k] for c in cs] for k in ("high", "low", "close"))
    assert compute_gap_filled(cs, TF).macd_v != compute(high, low, close).macd_v


# --- liquidity tiers --------------------------------------------------------------------


RATIO_TIERS = [
    (0.0, "high"),
    (0.19999999, "high"),
    (0.2, "medium"),
    (0.49999999, "medium"),
    (0.5, "low"),
    (1.0, "low"),
]
BAR_TIERS = [
    (100, 0, "high"),
    (81, 19, "high"),
    (80, 20, "medium"),
    (160, 40, "medium"),
    (101, 99, "medium"),
    (100, 100, "low"),
    (60, 60, "low"),
    (60, 140, "low"),
]


@pytest.mark.parametrize(("ratio", "tier"), RATIO_TIERS)
def test_liquidity_bounds(ratio: float, tier: str) -> None:
    assert liquidity(ratio) == tier


@pytest.mark.parametrize(("real", "synthetic", "tier"), BAR_TIERS)
def test_liquidity_from_filled_bars(real: int, synthetic: int, tier: str) -> None:
    # the empty buckets spread round-robin over the real-1 spaces between candles
    runs = [synthetic // (real - 1) + (k < synthetic % (real - 1)) for k in range(real - 1)]
    starts = [0]
    for run in runs:
        starts.append(starts[-1] + 1 + run)
    cs = [candle(b, 101 + i % 3, 99, 100 + i % 2) for i, b in enumerate(starts)]
    r = compute_gap_filled(cs, TF)
    assert (r.bars, r.synthetic, r.observed) == (real + synthetic, synthetic, real)
    assert r.gap_ratio == synthetic / (real + synthetic)
    assert r.liquidity == tier


# --- the 200-newest read rule -----------------------------------------------------------


def test_only_the_newest_200_are_read() -> None:
    cs = random_candles(300, 8, gap_p=0.3)
    r = compute_gap_filled(cs, TF)
    assert READ_CANDLES == 200 and r.candles == 200 and r.observed == 200
    assert r == compute_gap_filled(cs[-200:], TF)
    # an oldest member far away (a huge gap) changes nothing: it is not read
    far = [candle(-100_000, 5, 1, 3), *cs[-200:]]
    assert compute_gap_filled(far, TF) == r
    assert compute_gap_filled(cs, TF, read=300) != r


# --- input that is not a cache read -----------------------------------------------------


def test_unordered_or_misaligned_candles_rejected() -> None:
    a, b = candle(0, 2, 1, 1.5), candle(1, 2, 1, 1.5)
    with pytest.raises(ValueError, match="oldest first"):
        fill_gaps([b, a], TF)
    with pytest.raises(ValueError, match="oldest first"):
        fill_gaps([a, a], TF)
    with pytest.raises(ValueError, match="whole number"):
        fill_gaps([a, dict(b, timestamp=b["timestamp"] + 1)], TF)
    with pytest.raises(ValueError, match="timeframe_ms"):
        fill_gaps([a], 0)
    with pytest.raises(ValueError, match=r"candles\[0\].timestamp"):
        fill_gaps([dict(a, timestamp=1.5)], TF)
    with pytest.raises(ValueError, match=r"candles\[1\].ohlcv"):
        fill_gaps([a, dict(b, close=float("nan"))], TF)
    with pytest.raises(TypeError, match="unknown"):
        compute_gap_filled([a], TF, fats=3)


# --- an independent implementation with pandas ------------------------------------------


def _arr(xs: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in xs], dtype=float)


def _assert_matches_pandas(cs: list[dict], params: dict) -> None:
    want = pandas_platform_macd_v(cs, TF, **params)
    bars = fill_gaps(cs, TF)
    got = dict(zip("msh", gap_filled_series(bars, **params), strict=True))
    got["atr"] = observed_atr(bars, params.get("atr", 26))
    for k in ("m", "s", "h", "atr"):
        g, w = _arr(got[k]), want[k]
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=k)
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=k)
    r = compute_gap_filled(cs, TF, min_candles=1, read=len(cs), **params)
    assert (r.bars, r.synthetic) == (want["bars"], want["synthetic"])
    if r.macd_v is not None:
        assert r.macd_v == pytest.approx(want["m"][-1], rel=1e-9, abs=1e-9)
        assert r.stage == stage(r.macd_v, r.signal)


@pytest.mark.parametrize(
    ("seed", "gap_p", "max_run", "params"),
    [
        (11, 0.3, 3, {}),
        (12, 0.6, 8, {}),
        (13, 0.9, 20, {}),
        (14, 0.3, 5, {"fast": 8, "slow": 21, "atr": 14, "signal": 5}),
        (15, 0.5, 2, SMALL),
    ],
)
def test_matches_pandas_on_gappy_series(seed: int, gap_p: float, max_run: int, params) -> None:
    _assert_matches_pandas(random_candles(200, seed, gap_p, max_run), params)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 200),
    seed=st.integers(0, 2**32),
    gap_p=st.floats(0, 1),
    max_run=st.integers(1, 30),
    flat_start=st.integers(0, 40),
)
def test_matches_pandas_property(
    n: int, seed: int, gap_p: float, max_run: int, flat_start: int
) -> None:
    cs = random_candles(n, seed, gap_p, max_run)
    # a flat start (ATR 0, MACD-V undefined) shifted in front, sometimes with gaps of its own
    flat = [candle(2 * i if seed % 2 else i, 100, 100, 100) for i in range(flat_start)]
    shift = (flat[-1]["timestamp"] - cs[0]["timestamp"] + TF * (1 + seed % 3)) if flat else 0
    cs = flat + [dict(c, timestamp=c["timestamp"] + shift) for c in cs]
    _assert_matches_pandas(cs, {})
    _assert_matches_pandas(cs, SMALL)


def test_result_type() -> None:
    r = compute_gap_filled(random_candles(80, 9), TF)
    assert isinstance(r, GapFilledMacdV)
    assert r.histogram == pytest.approx(r.macd_v - r.signal)
