"""One request budget for the whole fleet, shared through Redis (a sliding-window log).

Celery's `rate_limit` is per worker node; Coinbase counts per API key or per IP. Every
HTTP request therefore reserves a send slot here first: one Lua call that returns how
long to wait, then the caller sleeps exactly that long (no polling).

The budget guarantees what the exchange counts: never more than `rate` sends in any
window of one second (plus `GUARD_S`). Unlike an evenly spaced GCRA it lets an idle
fleet send a whole second's worth at once (at `BURST_SPREAD` times the rate), so the first
5m series (the first `rate` requests of a run) are ready after one round trip instead of
after a second of pacing; every later window repeats that burst, so the head start is
kept and the sustained pace is `rate / (1 + GUARD_S)`. The log holds reserved times, so
a send must go on time: one that wakes late gives its slot back and takes the earliest
one every window still allows rather than join a later burst.

Live work comes first here too: whoever enqueues it holds slots back in the budget's
reserve (core/reserve.py: the run's first timeframe, the refreshes of a bucket close);
other requests cannot take them, and each live request takes one (`using_reserve`),
ahead of slots other work reserved for later where every window allows it.

After a 429 the whole fleet's rate is halved (down to 1/8) and recovers linearly
(10 % of full rate per second); a reset time sent with the 429 pauses every worker until
then. Before it comes to that, the exchange's own count (`x-ratelimit-remaining` on every
private answer) is compared with the plan: when the exchange sees more of our sends in
its window than the budget allows (sends bunched on the way, or another client on the
same key), the fleet steps down to 80 % (once per window) and recovers the same way.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core import defaults, keys
from core.errors import Banned, BudgetTimeout
from workers.lua import LuaScript
from workers.trace import trace

# The window is 1 s + GUARD_S, so that a few ms of jitter between a slot and the request's
# arrival cannot put rate+1 requests into one second at the exchange (the budget's rate
# below the exchange's limit absorbs the rest: `JITTER_SENDS`).
GUARD_S = 0.01
# An idle fleet's burst goes out at BURST_SPREAD times the rate: close enough that a
# startup's first second costs little (the windows after it repeat its spread), far
# enough apart that the exchange receives and counts the sends as they were sent
# (5 ms apart, the simulator counted bursts late on 2 cores: 32 in a second, 429s).
BURST_SPREAD = 4
# A send may wake this late after its slot and still go (as late as the guard: later, the
# exchange could count it in the next slot's second); later, it reserves again.
LATE_TOLERANCE_S = 0.01
LATE_TOLERANCE_ENV = "BACKFILL_BUDGET_LATE_TOLERANCE_S"  # "inf": never re-reserve (bench A/B)
# Arrival jitter larger than the guard lets the exchange count one send more than the plan
# in a second; larger than the guard plus the least gap between sends, two. Both are
# inside the exchange's own headroom (25 planned of 30 allowed); more is a near-miss.
JITTER_SENDS = 2
RECOVERY_PER_S = 0.1
LOWEST_FACTOR = 0.125
CROWDED_FACTOR = 0.8  # one step when the exchange counts more than the plan
CROWDED_LOWEST = 0.5  # near-misses alone never slow the fleet below half


class FleetBudget:
    """Requests per second for every worker that uses the same Redis and key."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        rate: float,
        *,
        max_wait_s: float = defaults.BUDGET_MAX_WAIT_S,
        guard_s: float = GUARD_S,
        window_s: float = 1.0,
        late_tolerance_s: float | None = None,
        sleep=time.sleep,
        max_reset_s: float = defaults.MAX_RESET_S,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"fleet rate {rate} must be > 0")
        self.redis = client
        self.name = name
        self.rate = rate
        self.max_wait_s = max_wait_s
        self.max_reset_s = max_reset_s
        # Below 1/s the window stretches (0.5/s: one send per 2 s); above, whole sends per s.
        # `window_s` > 1: an exchange that counts per minute (Binance) lets the fleet use a
        # longer window (a startup goes out at up to twice the rate) with the same average.
        self.window_us = max(window_s, 1.0 / rate) * (1.0 + guard_s) * 1e6
        self.limit = max(1.0, rate * window_s)
        self.min_gap_us = 1e6 / (BURST_SPREAD * rate)
        self._keys = keys.budget(name)
        self._throttle_keys = (self._keys.sends, self._keys.slow, self._keys.paused)
        self._local = threading.local()
        self._acquire = LuaScript(client, "budget.lua")
        self._throttle = LuaScript(client, "throttle.lua")
        self._sleep = sleep
        if late_tolerance_s is None:
            late_tolerance_s = float(os.environ.get(LATE_TOLERANCE_ENV, LATE_TOLERANCE_S))
        self.late_tolerance_s = late_tolerance_s
        self.late_wakes = 0
        self.factor = 1.0
        self._crowded_quiet_until = 0.0  # monotonic: this process reported a near-miss

    def acquire(self) -> None:
        """Block this task (only) until its slot; raise `BudgetTimeout` past `max_wait_s`.

        A slot is only good on time: the log counts the reserved time, the exchange the
        arrival. A thread that wakes more than `late_tolerance_s` after its slot (a GC
        pause, a stopped or starved process) would send together with the on-time sends
        of the next slots, so it gives the stale slot back and reserves a new one instead.
        """
        stale, self._local.stale = getattr(self._local, "stale", ""), ""
        trace.mark("reserve")
        self._acquire_from(stale)

    def _acquire_from(self, stale: str) -> None:
        give_up = time.monotonic() + self.max_wait_s
        while True:
            asked = time.monotonic()
            wait_us, granted, factor, member = self._acquire(
                self._keys,
                limit_at_full=self.limit,
                window=self.window_us,
                max_wait=max(0.0, give_up - asked) * 1e6,
                recovery=RECOVERY_PER_S,
                min_gap=self.min_gap_us,
                live=int(getattr(self._local, "live", False)),
                stale=stale,
            )
            self.factor = factor / 1000
            member = member.decode() if isinstance(member, bytes) else str(member)
            if member.startswith("banned:"):
                until = int(member.split(":", 1)[1]) / 1000
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
                raise Banned(f"banned until {stamp}: no request sent", until=until)
            if not granted:
                raise BudgetTimeout(
                    f"fleet budget {self.name!r} has no slot within {self.max_wait_s:.0f}s "
                    f"(next in {wait_us / 1e6:.1f}s)"
                )
            if wait_us > 0:
                self._sleep(wait_us / 1e6)
            # late by at least this much (measured from before the call: conservative)
            due = asked + wait_us / 1e6
            if time.monotonic() - due <= self.late_tolerance_s:
                self._local.slot = (due, member)
                return
            self.late_wakes += 1
            stale = member

    def confirm(self, final: bool = False) -> bool:
        """Asked at the last moment before the request's bytes go out (the HTTP pool's
        hook): between `acquire()` and here the thread built the request and may have
        waited for the GIL or the CPU. On time: True, send. Late: False, the caller sends
        nothing and calls `acquire()` again, which gives this slot back (as a late wake
        does) and waits for a new one outside the request's deadline. `final`: the caller
        sends on this slot whatever it is told (it let enough go stale), so the slot stays
        taken."""
        slot = getattr(self._local, "slot", None)
        self._local.slot = None
        if slot is None:
            return True
        due, member = slot
        if not final and time.monotonic() - due > self.late_tolerance_s:
            self.late_wakes += 1
            self._local.stale = member
            return False
        trace.mark("sent")
        return True

    @contextmanager
    def using_reserve(self, live: bool = True) -> Iterator[None]:
        """Requests made inside are live work and may take the reserve's slots (this
        thread only; see core/reserve.py)."""
        self._local.live = live
        try:
            yield
        finally:
            self._local.live = False

    def throttled(self, reset_after: float | None) -> None:
        """A 429 arrived anyway: slow the whole fleet down, and pause it for the reset time,
        never longer than `max_reset_s` (a header saying 'years' must not block the fleet)."""
        reset = float(reset_after or 0)
        reset = 0.0 if math.isnan(reset) else min(self.max_reset_s, max(0.0, reset))
        reset_us = reset * 1e6
        factor = self._throttle(
            self._throttle_keys,
            recovery=RECOVERY_PER_S,
            lowest=LOWEST_FACTOR,
            reset_us=reset_us,
            multiplier=0.5,
            quiet_us=0,
        )
        self.factor = factor / 1000

    def counted(self, used: int, limit: int) -> None:
        """The exchange counted `used` of `limit` requests in its one-second window: more
        than this budget plans for one second, beyond what arrival jitter adds
        (`JITTER_SENDS`), means sends reach it bunched (or another client shares the key),
        so step the fleet down before a 429 does it harder."""
        if used > min(self.rate + JITTER_SENDS, limit - 1):
            self.crowded()

    def crowded(self) -> None:
        """The exchange's own count says it sees more of us than planned: one step down
        (once per window), recovering as after a 429.

        The step is once per window fleet-wide, so this process reports at most once a
        window: a crowded window's every answer says the same, and each report is a round
        trip."""
        now = time.monotonic()
        if now < self._crowded_quiet_until:
            return
        self._crowded_quiet_until = now + self.window_us / 1e6
        factor = self._throttle(
            self._throttle_keys,
            recovery=RECOVERY_PER_S,
            lowest=CROWDED_LOWEST,
            reset_us=0,
            multiplier=CROWDED_FACTOR,
            quiet_us=self.window_us,
        )
        self.factor = factor / 1000

    def banned(self, seconds: float) -> None:
        """The exchange banned us (Binance's 418) for `seconds`: every worker of this
        budget stops sending until then; series fail at once, naming the end."""
        ms = int(max(1.0, seconds) * 1000)
        until_ms = int(time.time() * 1000) + ms
        self.redis.set(self._keys.banned, until_ms, px=ms)

    def banned_until(self) -> float | None:
        raw = self.redis.get(self._keys.banned)
        return int(raw) / 1000 if raw else None

    def recently_throttled(self) -> bool:
        """True while the fleet is still recovering from a 429 (or a near-miss)."""
        return bool(self.redis.exists(self._keys.slow))


class MemoryBudget:
    """The budget seam's in-memory stand-in for unit tests of fetch logic: grants every
    request at once and counts what it was asked (pacing is tested against Redis)."""

    def __init__(self) -> None:
        self.acquired = 0
        self.throttles: list[float | None] = []
        self.counts: list[tuple[int, int]] = []
        self.bans: list[float] = []

    def acquire(self) -> None:
        self.acquired += 1

    def throttled(self, reset_after: float | None) -> None:
        self.throttles.append(reset_after)

    def recently_throttled(self) -> bool:
        return bool(self.throttles)

    def counted(self, used: int, limit: int) -> None:
        self.counts.append((used, limit))

    def crowded(self) -> None:
        self.counts.append((-1, -1))

    def banned(self, seconds: float) -> None:
        self.bans.append(seconds)

    def confirm(self, final: bool = False) -> bool:
        return True
