"""Seeded fault injection and latency, reproducible for a given request order."""

from __future__ import annotations

import random
import threading

from coinbase_sim.config import Settings

FAULTS = ("p429", "p500", "p503", "ptimeout", "ptruncated", "pnonjson")


class FaultInjector:
    """Draws which fault (if any) hits each candle request, and how long it lags.

    Faults and latency use separate seeded streams so that changing the
    latency does not change which requests fail.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Restart both random streams and the 429 body alternation."""
        with self._lock:
            self._faults = random.Random(f"{self._seed}|faults")
            self._latency = random.Random(f"{self._seed}|latency")
            self._throttled = 0

    def draw(self, settings: Settings) -> str | None:
        """One of FAULTS (e.g. "p500") for this request, or None."""
        with self._lock:
            u = self._faults.random()
        return pick_fault(u, settings)

    def latency_s(self, settings: Settings) -> float:
        """Extra delay for this request, uniform in latency_ms."""
        low, high = settings.latency_ms
        if high <= 0:
            return 0.0
        with self._lock:
            return self._latency.uniform(low, high) / 1000.0

    def html_429(self) -> bool:
        """Alternate 429 bodies: HTML for every other throttled response, JSON otherwise."""
        with self._lock:
            self._throttled += 1
            return self._throttled % 2 == 1


def pick_fault(u: float, settings: Settings) -> str | None:
    """The fault a uniform draw `u` in [0, 1) lands on (each with its probability), or None."""
    for name in FAULTS:
        p = getattr(settings, name)
        if u < p:
            return name
        u -= p
    return None
