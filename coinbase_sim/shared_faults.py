"""FaultInjector for several serving processes: one shared, seeded, counter-based stream.

A Mersenne Twister cannot be shared across processes cheaply, so the n-th
draw is a hash of (seed, stream, n) with n a shared counter.  Faults stay
reproducible given the request order (after POST /_sim/reset), but the
stream differs from the single-process one for the same seed.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import multiprocessing

from coinbase_sim.config import Settings
from coinbase_sim.faults import FAULTS, FaultInjector, pick_fault


class _Counters(ctypes.Structure):
    _fields_ = [
        ("faults", ctypes.c_uint64),
        ("latency", ctypes.c_uint64),
        ("throttled", ctypes.c_uint64),
    ]


class SharedFaultInjector(FaultInjector):
    """Same interface as FaultInjector; the draw counters live in shared memory."""

    def __init__(self, seed: int) -> None:
        self._memory = mmap.mmap(-1, mmap.PAGESIZE)
        self._counters = _Counters.from_buffer(self._memory)
        self._shared_lock = multiprocessing.get_context("fork").Lock()
        super().__init__(seed)

    def reset(self) -> None:
        """Restart both streams and the 429 body alternation, for every process."""
        with self._shared_lock:
            self._counters.faults = self._counters.latency = self._counters.throttled = 0

    def _next(self, stream: str) -> float:
        with self._shared_lock:
            n = getattr(self._counters, stream)
            setattr(self._counters, stream, n + 1)
        digest = hashlib.blake2b(f"{self._seed}|{stream}|{n}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0**64

    def draw(self, settings: Settings) -> str | None:
        """One of FAULTS (e.g. "p500") for this request, or None."""
        if not any(getattr(settings, name) for name in FAULTS):
            return None  # no fault configured: skip the shared counter
        return pick_fault(self._next("faults"), settings)

    def latency_s(self, settings: Settings) -> float:
        """Extra delay for this request, uniform in latency_ms."""
        low, high = settings.latency_ms
        if high <= 0:
            return 0.0
        return (low + (high - low) * self._next("latency")) / 1000.0

    def html_429(self) -> bool:
        """Alternate 429 bodies: HTML for every other throttled response, JSON otherwise."""
        with self._shared_lock:
            self._counters.throttled += 1
            return self._counters.throttled % 2 == 1
