"""MACD-V (Spiroglou's volatility-normalised MACD), as specified in shared/reference/macd-v.md.

Pure standard-library math so the backfill can score a series without numpy. Every series
function returns one value per input bar, with ``None`` where the value is undefined, so
indices line up with the candles they came from.

Gaps in MACD-V: MACD-V is undefined wherever ATR is 0 (e.g. a run of flat candles) or not yet
warmed up. The signal line is an EMA over the *defined* MACD-V values only: it is seeded with
the mean of the first ``signal`` defined values, an undefined bar is skipped (the EMA state is
carried over it, not reset) and the signal and histogram are ``None`` at that bar. In practice
ATR only reaches 0 before the first price move, so the gap is a later start, not a hole.

Missing candles are a different matter: Coinbase omits a bucket in which nothing traded, and
the platform's indicator service does not feed the cached candles to the formulas as if they
were consecutive. ``compute_gap_filled`` does what it does (shared/reference/macd-v.md,
"gaps"): synthetic bars fill the missing buckets, the EMAs see them, the ATR does not, and the
signal counts a later undefined MACD-V as 0. On a series without gaps it equals
``macd_v_series`` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FAST, SLOW, ATR, SIGNAL, SCALE = 12, 26, 26, 9, 100.0
"""The platform's MACD_V_DEFAULTS (fastPeriod, slowPeriod, atrPeriod, signalPeriod, scale)."""

MIN_CANDLES = 60
"""Closed candles needed before a MACD-V value is trusted (warmed up), per the reference."""

READ_CANDLES = 200
"""Members the platform reads per series: the newest 200 (`ZRANGE key -200 -1`)."""

LOW_ACTIVITY = "Low trading activity"
"""The platform's reason when the ATR never seeds (fewer than ``atr`` observed true ranges)."""

NO_MOVEMENT = "No price movement"
"""Our reason when the ATR is seeded but 0 at the last bar, so MACD-V is undefined there."""

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


# --- the platform's computation: gaps filled with synthetic bars ----------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of the gap-filled series; a synthetic bar stands in for a bucket with no trades."""

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    synthetic: bool = False


@dataclass(frozen=True)
class GapFilledMacdV:
    """MACD-V of the last bar as the platform computes it, with the gap statistics behind it.

    ``skipped``: fewer than the minimum candles, nothing computed (the platform publishes
    nothing). ``seeded``: the ATR saw enough observed true ranges; if not, ``reason`` is
    ``LOW_ACTIVITY``. ``gap_ratio``/``liquidity`` are ``None`` only when there are no candles.

    The rest is what the platform also stores with the value (cache-contract.md, "Indicator
    value"): the last bar's EMAs and ATR (``None`` where undefined), the share of filled bars
    with high == low, and ``span_bars``, the bars from the first to the last observed (real)
    bar; its ``nEff`` is ``observed``, the observed true ranges.
    """

    macd_v: float | None
    signal: float | None
    histogram: float | None
    stage: str
    seeded: bool
    reason: str | None
    gap_ratio: float | None
    liquidity: str | None
    bars: int
    synthetic: int
    observed: int
    candles: int
    skipped: bool
    fast_ema: float | None = None
    slow_ema: float | None = None
    atr: float | None = None
    zero_range_ratio: float | None = None
    span_bars: int = 0


def _check_timeframe_ms(timeframe_ms: object) -> int:
    if isinstance(timeframe_ms, bool) or not isinstance(timeframe_ms, int) or timeframe_ms < 1:
        raise ValueError(f"timeframe_ms must be a positive integer, got {timeframe_ms!r}")
    return timeframe_ms


