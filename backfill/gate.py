"""Waiting on the readiness gate, as the indicator service's start script does.

The chord callback writes the run's summary (`core.summary`) to the gate key and
publishes the run id on the gate channel (`core.run.RunStore.open_gate`). A waiter
subscribes first and then reads the key, so it cannot miss a gate that opens in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from core import keys
from core.errors import GateError
from core.run import RunStore

EXIT_READY, EXIT_TIMEOUT, EXIT_NOT_READY = 0, 1, 3


@dataclass
class GateResult:
    run_id: str | None
    summary: dict | None  # None: timed out

    @property
    def exit_code(self) -> int:
        if self.summary is None:
            return EXIT_TIMEOUT
        return EXIT_READY if self.summary["status"] == "ready" else EXIT_NOT_READY


def wait_ready(
    client: redis.Redis,
    run_id: str | None = None,
    timeout: float = 600.0,
    *,
    on_wake: Callable[[str], None] | None = None,
    channels: tuple[str, ...] = (),
) -> GateResult:
    """Block until the run's gate opens or `timeout` passes (the latest run if none given).

    Blocks on pub/sub (the gate channel and any `channels`), re-reading the gate at least
    once a second; `on_wake(run_id)` runs at every wake-up (progress reporting).
    """
    deadline = time.monotonic() + timeout
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.GATE_CHANNEL, *channels)
    try:
        runs = RunStore(client)
        run_id = run_id or runs.latest()
        if run_id is None:
            raise GateError("no backfill run found: dispatch one first")
        while True:
            if on_wake is not None:
                on_wake(run_id)
            summary = runs.gate(run_id)
            if summary is not None:
                return GateResult(run_id, summary)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return GateResult(run_id, None)
            pubsub.get_message(timeout=min(remaining, 1.0))
    finally:
        pubsub.close()
