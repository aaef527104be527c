"""Daily price walks computed once for every serving process.

A product's walk (HORIZON_DAYS Gaussian steps, ~5 ms) is the dearest part of
its first page; with per-process caches each worker would redo it for every
product it serves.  Walks are deterministic, so workers publish them into a
shared mmap without a lock: a race only writes the same values twice, and the
ready flag is set after the values.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Sequence

from coinbase_sim.market import HORIZON_DAYS


class _Walk(ctypes.Structure):
    _fields_ = [("ready", ctypes.c_uint64), ("values", ctypes.c_double * HORIZON_DAYS)]


class SharedWalks:
    """Walk store for a fixed product list (pages are touched only for walks computed)."""

    def __init__(self, product_ids: Sequence[str]) -> None:
        self._index = {product_id: i for i, product_id in enumerate(product_ids)}
        self._memory = mmap.mmap(-1, max(1, len(product_ids)) * ctypes.sizeof(_Walk))
        self._walks = (_Walk * max(1, len(product_ids))).from_buffer(self._memory)

    def get(self, product_id: str) -> Sequence[float] | None:
        """The published walk of `product_id`, or None."""
        walk = self._walks[self._index[product_id]]
        return walk.values if walk.ready else None

    def put(self, product_id: str, values: Sequence[float]) -> None:
        """Publish a walk (identical in every process for the same seed)."""
        walk = self._walks[self._index[product_id]]
        walk.values[:] = values
        walk.ready = 1
