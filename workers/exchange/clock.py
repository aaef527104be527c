"""Whose clock decides: ours. The exchange's `Date` and reset headers are only hints.

Which bucket has closed is decided by our (synchronised) clock; the exchange's `Date` may
only make that later, never earlier: a bucket the exchange has not closed yet (its data may
be partial, e.g. from a stale proxy) is not closed, and a clock ahead of ours closes
nothing early. A `Date` further than `max_skew_s` from ours is logged. A reset header is
read as seconds or as an absolute time, and never pauses longer than `max_s`.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import threading
import time

from core.logs import log_event
from core.text import clean_text

log = logging.getLogger("backfill.worker")
SKEW_LOG_EVERY_S = 60.0
_skew_lock = threading.Lock()
_skew_logged_at = -math.inf


def http_date(value: str | None) -> float | None:
    """UNIX seconds of an HTTP date, or None for anything else (the last few answers'
    dates are remembered: every answer within a second carries the same one)."""
    if not value:
        return None
    return _http_date(value[:64])


@functools.lru_cache(maxsize=8)
def _http_date(value: str) -> float | None:
    try:
        ts = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return ts if math.isfinite(ts) else None


def closed_before(date_header: str | None, now: float, max_skew_s: float, host: str = "") -> float:
    """The time to judge 'closed' by: the earlier of our clock and the exchange's `Date`.
    A `Date` off by more than `max_skew_s` is logged (`clock_skew`, once a minute)."""
    server = http_date(date_header)
    if server is None:
        return now
    if abs(server - now) > max_skew_s:
        _log_skew(server - now, host)
    return min(now, server)


def _log_skew(skew: float, host: str) -> None:
    global _skew_logged_at
    with _skew_lock:
        if time.monotonic() - _skew_logged_at < SKEW_LOG_EVERY_S:
            return
        _skew_logged_at = time.monotonic()
    log_event(
        log, "clock_skew", level=logging.WARNING, skew_s=round(skew, 1), host=clean_text(host, 80)
    )


def plain_number(text: str) -> str:
    """Python's `float`/`int` also take `1_5` and non-ASCII digits; the exchange's
    JavaScript-era headers never mean those (JavaScript's `Number("1_5")` is NaN)."""
    if not text.isascii() or "_" in text:
        raise ValueError(f"not a plain number: {text!r}")
    return text


def reset_after(value: str | None, now: float, max_s: float) -> float | None:
    """Seconds until a rate-limit window resets, clamped to [0, max_s]; None if unreadable.

    Seconds (`1.5`), epoch seconds or milliseconds, and HTTP dates are understood; NaN and
    text are ignored; infinity or a date years away is `max_s`.
    """
    if value is None:
        return None
    text = value.strip()[:64]
    try:
        x = float(plain_number(text))
    except ValueError:
        at = http_date(text)
        if at is None:
            return None
        x = at - now
    else:
        if math.isnan(x):
            return None
        if x > 1e11:  # epoch milliseconds
            x = x / 1000 - now
        elif x > 1e8:  # epoch seconds (a delay of three years is not one)
            x = x - now
    return min(max_s, max(0.0, x))


def window_count(limit: str | None, remaining: str | None) -> tuple[int, int] | None:
    """(requests the exchange counts in its window, its limit) from `x-ratelimit-limit` and
    `x-ratelimit-remaining`; None unless both are sane small integers (hostile headers
    are ignored, never trusted to slow the fleet to nothing)."""
    try:
        lim = int(plain_number(str(limit).strip()[:12]))
        rem = int(plain_number(str(remaining).strip()[:12]))
    except ValueError:
        return None
    if not (0 < lim <= 100_000 and 0 <= rem <= lim):
        return None
    return lim - rem, lim
