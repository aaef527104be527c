"""The readiness gate the indicator service waits on.

The chord callback writes the run's summary to `backfill:gate:{run_id}` and publishes
the run id on `backfill:gate`. A waiter subscribes first and then reads the key, so it
cannot miss a gate that opens in between.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import redis

from backfill.errors import BackfillError
from backfill.run import RUN_TTL_S, RunStore

GATE_CHANNEL = "backfill:gate"
EXIT_READY, EXIT_TIMEOUT, EXIT_NOT_READY = 0, 1, 3


def gate_key(run_id: str) -> str:
    return f"backfill:gate:{run_id}"


def summarize(run_id: str, outcomes: list[dict], started_at: float | None = None) -> dict:
    """The gate's summary: which series are ready, which failed and why."""
    ready, failed, not_ready = [], [], []
    by_tf: dict[str, dict] = defaultdict(
        lambda: {"ok": 0, "failed": 0, "candles": 0, "requests": 0, "seconds": 0.0}
    )
    for o in outcomes:
        tf = by_tf[o["timeframe"]]
        tf["requests"] += o.get("requests", 0)
        tf["seconds"] = round(tf["seconds"] + o.get("elapsed_s", 0.0), 3)
        if o["status"] != "ok":
            tf["failed"] += 1
            failed.append(
                {
                    "series": o["series"],
                    "reason": o.get("reason"),
                    "error": o.get("error"),
                    "retries": o.get("retries", 0),
                }
            )
            continue
        tf["ok"] += 1
        tf["candles"] += o.get("candles_written", 0)
        if o.get("ready"):
            ready.append(o["series"])
        else:
            not_ready.append(
                {
                    "series": o["series"],
                    "candles": o.get("candles_cached", 0),
                    "reason": o.get("reason"),
                }
            )
    return {
        "run_id": run_id,
        "status": "ready" if not failed and not not_ready else "partial",
        "completed": len(outcomes),
        "ready": ready,
        "failed": failed,
        "not_ready": not_ready,
        "requests": sum(o.get("requests", 0) for o in outcomes),
        "retries": sum(o.get("retries", 0) for o in outcomes),
        "gaps": sum(o.get("gaps", 0) for o in outcomes),
        "by_timeframe": dict(by_tf),
        "opened_at": round(time.time(), 3),
        "elapsed_s": round(time.time() - started_at, 3) if started_at else None,
    }


def open_gate(client: redis.Redis, summary: dict) -> None:
    pipe = client.pipeline()
    pipe.set(gate_key(summary["run_id"]), json.dumps(summary), ex=RUN_TTL_S)
    pipe.publish(GATE_CHANNEL, summary["run_id"])
    pipe.execute()


def read_gate(client: redis.Redis, run_id: str) -> dict | None:
    raw = client.get(gate_key(run_id))
    return json.loads(raw) if raw else None


@dataclass
class GateResult:
    run_id: str | None
    summary: dict | None  # None: timed out

    @property
    def exit_code(self) -> int:
        if self.summary is None:
            return EXIT_TIMEOUT
        return EXIT_READY if self.summary["status"] == "ready" else EXIT_NOT_READY


class GateError(BackfillError):
    """Raised when there is no run to wait for."""


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
    pubsub.subscribe(GATE_CHANNEL, *channels)
    try:
        run_id = run_id or RunStore(client).latest()
        if run_id is None:
            raise GateError("no backfill run found: dispatch one first")
        while True:
            if on_wake is not None:
                on_wake(run_id)
            summary = read_gate(client, run_id)
            if summary is not None:
                return GateResult(run_id, summary)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return GateResult(run_id, None)
            pubsub.get_message(timeout=min(remaining, 1.0))
    finally:
        pubsub.close()
