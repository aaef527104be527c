"""Sliding one-second rate limiting per key / IP, and the request statistics behind /_sim/stats."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

WINDOW_S = 1.0


@dataclass(frozen=True)
class Decision:
    """Outcome of a rate-limit check, with the values for the x-ratelimit-* headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # seconds until the oldest admitted request leaves the window


class RateLimiter:
    """Admits at most `rate` requests per identity in any sliding window of one second.

    Only admitted requests occupy the window, so a client that keeps
    retrying too fast is refused but not locked out forever.
    """

    def __init__(self) -> None:
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, identity: str, rate: int, enforce: bool, now: float | None = None) -> Decision:
        """Admit or refuse one request from `identity` (always admitted if not enforcing)."""
        with self._lock:  # read the clock under the lock so windows stay sorted
            now = time.monotonic() if now is None else now
            window = self._windows.setdefault(identity, deque())
            while window and window[0] <= now - WINDOW_S:
                window.popleft()
            allowed = not enforce or len(window) < rate
            if allowed:
                window.append(now)
            remaining = max(0, rate - len(window))
            reset = window[0] + WINDOW_S - now if window else WINDOW_S
            return Decision(allowed, rate, remaining, max(0.0, reset))

    def reset(self) -> None:
        """Forget all windows."""
        with self._lock:
            self._windows.clear()


class Stats:
    """Counts every candle request received, answered or refused.

    `max_requests_in_any_second` is the largest number of arrivals of one
    identity within any half-open window [t, t + 1s).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero everything."""
        with self._lock:
            self._total = 0
            self._statuses: Counter[str] = Counter()
            self._endpoints: Counter[str] = Counter()
            self._series: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._arrivals: dict[str, deque[float]] = {}
            self._peak: dict[str, int] = {}
            self._candles_served = 0

    def arrival(self, endpoint: str, series: str | None) -> None:
        """Record that a candle request arrived."""
        with self._lock:
            self._total += 1
            self._endpoints[endpoint] += 1
            if series:
                self._series[series] += 1

    def identity(self, identity: str, now: float | None = None) -> None:
        """Record one arrival for the per-second peak of `identity` ("key:..." or "ip:...")."""
        with self._lock:
            now = time.monotonic() if now is None else now
            window = self._arrivals.setdefault(identity, deque())
            while window and window[0] <= now - WINDOW_S:
                window.popleft()
            window.append(now)
            if len(window) > self._peak.get(identity, 0):
                self._peak[identity] = len(window)

    def response(self, status: str, candles: int = 0, fault: str | None = None) -> None:
        """Record how a candle request was answered ("timeout" when dropped)."""
        with self._lock:
            self._statuses[status] += 1
            self._candles_served += candles
            if fault:
                self._faults[fault] += 1

    def snapshot(self) -> dict[str, object]:
        """JSON-friendly copy of all counters."""
        with self._lock:
            return {
                "requests_total": self._total,
                "responses_by_status": dict(self._statuses),
                "max_requests_in_any_second": dict(self._peak),
                "requests_by_endpoint": dict(self._endpoints),
                "requests_by_series": dict(self._series),
                "faults_injected": dict(self._faults),
                "candles_served": self._candles_served,
            }
