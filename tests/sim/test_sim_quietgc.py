"""The simulator's collector policy: what a serving process holds is frozen, now and later,
so that a full collection never walks its caches (see coinbase_sim/quietgc.py)."""

from __future__ import annotations

import gc
import threading

from helpers import wait_until

from coinbase_sim.quietgc import keep_collections_short


def test_what_survives_is_frozen_now_and_later():
    stop = threading.Event()
    gc.unfreeze()
    try:
        held = [[i] for i in range(50_000)]  # a cache of tracked objects
        keep_collections_short(stop, every_s=0.05)
        first = gc.get_freeze_count()
        assert first >= len(held)
        later = [[i] for i in range(50_000)]  # the cache grows while serving
        wait_until(
            lambda: gc.get_freeze_count() >= first + len(later), 5, "the new objects frozen"
        )
        gc.collect()  # a full collection still runs (and collects young cycles)
    finally:
        stop.set()
        gc.unfreeze()