def fill_gaps(candles: Sequence[Mapping[str, Any]], timeframe_ms: int) -> list[Bar]:
    """The candles with every missing bucket between two of them filled by a synthetic bar.

    A synthetic bar is flat at the previous candle's close with volume 0; nothing is added
    before the first candle or after the last. Candles must be oldest first, strictly
    increasing and a whole number of buckets apart: anything else is a broken read, not a gap.
    """
    tf = _check_timeframe_ms(timeframe_ms)
    out: list[Bar] = []
    prev_ts: int | None = None
    prev_close = 0.0
    for i, c in enumerate(candles):
        ts = c["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise ValueError(f"candles[{i}].timestamp must be an integer, got {ts!r}")
        values = [c[k] for k in ("open", "high", "low", "close", "volume")]
        _check_values(f"candles[{i}].ohlcv", values)
        if prev_ts is not None:
            step = ts - prev_ts
            if step <= 0 or step % tf:
                raise ValueError(
                    f"candles[{i}].timestamp {ts} is not a whole number of {tf} ms buckets after "
                    f"{prev_ts}: candles must be oldest first, one per bucket"
                )
            p = prev_close
            out.extend(Bar(t, p, p, p, p, 0.0, True) for t in range(prev_ts + tf, ts, tf))
        out.append(Bar(ts, *values, synthetic=False))
        prev_ts, prev_close = ts, values[3]
    return out


def observed_atr(bars: Sequence[Bar], n: int = 26) -> list[float | None]:
    """Wilder's ATR over the real bars' true ranges only; a synthetic bar carries it unchanged.

    A synthetic bar has no true range (missing, not 0: a quiet bucket must not shrink the
    volatility MACD-V is divided by). A real bar's TR uses the previous bar's close, which for a
    synthetic bar is the last real close. Seeded with the mean of the first n observed TRs at
    the bar of the n-th; ``None`` before.
    """
    _check_period("n", n)
    out: list[float | None] = [None] * len(bars)
    seed: list[float] = []
    prev: float | None = None
    prev_close: float | None = None
    for i, b in enumerate(bars):
        if not b.synthetic:
            h, lo = b.high, b.low
            if prev_close is None:
                tr = h - lo
            else:
                tr = max(h - lo, abs(h - prev_close), abs(lo - prev_close))
            if prev is None:
                seed.append(tr)
                if len(seed) == n:
                    prev = math.fsum(seed) / n
            else:
                prev = (prev * (n - 1) + tr) / n
        out[i] = prev
        prev_close = b.close
    return out


def gap_filled_series(
    bars: Sequence[Bar],
    fast: int = 12,
    slow: int = 26,
    atr: int = 26,
    signal: int = 9,
    scale: float = 100.0,
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """MACD-V, signal and histogram per filled bar, as the platform's indicator service has them.

    EMAs run over every close (synthetic included), the ATR over observed TRs only. The signal
    starts at the first defined MACD-V and counts a later undefined one as 0 (unlike
    ``macd_v_series``, which skips it); the histogram is defined where both are.
    """
    m, s, h, *_ = _gap_filled(bars, fast, slow, atr, signal, scale)
    return m, s, h


_Line = list[float | None]


def _gap_filled(
    bars: Sequence[Bar], fast: int, slow: int, atr: int, signal: int, scale: float
) -> tuple[_Line, _Line, _Line, _Line, _Line, _Line]:
    """MACD-V, signal, histogram, ATR, fast EMA and slow EMA per filled bar."""
    _check_period("fast", fast)
    _check_period("slow", slow)
    _check_period("signal", signal)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    close = [b.close for b in bars]
    ema_fast = _ema_skipping_none(close, fast)
    ema_slow = _ema_skipping_none(close, slow)
    atr_v = observed_atr(bars, atr)
    macd_v: list[float | None] = [
        None if f is None or s is None or a is None or a == 0 else (f - s) / a * scale
        for f, s, a in zip(ema_fast, ema_slow, atr_v, strict=True)
    ]
    sig = platform_signal(macd_v, signal)
    hist = [None if m is None or g is None else m - g for m, g in zip(macd_v, sig, strict=True)]
    return macd_v, sig, hist, atr_v, ema_fast, ema_slow


def platform_signal(macd_v: Sequence[float | None], n: int = 9) -> list[float | None]:
    """The platform's signal: EMA(n) from the first defined MACD-V on, a later gap counting as 0.

    Seeded with the mean of its first n inputs; ``None`` before. ``macd_v_series`` skips such a
    gap instead; the two agree wherever MACD-V has no hole after its start.
    """
    _check_period("n", n)
    first = next((i for i, m in enumerate(macd_v) if m is not None), len(macd_v))
    inputs: list[float | None] = [None] * first
    inputs += [0.0 if m is None else m for m in macd_v[first:]]
    return _ema_skipping_none(inputs, n)


def liquidity(gap_ratio: float) -> str:
    """The platform's liquidity tier for a share of synthetic bars: high < 0.2 <= medium < 0.5."""
    if gap_ratio < 0.2:
        return "high"
    if gap_ratio < 0.5:
        return "medium"
    return "low"


def compute_gap_filled(
    candles: Sequence[Mapping[str, Any]],
    timeframe_ms: int,
    *,
    read: int = READ_CANDLES,
    min_candles: int = MIN_CANDLES,
    **params: Any,
) -> GapFilledMacdV:
    """MACD-V of the last bar exactly as the platform computes it from the cached members.

    ``candles`` are cache members (dicts with the member keys), oldest first; only the newest
    ``read`` are used, as the service reads no more. Fewer than ``min_candles`` of them:
    skipped. ``params`` (fast, slow, atr, signal, scale) go to ``gap_filled_series``.
    """
    _check_period("read", read)
    _check_period("min_candles", min_candles)
    unknown = set(params) - {"fast", "slow", "atr", "signal", "scale"}
    if unknown:
        raise TypeError(f"unknown MACD-V parameters: {sorted(unknown)}")
    used = candles[-read:]
    bars = fill_gaps(used, timeframe_ms)
    synthetic = sum(b.synthetic for b in bars)
    observed = len(bars) - synthetic
    ratio = synthetic / len(bars) if bars else None
    real = [i for i, b in enumerate(bars) if not b.synthetic]
    common = {
        "gap_ratio": ratio,
        "liquidity": None if ratio is None else liquidity(ratio),
        "bars": len(bars),
        "synthetic": synthetic,
        "observed": observed,
        "candles": len(used),
        "zero_range_ratio": (sum(b.high == b.low for b in bars) / len(bars) if bars else None),
        "span_bars": real[-1] - real[0] + 1 if real else 0,
    }
    if len(used) < min_candles:
        return GapFilledMacdV(
            None,
            None,
            None,
            _STAGE_UNKNOWN,
            seeded=False,
            reason=f"Fewer than {min_candles} candles",
            skipped=True,
            **common,
        )
    p = {"fast": FAST, "slow": SLOW, "atr": ATR, "signal": SIGNAL, "scale": SCALE, **params}
    m, s, h, atr_v, ema_f, ema_s = _gap_filled(
        bars, p["fast"], p["slow"], p["atr"], p["signal"], p["scale"]
    )
    seeded = atr_v[-1] is not None
    if m[-1] is not None:
        reason = None
    elif not seeded:
        reason = LOW_ACTIVITY
    elif atr_v[-1] == 0:
        reason = NO_MOVEMENT
    else:
        reason = f"Fewer than {max(p['fast'], p['slow'])} bars for the EMAs"
    return GapFilledMacdV(
        m[-1],
        s[-1],
        h[-1],
        stage(m[-1], s[-1]),
        seeded=seeded,
        reason=reason,
        skipped=False,
        fast_ema=ema_f[-1],
        slow_ema=ema_s[-1],
        atr=atr_v[-1],
        **common,
    )
