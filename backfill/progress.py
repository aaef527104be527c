"""Watch a run until its gate opens: `backfill_progress` events, a bar on a terminal."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from backfill.gate import GateResult, wait_ready
from core import keys
from core.logs import log_event
from core.run import RunStore

log = logging.getLogger("backfill.progress")


@dataclass
class Progress:
    run_id: str
    total: int
    completed: int
    errors: int
    elapsed_s: float

    @property
    def percent(self) -> float:
        return round(100.0 * self.completed / self.total, 1) if self.total else 100.0

    @property
    def eta_s(self) -> float | None:
        if not self.completed or self.completed >= self.total:
            return 0.0 if self.completed >= self.total else None
        return round(self.elapsed_s / self.completed * (self.total - self.completed), 1)


def snapshot(client: redis.Redis, run_id: str) -> Progress:
    runs = RunStore(client)
    run = runs.meta(run_id)
    total, started_at = (run.total, run.started_at) if run else (0, time.time())
    outcomes = runs.outcomes(run_id)
    errors = sum(1 for o in outcomes.values() if o.status != "ok")
    return Progress(run_id, total, len(outcomes), errors, time.time() - started_at)


def watch(
    client: redis.Redis,
    run_id: str,
    timeout: float,
    on_progress: Callable[[Progress], None] | None = None,
    every_s: float | None = 2.0,
) -> GateResult:
    """Follow progress until the gate opens or `timeout` passes.

    Progress is logged at most every `every_s` seconds (and on completion; never when
    None); the wait blocks on pub/sub, so a quiet run costs no Redis traffic.
    """
    last = {"log": 0.0, "completed": -1}

    def report(_: str) -> None:
        p = snapshot(client, run_id)
        if p.completed == last["completed"]:
            return
        if on_progress:
            on_progress(p)
        if every_s is not None and (
            time.monotonic() - last["log"] >= every_s or p.completed == p.total
        ):
            log_event(
                log,
                "backfill_progress",
                run_id=run_id,
                completed=p.completed,
                total=p.total,
                percent=p.percent,
                elapsed_s=round(p.elapsed_s, 1),
                eta_s=p.eta_s,
                errors=p.errors,
            )
            last["log"] = time.monotonic()
        last["completed"] = p.completed

    channel = keys.progress_channel(run_id)
    return wait_ready(client, run_id, timeout, on_wake=report, channels=(channel,))


def watch_with_bar(client: redis.Redis, run_id: str, timeout: float) -> GateResult:
    """A rich progress bar on a terminal; plain `backfill_progress` lines otherwise."""
    if not sys.stderr.isatty():
        return watch(client, run_id, timeout)
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(
        "[bold]backfill",
        BarColumn(),
        MofNCompleteColumn(),
        "errors {task.fields[errors]}",
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(run_id, total=None, errors=0)

        def update(p: Progress) -> None:
            bar.update(task, total=p.total, completed=p.completed, errors=p.errors)

        return watch(client, run_id, timeout, on_progress=update, every_s=None)
