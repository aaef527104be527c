"""The gate's summary of a run: which series are ready, which failed and why.

Pure: the chord callback computes it from outcomes, the gate stores it, waiters and
`backfill status` read it. Kept small whatever the exchange said (errors are already
cleaned and truncated in the outcomes).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from core.outcome import Outcome


def summarize(run_id: str, outcomes: Iterable[Outcome], started_at: float | None = None) -> dict:
    """The gate's summary; `status` is ready only when every series is ready."""
    outcomes = list(outcomes)
    ready: list[str] = []
    failed: list[dict] = []
    not_ready: list[dict] = []
    by_tf: dict[str, dict] = defaultdict(
        lambda: {"ok": 0, "failed": 0, "candles": 0, "requests": 0, "seconds": 0.0}
    )
    for o in outcomes:
        tf = by_tf[o.timeframe]
        tf["requests"] += o.requests
        tf["seconds"] = round(tf["seconds"] + o.elapsed_s, 3)
        if o.status != "ok":
            tf["failed"] += 1
            failed.append(
                {"series": o.series, "reason": o.reason, "error": o.error, "retries": o.retries}
            )
            continue
        tf["ok"] += 1
        tf["candles"] += o.candles_written
        if o.ready:
            ready.append(o.series)
        else:
            not_ready.append({"series": o.series, "candles": o.candles_cached, "reason": o.reason})
    now = time.time()
    return {
        "run_id": run_id,
        "status": "ready" if not failed and not not_ready else "partial",
        "completed": len(outcomes),
        "ready": ready,
        "failed": failed,
        "not_ready": not_ready,
        "requests": sum(o.requests for o in outcomes),
        "retries": sum(o.retries for o in outcomes),
        "gaps": sum(o.gaps for o in outcomes),
        "by_timeframe": dict(by_tf),
        "opened_at": round(now, 3),
        "elapsed_s": round(now - started_at, 3) if started_at else None,
    }
