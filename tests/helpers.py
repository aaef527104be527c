"""Checks shared by the integration tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import redis

from core.series import Series


def cached(rclient: redis.Redis, series: Series, exchange_id: int = 1) -> list[dict]:
    return [json.loads(m) for m in rclient.zrange(series.cache_key(1, exchange_id), 0, -1)]


def assert_matches_truth(
    rclient: redis.Redis, sim, series: Series, n: int, not_before: float
) -> None:
    """The series holds exactly the exchange's newest n closed candles (as of the run)."""
    tf = series.timeframe
    members = rclient.zrange(series.cache_key(), -n, -1, withscores=True)
    got = [json.loads(m) for m, _ in members]
    assert got, f"{series}: nothing cached"
    assert all(int(s) == m["timestamp"] for m, (_, s) in zip(got, members, strict=True))
    newest = got[-1]["timestamp"] // 1000
    lookback = max(n * 10, 1000) * tf.seconds
    truth = sim.truth(series.symbol, tf.granularity, newest - lookback, newest)
    truth = sorted(truth, key=lambda c: int(c["start"]))[-n:]
    want = [
        {
            "timestamp": int(c["start"]) * 1000,
            "open": float(c["open"]),
            "high": float(c["high"]),
            "low": float(c["low"]),
            "close": float(c["close"]),
            "volume": float(c["volume"]),
            "symbol": series.symbol,
            "timeframe": tf.name,
        }
        for c in truth
    ]
    assert got == want, f"{series}: cached candles differ from the exchange's truth"
    # the newest cached bucket had closed, and nothing that closed before the run is missing
    assert newest + tf.seconds <= time.time()
    last_closed_at_start = tf.last_closed_start(not_before)
    newer = sim.truth(series.symbol, tf.granularity, newest + tf.seconds, last_closed_at_start)
    assert not newer, f"{series}: closed candles {newer[:2]} missing after {newest}"


def wait_until(cond: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    """Poll a condition with a deadline (never a bare sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def clear_of_close(period_s: int, margin_s: float) -> None:
    """Wait (with a deadline) until the next bucket close of `period_s` is at least
    `margin_s` away: a run that spans a close tops up its stale series before the gate,
    which a test of the first pass's order or request count must not see."""
    wait_until(
        lambda: period_s - time.time() % period_s > margin_s,
        timeout=margin_s + 5,
        what=f"{margin_s}s clear of the next {period_s}s bucket close",
        every=0.2,
    )


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `backfill ...` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "backfill", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def sma_seeded_ewm(x: pd.Series, n: int, alpha: float) -> pd.Series:
    """ewm(adjust=False) started from the SMA of the first n non-NaN values."""
    valid = x.dropna()
    out = pd.Series(np.nan, index=x.index)
    if len(valid) < n:
        return out
    seeded = valid.copy()
    seeded.iloc[: n - 1] = np.nan
    seeded.iloc[n - 1] = valid.iloc[:n].mean()
    out.loc[valid.index] = seeded.ewm(alpha=alpha, adjust=False).mean()
    return out


# An independent MACD-V (pandas), the oracle for backfill.macdv and `backfill indicators`.


def pandas_macd_v(
    high: list[float], low: list[float], close: list[float], fast=12, slow=26, atr=26, signal=9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, lo, c = pd.Series(high), pd.Series(low), pd.Series(close)
    pc = c.shift(1)
    tr = pd.concat([h - lo, (h - pc).abs(), (lo - pc).abs()], axis=1).max(axis=1)
    ema_f = sma_seeded_ewm(c, fast, 2 / (fast + 1))
    ema_s = sma_seeded_ewm(c, slow, 2 / (slow + 1))
    rma = sma_seeded_ewm(tr, atr, 1 / atr)
    m = (ema_f - ema_s) / rma.where(rma != 0) * 100
    s = sma_seeded_ewm(m, signal, 2 / (signal + 1))
    return m.to_numpy(), s.to_numpy(), (m - s).to_numpy()


def pandas_platform_macd_v(
    cs: list[dict], tf: int, fast=12, slow=26, atr=26, signal=9, scale=100.0
) -> dict:
    """What the platform's indicator service computes (gaps filled with synthetic bars,
    ATR over observed bars only), written independently with pandas: the oracle for
    `backfill.macdv.compute_gap_filled` and `backfill indicators`."""
    df = pd.DataFrame(cs).set_index("timestamp")[["high", "low", "close"]].astype(float)
    full = pd.RangeIndex(df.index[0], df.index[-1] + tf, tf)
    filled = df.reindex(full)
    synthetic = filled["close"].isna()
    close = filled["close"].ffill()
    high = filled["high"].fillna(close)
    low = filled["low"].fillna(close)
    pc = close.shift(1)
    tr = pd.concat([high - low, (high - pc).abs(), (low - pc).abs()], axis=1).max(axis=1)
    tr_obs = tr[~synthetic]
    atr_obs = sma_seeded_ewm(tr_obs, atr, 1 / atr)
    atr_full = atr_obs.reindex(full).ffill()
    ema_f = sma_seeded_ewm(close, fast, 2 / (fast + 1))
    ema_s = sma_seeded_ewm(close, slow, 2 / (slow + 1))
    m = (ema_f - ema_s) / atr_full.where(atr_full != 0) * scale
    s = pd.Series(np.nan, index=full)
    valid = m.first_valid_index()
    if valid is not None:
        tail = m.loc[valid:].fillna(0.0)
        s.loc[valid:] = sma_seeded_ewm(tail, signal, 2 / (signal + 1)).to_numpy()
    return {
        "m": m.to_numpy(),
        "s": s.to_numpy(),
        "h": (m - s).to_numpy(),
        "atr": atr_full.to_numpy(),
        "synthetic": int(synthetic.sum()),
        "bars": len(full),
    }


def task_lines(tmp_path, task_id: str, what: str) -> list[str]:
    """The worker log lines (tmp_path/worker*.log) of one task saying `what`."""
    return [
        line
        for log in tmp_path.glob("worker*.log")
        for line in log.read_text().splitlines()
        if f"[{task_id}] {what}" in line
    ]
