"""Checks shared by the integration tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from backfill.series import Series


def cached(rclient: redis.Redis, series: Series) -> list[dict]:
    return [json.loads(m) for m in rclient.zrange(series.cache_key(), 0, -1)]


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


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `backfill ...` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "backfill", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
