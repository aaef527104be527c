"""RateLimiter and Stats for several serving processes: one lock-protected window per identity.

Same decisions and snapshot as coinbase_sim.limits (which one process uses),
but the sliding windows and counters sit in a SlotTable shared across fork,
so the 30/s key limit is exact however requests are spread over processes.
time.monotonic() is CLOCK_MONOTONIC, one clock for every process.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from coinbase_sim.limits import WINDOW_S, Decision
from coinbase_sim.slots import SlotTable

WINDOW_CAPACITY = 16384  # timestamps kept per identity: rates up to this are exact
IDENTITIES = 1024
COUNTERS = 1 << 17  # series names and the fixed counters share one table


class _Window(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_int64),  # timestamps appended so far
        ("tail", ctypes.c_int64),  # index of the oldest one still in the window
        ("peak", ctypes.c_int64),
        ("times", ctypes.c_double * WINDOW_CAPACITY),
    ]


class _Count(ctypes.Structure):
    _fields_ = [("value", ctypes.c_int64)]


class SharedCounters:
    """Named counters in shared memory, the `kind:name` ones grouped by kind in a snapshot
    (both personalities' stats: requests by status, endpoint, series, fault)."""

    GROUPS = ("status", "endpoint", "series", "fault")

    def __init__(self, capacity: int) -> None:
        self._table = SlotTable(capacity, _Count)

    def clear(self) -> None:
        with self._table.lock:
            self._table.clear()

    def add(self, names: list[tuple[str, int]]) -> None:
        with self._table.lock:
            for name, amount in names:
                count = self._table.get(name)
                if count is not None:  # a full table drops new names, never old ones
                    count.value += amount

    def arrival(self, endpoint: str, series: str | None) -> None:
        """One request arrived at `endpoint` (for `series`, if it names one)."""
        names = [("total", 1), ("endpoint:" + endpoint, 1)]
        if series:
            names.append(("series:" + series, 1))
        self.add(names)

    def response(self, status: str, served: tuple[str, int], fault: str | None) -> None:
        """How a request was answered ("timeout" when dropped), and what it served."""
        names = [("status:" + status, 1), served]
        if fault:
            names.append(("fault:" + fault, 1))
        self.add(names)

    def snapshot(self) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """(`kind` -> {name: count} for GROUPS, every other counter by name)."""
        groups: dict[str, dict[str, int]] = {k: {} for k in self.GROUPS}
        plain: dict[str, int] = {}
        with self._table.lock:
            for name, count in self._table.items():
                kind, _, rest = name.partition(":")
                if rest and kind in groups:
                    groups[kind][rest] = count.value
                else:
                    plain[name] = count.value
        return groups, plain


class SharedWindows:
    """Per-identity sliding one-second windows of timestamps (a ring each)."""

    def __init__(self, identities: int = IDENTITIES) -> None:
        self.table = SlotTable(identities, _Window)

    def _window(self, identity: str, now: float) -> Any:
        window = self.table.get(identity)
        if window is None:
            raise RuntimeError(f"more than {self.table.capacity} identities")
        times = window.times
        while window.head > window.tail and times[window.tail % WINDOW_CAPACITY] <= now - WINDOW_S:
            window.tail += 1
        return window

    @staticmethod
    def _append(window: Any, now: float) -> None:
        if window.head - window.tail >= WINDOW_CAPACITY:
            window.tail += 1  # saturate: counts above the capacity are not kept
        window.times[window.head % WINDOW_CAPACITY] = now
        window.head += 1

    def admit(self, identity: str, rate: int, enforce: bool, now: float | None) -> Decision:
        """RateLimiter.check on the shared window of `identity`."""
        with self.table.lock:  # read the clock under the lock so windows stay sorted
            now = time.monotonic() if now is None else now
            window = self._window(identity, now)
            allowed = not enforce or window.head - window.tail < rate
            if allowed:
                self._append(window, now)
            held = window.head - window.tail
            reset = WINDOW_S
            if held:
                reset = window.times[window.tail % WINDOW_CAPACITY] + WINDOW_S - now
            return Decision(allowed, rate, max(0, rate - held), max(0.0, reset))

    def record(self, identity: str, now: float | None) -> None:
        """Append an arrival and raise the identity's peak if the window grew past it."""
        with self.table.lock:
            now = time.monotonic() if now is None else now
            window = self._window(identity, now)
            self._append(window, now)
            window.peak = max(window.peak, window.head - window.tail)

    def peaks(self) -> dict[str, int]:
        """Largest window size seen per identity."""
        with self.table.lock:
            return {name: window.peak for name, window in self.table.items()}

    def clear(self) -> None:
        """Forget every window."""
        with self.table.lock:
            self.table.clear()


class SharedRateLimiter:
    """RateLimiter (same interface) whose windows every serving process shares."""

    def __init__(self) -> None:
        self._windows = SharedWindows()

    def check(self, identity: str, rate: int, enforce: bool, now: float | None = None) -> Decision:
        """Admit or refuse one request from `identity` (always admitted if not enforcing)."""
        return self._windows.admit(identity, rate, enforce, now)

    def reset(self) -> None:
        """Forget all windows."""
        self._windows.clear()


class SharedStats:
    """Stats (same interface and snapshot) counted in shared memory."""

    def __init__(self) -> None:
        self._counts = SharedCounters(COUNTERS)
        self._arrivals = SharedWindows()

    def reset(self) -> None:
        """Zero everything."""
        self._counts.clear()
        self._arrivals.clear()

    def arrival(self, endpoint: str, series: str | None) -> None:
        """Record that a candle request arrived."""
        self._counts.arrival(endpoint, series)

    def identity(self, identity: str, now: float | None = None) -> None:
        """Record one arrival for the per-second peak of `identity` ("key:..." or "ip:...")."""
        self._arrivals.record(identity, now)

    def response(self, status: str, candles: int = 0, fault: str | None = None) -> None:
        """Record how a candle request was answered ("timeout" when dropped)."""
        self._counts.response(status, ("candles", candles), fault)

    def snapshot(self) -> dict[str, object]:
        """JSON-friendly copy of all counters, as Stats.snapshot."""
        groups, plain = self._counts.snapshot()
        return {
            "requests_total": plain.get("total", 0),
            "responses_by_status": groups["status"],
            "max_requests_in_any_second": self._arrivals.peaks(),
            "requests_by_endpoint": groups["endpoint"],
            "requests_by_series": groups["series"],
            "faults_injected": groups["fault"],
            "candles_served": plain.get("candles", 0),
        }
