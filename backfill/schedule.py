"""The keeper's clock: `celery -A backfill beat` fires at every bucket close.

`celeryconfig.beat_scheduler` names `BoundaryScheduler`: at start it reads the settings
(the same `BACKFILL_SYMBOLS` x `BACKFILL_TIMEFRAMES` as the startup run) and adds one
entry, due `BACKFILL_SETTLE_S` after every close of the finest step the configured
timeframes share (their greatest common divisor: 1m with `1m`, else 5m ...), by this
host's clock. It sends one `backfill.boundary` message to the control queue; the fan-out
then handles every timeframe that closed at that instant, shortest first, so at a 1d
close the 5m refreshes are enqueued (and land) before the 15m ones, and so on.

Nothing is persisted: a restarted beat resumes at the next close, and whatever runs twice
(two beats, a restart mid-boundary) is deduplicated in Redis by the fan-out.

Bad `BACKFILL_SYMBOLS` entries: beat logs one `bad_symbols` error line at start naming them
and goes on (the keeper refreshes the valid ones and names the bad ones at every close);
with no valid symbol at all, or a bad timeframe, it refuses to start (nothing to keep).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from celery.beat import Scheduler
from celery.schedules import schedstate, schedule

from core import keys
from core.config import bad_symbols_message, split_symbols
from core.errors import InvalidInput
from core.logs import log_event
from core.settings import load_settings
from core.text import split_names
from core.timeframe import Timeframe, close_step, parse_timeframes

log = logging.getLogger("backfill.beat")


class BoundarySchedule(schedule):
    """Due `settle_s` after every close of a `seconds`-long bucket (UTC-aligned)."""

    def __init__(self, seconds: int, settle_s: float, app=None) -> None:
        super().__init__(run_every=timedelta(seconds=seconds), app=app)
        self.bucket_s = seconds
        self.settle_s = settle_s

    def due_after(self, ts: float) -> float:
        """The first close + settle strictly after `ts`."""
        boundary = (int((ts - self.settle_s) // self.bucket_s) + 1) * self.bucket_s
        return boundary + self.settle_s

    def is_due(self, last_run_at: datetime) -> schedstate:
        if last_run_at.tzinfo is None:
            last_run_at = last_run_at.replace(tzinfo=UTC)
        now = time.time()
        due = self.due_after(last_run_at.timestamp())
        if now >= due:
            return schedstate(True, max(0.05, self.due_after(now) - now))
        return schedstate(False, max(0.05, due - now))

    def __reduce__(self):
        return self.__class__, (self.bucket_s, self.settle_s)

    def __repr__(self) -> str:
        return f"<bucket close every {self.bucket_s}s + {self.settle_s}s>"


def boundary_entries(timeframes: list[Timeframe], settle_s: float) -> dict[str, dict]:
    """The one beat entry: every close of the timeframes' common step."""
    step = close_step(timeframes)
    return {
        "bucket-closes": {
            "task": keys.BOUNDARY_TASK,
            "schedule": BoundarySchedule(step, settle_s),
            "args": (),
            "options": {"queue": keys.CONTROL_QUEUE, "expires": float(step)},
        }
    }


class BoundaryScheduler(Scheduler):
    """Celery's in-memory scheduler plus the bucket-close entries from the settings."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        settings = load_settings()
        tfs = parse_timeframes(settings.backfill_timeframes)
        check_symbols(settings.backfill_symbols)
        self.merge_inplace(boundary_entries(tfs, settings.backfill_settle_s))


def check_symbols(text: str) -> tuple[str, ...]:
    """The valid symbols of `BACKFILL_SYMBOLS`; the bad entries are logged (one error line),
    and with none valid `InvalidInput` is raised: beat has nothing to keep fresh."""
    valid, bad = split_symbols(split_names(text))
    if bad:
        log_event(log, "bad_symbols", level=logging.ERROR, error=bad_symbols_message(bad),
                  valid=len(valid))  # fmt: skip
    if not valid:
        raise InvalidInput("BACKFILL_SYMBOLS has no valid symbol: beat has nothing to keep fresh")
    return valid
