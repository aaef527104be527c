"""Keep the garbage collector from stalling the simulator.

A full collection walks every tracked object, and the simulator's caches (candles,
rendered pages, walks) grow to millions of them during a large run: a collection then
held one serving process for up to 0.75 s. Its connections queued meanwhile and were
counted together when it resumed, so the simulator saw 31-34 arrivals in one second
from a fleet that sent at most 25, and answered 429. Measured (bench `--large`, 1,000 x 5
series): with the collector off, the largest send-to-count delay fell from 0.76 s to
0.07 s and the 429s from 3-8 to 0.

So each serving process moves what it holds into the permanent generation every few
seconds (`gc.freeze()`: a list splice, no walk): full collections then only walk what
was allocated since, and cycles are still collected while young.
"""

from __future__ import annotations

import gc
import threading

FREEZE_EVERY_S = 2.0


def keep_collections_short(stop: threading.Event, every_s: float = FREEZE_EVERY_S) -> None:
    """Freeze what survived so far, now and every `every_s` until `stop` is set."""
    gc.freeze()

    def run() -> None:
        while not stop.wait(every_s):
            gc.freeze()

    threading.Thread(target=run, name="coinbase-sim-quietgc", daemon=True).start()
