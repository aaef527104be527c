"""A fleet-wide circuit breaker: while the exchange keeps failing, stop asking it.

After `failures` consecutive failures that say the exchange is down (5xx, timeouts,
dropped connections, 429s; not a malformed answer) anywhere in the fleet, spanning at
least two series, the breaker opens: no worker sends a request for `cooldown_s`; then one probe
goes out; success closes it, failure opens it again. A series that failed since the last
success (maybe only its own product is bad) probes only a cool-down after the others, so a
few bad products cannot hold the breaker open against healthy series. State lives in Redis
(one hash per exchange budget), so every worker and every task family sees the same
breaker, and the transitions are logged once (`breaker_open`, `breaker_closed`).

`check` says until when: its `CircuitOpen` carries `retry_after` (seconds), and the retry
decision (workers/retry.py) waits at least that long, on a budget of its own.
"""

from __future__ import annotations

import logging
import threading

import redis

from core import defaults, keys
from core.errors import CircuitOpen, InvalidResponse, RateLimited, TransientError
from core.logs import log_event
from workers.lua import LuaScript

log = logging.getLogger("backfill.breaker")
CLEAN = 2  # `allow`'s verdict: go, and no failure is recorded for a success to reset


class Breaker:
    def __init__(
        self,
        client: redis.Redis,
        budget_name: str,
        *,
        failures: int = defaults.BREAKER_FAILURES,
        cooldown_s: float = defaults.BREAKER_COOLDOWN_S,
    ) -> None:
        self.redis = client
        self.keys = keys.breaker(budget_name)
        self.failures = failures
        self.cooldown_ms = int(cooldown_s * 1000)
        self._script = LuaScript(client, "breaker.lua")
        self._local = threading.local()  # what this thread's last `check` found

    def _call(self, op: str, series: str = "") -> tuple[int, str, int]:
        verdict, transition, wait_ms = self._script(
            self.keys, op=op, threshold=self.failures, cooldown=self.cooldown_ms, series=series
        )
        transition = transition.decode() if isinstance(transition, bytes) else transition
        if transition == "opened":
            log_event(log, "breaker_open", level=logging.WARNING, failures=self.failures,
                      cooldown_s=self.cooldown_ms / 1000)  # fmt: skip
        elif transition == "closed":
            log_event(log, "breaker_closed")
        return int(verdict), transition, int(wait_ms)

    def check(self, product: str = "", timeframe: str = "") -> None:
        """Raise `CircuitOpen` (retryable, no request made) while the breaker is open for
        this series; its `retry_after` is how long until it may ask (or probe)."""
        series = f"{product}:{timeframe}" if product and timeframe else ""
        allowed, _, wait_ms = self._call("allow", series)
        self._local.clean = allowed == CLEAN
        if not allowed:
            raise CircuitOpen(
                "the exchange keeps failing: circuit breaker open, not asking",
                product=product,
                timeframe=timeframe,
                retry_after=wait_ms / 1000,
            )

    def success(self) -> None:
        """Reset the failure count (closing an open breaker); skipped after a `check` that
        found nothing to reset (one round trip less per series on a healthy exchange; a
        failure elsewhere in between is reset by the next series that sees it)."""
        if getattr(self._local, "clean", False):
            self._local.clean = False
            return
        self._call("success")

    def failure(self, series: str) -> None:
        self._local.clean = False
        self._call("failure", series)


def counts_against_exchange(error: BaseException) -> bool:
    """Failures that say the exchange is down; a malformed or oversized answer, a budget
    wait or the breaker itself do not."""
    return isinstance(error, RateLimited | TransientError) and not isinstance(
        error, InvalidResponse
    )
