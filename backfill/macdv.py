"""MACD-V (Spiroglou's volatility-normalised MACD), as specified in shared/reference/macd-v.md.

Pure standard-library math so the backfill can score a series without numpy. Every series
function returns one value per input bar, with ``None`` where the value is undefined, so
indices line up with the candles they came from.

Gaps in MACD-V: MACD-V is undefined wherever ATR is 0 (e.g. a run of flat candles) or not yet
warmed up. The signal line is an EMA over the *defined* MACD-V values only: it is seeded with
the mean of the first ``signal`` defined values, an undefined bar is skipped (the EMA state is
carried over it, not reset) and the signal and histogram are ``None`` at that bar. In practice
ATR only reaches 0 before the first price move, so the gap is a later start, not a hole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_CANDLES = 60
"""Closed candles needed before a MACD-V value is trusted (warmed up), per the reference."""

_STAGE_UNKNOWN = "unknown"


def _check_period(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return n


def _check_values(name: str, values: Sequence[float]) -> None:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name}[{i}] must be a finite number, got {v!r}")


def _check_ohlc(high: Sequence[float], low: Sequence[float], close: Sequence[float]) -> None:
    if not len(high) == len(low) == len(close):
        raise ValueError(
            f"high, low and close must have equal lengths, got "
            f"len(high)={len(high)}, len(low)={len(low)}, len(close)={len(close)}"
        )
    _check_values("high", high)
    _check_values("low", low)
    _check_values("close", close)


def ema(values: Sequence[float], n: int) -> list[float | None]:
    """EMA seeded with the SMA of the first n values, so it does not depend on history before them.

    ``None`` before index n-1; alpha = 2/(n+1).
    """
    _check_period("n", n)
    _check_values("values", values)
    return _ema_skipping_none(values, n)


def _ema_skipping_none(values: Sequence[float | None], n: int) -> list[float | None]:
    """EMA over the defined values only; ``None`` in, ``None`` out, state carried across gaps."""
    alpha = 2.0 / (n + 1)
    out: list[float | None] = [None] * len(values)
    seed: list[float] = []
    prev: float | None = None
    for i, v in enumerate(values):
        if v is None:
            continue
        if prev is None:
            seed.append(v)
            if len(seed) == n:
                prev = math.fsum(seed) / n
                out[i] = prev
        else:
            prev = prev + alpha * (v - prev)
            out[i] = prev
    return out


def true_range(high: Sequence[float], low: Sequence[float], close: Sequence[float]) -> list[float]:
    """Range including gaps from the previous close; the first bar has no previous close: H-L."""
    _check_ohlc(high, low, close)
    out: list[float] = []
    for i, (h, lo) in enumerate(zip(high, low, strict=True)):
        if i == 0:
            out.append(h - lo)
        else:
            pc = close[i - 1]
            out.append(max(h - lo, abs(h - pc), abs(lo - pc)))
    return out


def wilder_atr(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], n: int
) -> list[float | None]:
    """Wilder's RMA of true range (alpha = 1/n), seeded with the mean of the first n TRs."""
    _check_period("n", n)
    tr = true_range(high, low, close)
    out: list[float | None] = [None] * len(tr)
    if len(tr) < n:
        return out
    prev = math.fsum(tr[:n]) / n
    out[n - 1] = prev
    for i in range(n, len(tr)):
        prev = (prev * (n - 1) + tr[i]) / n
        out[i] = prev
    return out


def macd_v_series(
    high: Sequence[float],
    low: Sequence[float],
    close: Sequence[float],
    fast: int = 12,
    slow: int = 26,
    atr: int = 26,
    signal: int = 9,
    scale: float = 100.0,
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """MACD-V, signal and histogram per bar: MACD in units of ATR, comparable across symbols.

    MACD-V is ``None`` where ATR is 0 or undefined; see the module docstring for the signal
    line across such bars.
    """
    _check_period("fast", fast)
    _check_period("slow", slow)
    _check_period("atr", atr)
    _check_period("signal", signal)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    _check_ohlc(high, low, close)

    ema_fast = _ema_skipping_none(close, fast)
    ema_slow = _ema_skipping_none(close, slow)
    atr_v = wilder_atr(high, low, close, atr)
    macd_v: list[float | None] = []
    for f, s, a in zip(ema_fast, ema_slow, atr_v, strict=True):
        if f is None or s is None or a is None or a == 0:
            macd_v.append(None)
        else:
            macd_v.append((f - s) / a * scale)
    sig = _ema_skipping_none(macd_v, signal)
    hist = [None if m is None or g is None else m - g for m, g in zip(macd_v, sig, strict=True)]
    return macd_v, sig, hist


def stage(m: float | None, s: float | None) -> str:
    """Name the momentum stage; rows are checked in the reference's order, bounds are strict."""
    if m is None or s is None:
        return _STAGE_UNKNOWN
    if m < -150:
        return "oversold"
    if m > 150 and m > s:
        return "overbought"
    if 50 < m < 150 and m > s:
        return "rallying"
    if -150 < m < 50 and m > s:
        return "rebounding"
    if -150 < m < -50 and m < s:
        return "reversing"
    if m > -50 and m < s:
        return "retracing"
    if -50 < m < 50:
        return "ranging"
    return _STAGE_UNKNOWN


@dataclass(frozen=True)
class MacdV:
    """MACD-V state of the last bar; ``None`` fields mean not enough (or flat) history."""

    macd_v: float | None
    signal: float | None
    histogram: float | None
    stage: str


def compute(
    high: Sequence[float],
    low: Sequence[float],
    close: Sequence[float],
    **params: Any,
) -> MacdV:
    """MACD-V of the last bar, which is what the cache serves; params go to macd_v_series."""
    m, s, h = macd_v_series(high, low, close, **params)
    if not m:
        raise ValueError("high, low and close are empty: no last bar to compute")
    return MacdV(macd_v=m[-1], signal=s[-1], histogram=h[-1], stage=stage(m[-1], s[-1]))


def first_signal_index(fast: int = 12, slow: int = 26, atr: int = 26, signal: int = 9) -> int:
    """Index of the first bar with a signal value, assuming ATR is never 0.

    MACD-V starts at index max(fast, slow, atr) - 1 (TR_0 = H_0 - L_0 counts toward the ATR
    seed) and the signal needs ``signal`` MACD-V values, so defaults give 25 + 8 = 33, i.e.
    34 bars.
    """
    for name, n in (("fast", fast), ("slow", slow), ("atr", atr), ("signal", signal)):
        _check_period(name, n)
    return max(fast, slow, atr) - 1 + signal - 1
