"""Where a startup's time goes: the workers' per-request traces (workers/trace.py) laid
out from the dispatch call to the open gate.

One thread runs one task at a time, so its lines in order are its tasks, each task's
requests (reserved, sent, answered) and the cache write that ends them."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Request:
    thread: str
    series: str
    reserved: float
    sent: float | None = None
    answered: float | None = None
    written: float | None = None


@dataclass
class Task:
    thread: str
    began: float
    series: str = ""  # "*" after it: live work (may take the budget's reserve)
    ended: float | None = None
    requests: list[Request] = field(default_factory=list)


def read(folder: Path) -> list[Task]:
    """Every traced task, its requests in order."""
    tasks: list[Task] = []
    for path in sorted(folder.glob("trace-*.txt")):
        current: dict[str, Task] = {}
        pid = path.stem.split("-", 1)[1]
        for line in path.read_text().splitlines():
            at, ident, event, *detail = line.split()
            t, thread = float(at), f"{pid}/{ident}"
            task = current.get(thread)
            if event == "task":
                current[thread] = task = Task(thread, t, " ".join(detail))
                tasks.append(task)
            elif task is None:
                continue  # a line from before the trace began (another scenario's task)
            elif event == "reserve":
                task.requests.append(Request(thread, task.series, t))
            elif event in ("sent", "answered") and task.requests:
                setattr(task.requests[-1], event, t)
            elif event == "written":
                for r in task.requests:
                    r.written = r.written or t
            elif event == "done":
                task.ended = t
    return tasks


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p95_ms": round(values[int(0.95 * (len(values) - 1))] * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


def _written(t: Task) -> bool:
    return bool(t.requests and t.ended and t.requests[-1].written)


def max_in_any_second(times: list[float]) -> int:
    """The most of `times` within any half-open second [t, t + 1)."""
    ts = sorted(times)
    j = best = 0
    for i, t in enumerate(ts):
        while ts[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def timeline(folder: Path, t0: float, dispatched: float, gate_opened: float, seen: float) -> dict:
    """The run's milestones (seconds after the dispatch call) and per-request spans; the
    per-request table goes to `folder/timeline.csv`."""
    tasks = [t for t in read(folder) if t.began >= t0]
    reqs = [r for t in tasks for r in t.requests]
    sent = [r.sent for r in reqs if r.sent is not None]

    def at(values: list[float], pick=min) -> float | None:
        return round(pick(values) - t0, 3) if values else None

    with open(folder / "timeline.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["thread", "series", "reserved_s", "sent_s", "answered_s", "written_s"])
        for r in sorted(reqs, key=lambda r: r.reserved):
            w.writerow([r.thread, r.series] + [
                "" if v is None else f"{v - t0:.4f}"
                for v in (r.reserved, r.sent, r.answered, r.written)
            ])  # fmt: skip
    return {
        "dispatch_returned_s": round(dispatched - t0, 3),
        "first_task_s": at([t.began for t in tasks]),
        "first_sent_s": at(sent),
        "last_sent_s": at(sent, max),
        "last_answered_s": at([r.answered for r in reqs if r.answered], max),
        "last_written_s": at([r.written for r in reqs if r.written], max),
        "last_task_done_s": at([t.ended for t in tasks if t.ended], max),
        "gate_opened_s": round(gate_opened - t0, 3),
        "gate_seen_s": round(seen - t0, 3),
        "tasks": len(tasks),
        "requests": len(reqs),
        "max_sends_in_any_second": max_in_any_second(sent),
        "slot_wait": _stats([r.sent - r.reserved for r in reqs if r.sent]),
        "round_trip": _stats([r.answered - r.sent for r in reqs if r.sent and r.answered]),
        "write": _stats([r.written - r.answered for r in reqs if r.answered and r.written]),
        "task_before_reserve": _stats(
            [t.requests[0].reserved - t.began for t in tasks if t.requests]
        ),
        "task_after_write": _stats(
            [t.ended - t.requests[-1].written for t in tasks if _written(t)]
        ),
        "csv": str(folder / "timeline.csv"),
    }
