"""MACD-V math: hand-computed values, the stage table, and an independent pandas computation."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from helpers import pandas_macd_v, sma_seeded_ewm

from backfill.macdv import (
    MIN_CANDLES,
    MacdV,
    _ema_skipping_none,
    compute,
    ema,
    first_signal_index,
    macd_v_series,
    stage,
    true_range,
    wilder_atr,
)


def _bars(n: int, seed: int = 7) -> tuple[list[float], list[float], list[float]]:
    rng = random.Random(seed)
    high, low, close = [], [], []
    price = 100.0
    for _ in range(n):
        open_ = price
        price = max(1.0, price * (1 + rng.gauss(0, 0.02)))
        high.append(max(open_, price) * (1 + abs(rng.gauss(0, 0.005))))
        low.append(min(open_, price) * (1 - abs(rng.gauss(0, 0.005))))
        close.append(price)
    return high, low, close


# --- EMA, TR, ATR by hand ---------------------------------------------------------------


def test_ema_reference_example() -> None:
    assert ema([10, 11, 12, 13, 14, 15], 3) == [None, None, 11, 12, 13, 14]


def test_ema_hand_computed_nonlinear() -> None:
    # alpha = 0.5; seed mean(1, 2, 6) = 3; then 3 + .5*(0-3) = 1.5; 1.5 + .5*(10-1.5) = 5.75
    assert ema([1, 2, 6, 0, 10], 3) == [None, None, 3.0, 1.5, 5.75]


def test_ema_short_input_is_all_undefined() -> None:
    assert ema([1.0, 2.0], 3) == [None, None]
    assert ema([], 3) == []


def test_true_range_and_wilder_atr_by_hand() -> None:
    high = [10.0, 12.0, 11.0, 15.0]
    low = [8.0, 9.0, 7.0, 13.0]
    close = [9.0, 11.0, 8.0, 14.0]
    # TR0 = 2; TR1 = max(3, |12-9|, |9-9|) = 3; TR2 = max(4, 0, 4) = 4; TR3 = max(2, 7, 5) = 7
    assert true_range(high, low, close) == [2.0, 3.0, 4.0, 7.0]
    # ATR3: mean(2, 3, 4) = 3 at index 2; then (3*2 + 7) / 3 = 13/3
    atr = wilder_atr(high, low, close, 3)
    assert atr[:3] == [None, None, 3.0]
    assert atr[3] == pytest.approx(13 / 3, rel=1e-15)


# --- MACD-V series ----------------------------------------------------------------------


def test_first_signal_index_defaults() -> None:
    # MACD-V first defined at 25 (EMA26 and ATR26 seeds, TR_0 counted), signal 8 values later.
    assert first_signal_index() == 33
    assert MIN_CANDLES == 60
    assert first_signal_index() < MIN_CANDLES


@pytest.mark.parametrize(
    "params", [{}, {"fast": 5, "slow": 10, "atr": 14, "signal": 4}, {"fast": 30, "signal": 3}]
)
def test_signal_undefined_before_first_signal_index_and_defined_at_it(params: dict) -> None:
    high, low, close = _bars(80)
    m, s, h = macd_v_series(high, low, close, **params)
    first = first_signal_index(**params)
    assert all(v is None for v in s[:first])
    assert all(v is None for v in h[:first])
    assert s[first] is not None and h[first] is not None
    first_m = max(params.get("fast", 12), params.get("slow", 26), params.get("atr", 26)) - 1
    assert all(v is None for v in m[:first_m]) and m[first_m] is not None


def test_first_signal_needs_exactly_first_index_plus_one_bars() -> None:
    high, low, close = _bars(80)
    n = first_signal_index() + 1
    assert compute(high[:n], low[:n], close[:n]).signal is not None
    short = compute(high[: n - 1], low[: n - 1], close[: n - 1])
    assert short.macd_v is not None and short.signal is None and short.stage == "unknown"


def test_zero_atr_makes_macd_v_undefined_and_delays_signal() -> None:
    flat = 30
    h2, l2, c2 = _bars(60)
    high = [100.0] * flat + h2
    low = [100.0] * flat + l2
    close = [100.0] * flat + c2
    m, s, _ = macd_v_series(high, low, close)
    atr = wilder_atr(high, low, close, 26)
    zero = [i for i, a in enumerate(atr) if a == 0]
    assert zero and zero[0] == 25
    assert all(m[i] is None for i in zero)
    first_m = next(i for i, v in enumerate(m) if v is not None)
    assert first_m == zero[-1] + 1
    first_s = next(i for i, v in enumerate(s) if v is not None)
    assert first_s == first_m + 8
    assert s[first_s] == pytest.approx(sum(m[first_m : first_m + 9]) / 9, rel=1e-12)


def test_signal_skips_gaps_in_macd_v() -> None:
    # n=3: the seed is the mean of the first three defined values, (2 + 4 + 7) / 3.
    assert _ema_skipping_none([None, 2.0, None, 4.0, None, 7.0], 3) == [None] * 5 + [13 / 3]
    # n=2, alpha = 2/3: seed mean(2, 4) = 3 across the gap; gap bars stay undefined, state carries.
    assert _ema_skipping_none([None, 2.0, None, 4.0, None, 7.0], 2) == [
        None,
        None,
        None,
        3.0,
        None,
        3.0 + (2 / 3) * (7.0 - 3.0),
    ]


def test_compute_returns_last_bar() -> None:
    high, low, close = _bars(100)
    m, s, h = macd_v_series(high, low, close)
    r = compute(high, low, close)
    assert isinstance(r, MacdV)
    assert (r.macd_v, r.signal, r.histogram) == (m[-1], s[-1], h[-1])
    assert r.stage == stage(m[-1], s[-1])
    assert r.histogram == pytest.approx(r.macd_v - r.signal)


def test_compute_passes_params() -> None:
    high, low, close = _bars(100)
    assert compute(high, low, close, scale=1.0).macd_v == pytest.approx(
        compute(high, low, close).macd_v / 100, rel=1e-12
    )


# --- validation -------------------------------------------------------------------------


def test_unequal_lengths_rejected_naming_lengths() -> None:
    with pytest.raises(ValueError, match=r"len\(low\)=2"):
        macd_v_series([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="equal lengths"):
        true_range([1.0], [1.0], [])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "1"])
def test_non_finite_values_rejected_naming_index(bad: object) -> None:
    with pytest.raises(ValueError, match=r"close\[1\]"):
        compute([1.0, 2.0], [1.0, 2.0], [1.0, bad])  # type: ignore[list-item]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_bad_periods_rejected_naming_parameter(bad: object) -> None:
    with pytest.raises(ValueError, match="signal"):
        macd_v_series([1.0], [1.0], [1.0], signal=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must"):
        ema([1.0], bad)  # type: ignore[arg-type]


def test_bad_scale_and_empty_compute_rejected() -> None:
    with pytest.raises(ValueError, match="scale"):
        macd_v_series([1.0], [1.0], [1.0], scale=float("nan"))
    with pytest.raises(ValueError, match="empty"):
        compute([], [], [])


# --- stages -----------------------------------------------------------------------------

REFERENCE_PAIRS = [
    ((-160, -140), "oversold"),
    ((160, 140), "overbought"),
    ((100, 80), "rallying"),
    ((30, 20), "rebounding"),
    ((-100, -120), "rebounding"),
    ((-100, -80), "reversing"),
    ((100, 120), "retracing"),
    ((0, 20), "retracing"),
    ((0, 0), "ranging"),
]

BOUNDARY_PAIRS = [
    ((None, 0), "unknown"),
    ((0, None), "unknown"),
    ((None, None), "unknown"),
    ((-160, -170), "oversold"),  # oversold ignores the signal
    ((160, 170), "retracing"),  # above 150 but below signal: falls to retracing
    ((150, 140), "unknown"),  # on the 150 bound: not overbought, not rallying
    ((150, 160), "retracing"),
    ((50, 40), "unknown"),  # on the 50 bound: neither rallying nor rebounding
    ((50, 60), "retracing"),
    ((50, 50), "unknown"),
    ((-50, -60), "rebounding"),
    ((-50, -40), "unknown"),  # on -50: not reversing (m < -50), not retracing (m > -50)
    ((-150, -160), "unknown"),  # on -150: not oversold, not rebounding
    ((-150, -140), "unknown"),
    ((-100, -100), "unknown"),  # m == s outside the ranging band
    ((100, 100), "unknown"),
    ((-49.9, -49.9), "ranging"),
    ((49.9, 49.9), "ranging"),
    ((-150.0001, 0), "oversold"),
]


@pytest.mark.parametrize(("pair", "expected"), REFERENCE_PAIRS + BOUNDARY_PAIRS)
def test_stage(pair: tuple[float | None, float | None], expected: str) -> None:
    assert stage(*pair) == expected


# --- independent computation with pandas ------------------------------------------------


def _as_array(xs: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in xs], dtype=float)


@pytest.mark.parametrize(
    ("seed", "params"),
    [(1, {}), (2, {}), (3, {"fast": 8, "slow": 21, "atr": 14, "signal": 5})],
)
def test_matches_pandas(seed: int, params: dict) -> None:
    high, low, close = _bars(400, seed)
    ours = macd_v_series(high, low, close, **params)
    theirs = pandas_macd_v(high, low, close, **params)
    for got, want in zip(ours, theirs, strict=True):
        got_a = _as_array(got)
        np.testing.assert_array_equal(np.isnan(got_a), np.isnan(want))
        mask = ~np.isnan(want)
        assert mask.sum() > 300
        np.testing.assert_allclose(got_a[mask], want[mask], rtol=1e-9, atol=1e-12)

    # building blocks against pandas too
    n = params.get("atr", 26)
    tr = pd.concat(
        [
            pd.Series(high) - pd.Series(low),
            (pd.Series(high) - pd.Series(close).shift(1)).abs(),
            (pd.Series(low) - pd.Series(close).shift(1)).abs(),
        ],
        axis=1,
    ).max(axis=1)
    np.testing.assert_allclose(true_range(high, low, close), tr.to_numpy(), rtol=1e-12)
    want_atr = sma_seeded_ewm(tr, n, 1 / n).to_numpy()
    got_atr = _as_array(wilder_atr(high, low, close, n))
    np.testing.assert_allclose(got_atr, want_atr, rtol=1e-9, equal_nan=True)
    want_ema = sma_seeded_ewm(pd.Series(close), 12, 2 / 13).to_numpy()
    np.testing.assert_allclose(_as_array(ema(close, 12)), want_ema, rtol=1e-9, equal_nan=True)


def test_matches_pandas_with_flat_start() -> None:
    h2, l2, c2 = _bars(300, 5)
    high, low, close = [50.0] * 40 + h2, [50.0] * 40 + l2, [50.0] * 40 + c2
    ours = macd_v_series(high, low, close)
    theirs = pandas_macd_v(high, low, close)
    for got, want in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(_as_array(got), want, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert not math.isnan(theirs[1][-1])
