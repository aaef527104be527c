"""One request budget for the whole fleet, shared through Redis (a sliding-window log).

Celery's `rate_limit` is per worker node; Coinbase counts per API key or per IP. Every
HTTP request therefore reserves a send slot here first: one Lua call that returns how
long to wait, then the caller sleeps exactly that long (no polling).

The budget guarantees what the exchange counts: never more than `rate` sends in any
window of one second (plus `GUARD_S`). Unlike an evenly spaced GCRA it lets an idle
fleet send a whole second's worth at once, so the first 5m series (the first `rate`
requests of a run) are ready after one round trip instead of after a second of pacing.
Sustained throughput is `rate / (1 + GUARD_S)`. Sends are still at least half the mean
interval apart, so that a burst reaches the exchange as it was sent (a busy server counts
a burst late, pushing its tail into the next second).

The run's first timeframe (5m) comes first here too: the dispatcher holds back as many
slots as it enqueued first-timeframe series, and other requests cannot take them; each
first-timeframe request releases one.

After a 429 the whole fleet's rate is halved (down to 1/8) and recovers linearly
(10 % of full rate per second); a reset time sent with the 429 pauses every worker until
then.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import redis

from backfill.errors import BudgetTimeout

# The window is 1 s + GUARD_S, so that up to 50 ms of scheduling jitter between a slot and the
# request's arrival cannot put rate+1 requests into one second at the exchange.
GUARD_S = 0.05
RECOVERY_PER_S = 0.1
LOWEST_FACTOR = 0.125


def budget_name(key_name: str | None) -> str:
    """The budget's Redis name: per API key (hashed, names stay out of Redis) or public."""
    if not key_name:
        return "public"
    return "key:" + hashlib.sha256(key_name.encode()).hexdigest()[:16]


class FleetBudget:
    """Requests per second for every worker that uses the same Redis and key."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        rate: float,
        *,
        max_wait_s: float = 30.0,
        guard_s: float = GUARD_S,
        sleep=time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"fleet rate {rate} must be > 0")
        self.redis = client
        self.name = name
        self.rate = rate
        self.max_wait_s = max_wait_s
        # Below 1/s the window stretches (0.5/s: one send per 2 s); above, whole sends per s.
        self.window_us = max(1.0, 1.0 / rate) * (1.0 + guard_s) * 1e6
        self.limit = max(1.0, rate)
        self.min_gap_us = 1e6 / (2 * rate)
        self._keys = budget_keys(name)
        self._local = threading.local()
        self._acquire = client.register_script(_lua("budget.lua"))
        self._throttle = client.register_script(_lua("throttle.lua"))
        self._sleep = sleep
        self.waited_s = 0.0
        self.factor = 1.0

    def acquire(self) -> None:
        """Block this task (only) until its slot; raise `BudgetTimeout` past `max_wait_s`."""
        wait_us, reserved, factor = self._acquire(
            keys=self._keys,
            args=[
                self.limit,
                self.window_us,
                self.max_wait_s * 1e6,
                RECOVERY_PER_S,
                self.min_gap_us,
                int(getattr(self._local, "first", False)),
            ],
        )
        self.factor = factor / 1000
        if not reserved:
            raise BudgetTimeout(
                f"fleet budget {self.name!r} has no slot within {self.max_wait_s:.0f}s "
                f"(next in {wait_us / 1e6:.1f}s)"
            )
        if wait_us > 0:
            self.waited_s += wait_us / 1e6
            self._sleep(wait_us / 1e6)

    @contextmanager
    def first_in_line(self, first: bool = True) -> Iterator[None]:
        """Requests made inside belong to the run's first timeframe (this thread only)."""
        self._local.first = first
        try:
            yield
        finally:
            self._local.first = False

    def throttled(self, reset_after: float | None) -> None:
        """A 429 arrived anyway: slow the whole fleet down."""
        reset_us = max(0.0, float(reset_after or 0)) * 1e6
        factor = self._throttle(keys=self._keys, args=[RECOVERY_PER_S, LOWEST_FACTOR, reset_us])
        self.factor = factor / 1000

    def recently_throttled(self) -> bool:
        """True while the fleet is still recovering from a 429."""
        return bool(self.redis.exists(self._keys[1]))


def budget_keys(name: str) -> list[str]:
    prefix = f"backfill:budget:{name}"
    return [f"{prefix}:sends", f"{prefix}:slow", f"{prefix}:paused", f"{prefix}:reserve"]


def hold_back(client: redis.Redis, name: str, slots: int, ttl_s: float = 30.0) -> None:
    """Keep `slots` sends for the first timeframe's series of a run being dispatched."""
    key = budget_keys(name)[3]
    if slots > 0:
        client.set(key, slots, px=int(ttl_s * 1000))
    else:
        client.delete(key)


def _lua(name: str) -> str:
    return resources.files("workers").joinpath(name).read_text()
