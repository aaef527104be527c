"""When beat fires: settle seconds after every UTC-aligned bucket close, never twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backfill.schedule import BoundarySchedule, boundary_entries
from core import keys
from core.timeframe import parse_timeframes


@pytest.mark.parametrize("seconds", [60, 300, 3600, 86400])
def test_due_settle_seconds_after_each_close(seconds):
    s = BoundarySchedule(seconds, 3.0)
    close = 1_800_000_000 - 1_800_000_000 % seconds
    assert s.due_after(close - 10) == close + 3
    assert s.due_after(close + 1) == close + 3  # restarted mid-settle: still this close
    assert s.due_after(close + 3) == close + seconds + 3  # ran at close + 3: the next one


def test_is_due_now_and_reports_the_next_wait():
    s = BoundarySchedule(60, 2.0)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    due, wait = s.is_due(long_ago)
    assert due and 0 < wait <= 60
    due, wait = s.is_due(datetime.now(UTC))
    assert not due and 0 < wait <= 62
    naive = datetime.now(UTC).replace(tzinfo=None)  # celery may hand a naive UTC time
    assert not s.is_due(naive)[0]


@pytest.mark.parametrize(
    ("timeframes", "step"),
    [("1d,1m,5m", 60), ("5m,15m,1h,4h,1d", 300), ("4h,6h", 7200), ("1h", 3600)],
)
def test_one_entry_at_the_timeframes_common_step_to_the_control_queue(timeframes, step):
    entries = boundary_entries(parse_timeframes(timeframes), 3.0)
    (e,) = entries.values()
    assert e["task"] == keys.BOUNDARY_TASK and e["args"] == ()
    assert e["schedule"].bucket_s == step
    assert e["options"]["queue"] == keys.CONTROL_QUEUE and e["options"]["expires"] == step
