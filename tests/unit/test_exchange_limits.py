"""Issue 12's limits as pure rules: task time limits below the visibility timeout, whose
clock decides 'closed', reset headers clamped, and 'exhausted' that expires."""

from __future__ import annotations

import pytest

from core.freshness import CachedState, fresh_outcome
from core.series import Series
from core.settings import load_settings
from workers.cache import MemoryCandleStore
from workers.exchange import clock

NOW = 1_700_000_000.0


@pytest.mark.parametrize("vt,soft,hard", [(8, 4.8, 7.2), (60, 36.0, 46.0), (900, 120.0, 130.0)])
def test_task_time_limits_stay_below_the_visibility_timeout(vt, soft, hard):
    assert load_settings(backfill_visibility_timeout_s=vt).task_time_limits() == (soft, hard)
    assert soft < hard < vt


@pytest.mark.parametrize(
    "offset,want",
    [
        (0.0, NOW),
        (-0.9, NOW - 0.9),
        (20.0, NOW),
        (86400.0, NOW),
        (-86400.0, NOW - 86400),
    ],
)
def test_closed_is_judged_by_the_earlier_clock(offset, want):
    import email.utils

    date = email.utils.formatdate(NOW + offset, usegmt=True)
    assert clock.closed_before(date, NOW, 30.0) == pytest.approx(want, abs=1)


@pytest.mark.parametrize(
    "date", [None, "", "yesterday", "Mon, 99 Foo 99999 99:99:99 GMT", "x" * 10_000]
)
def test_an_unreadable_date_is_our_clock(date):
    assert clock.closed_before(date, NOW, 30.0) == NOW


@pytest.mark.parametrize(
    "value,want",
    [
        ("1.5", 1.5), ("1e300", 60.0), ("inf", 60.0), ("-inf", 0.0), ("nan", None),
        ("-3", 0.0), (str(NOW + 5), 5.0), (str((NOW + 5) * 1000), 5.0), ("", None),
        ("Tue, 14 Nov 2023 22:13:25 GMT", 5.0), ("Fri, 01 Jan 2100 00:00:00 GMT", 60.0),
        ("1_5", None), ("\u0661\u0665", None), ("\uff11\uff15", None),
    ],
)  # fmt: skip
def test_reset_headers_are_read_and_clamped(value, want):
    got = clock.reset_after(value, NOW, 60.0)
    assert got == (pytest.approx(want) if want is not None else None)


def test_exhausted_is_believed_only_for_a_while():
    t = [NOW]
    store = MemoryCandleStore(exhausted_recheck_s=3600, clock=lambda: t[0])
    s = Series.of("NEW-USD", "5m")
    store.write(s, [], checked_upto=int(NOW), exhausted=True)
    assert store.state(s, int(NOW), 100).exhausted
    t[0] += 3601
    assert not store.state(s, int(NOW), 100).exhausted  # a later run fetches again


def test_a_series_with_only_old_data_is_not_ready():
    s = Series.of("OLD-USD", "5m")
    last = int(NOW) // 300 * 300 - 300
    recent = CachedState([last - 300 * i for i in range(100)])
    old = CachedState([last - 300 * (150 + i) for i in range(100)])
    assert fresh_outcome(s, recent, 60, now=NOW, n=100).ready
    out = fresh_outcome(s, old, 60, now=NOW, n=100)
    assert not out.ready and "older than the newest 100" in out.reason
