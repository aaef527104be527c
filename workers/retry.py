"""What a failed series does next: retry after N seconds, or end with a failed outcome.

A pure function of the error, the attempt and the policy, so every branch is a unit test
(tests/unit/test_retry.py); the task body only carries the decision out. The classes
follow the error tree in `core.errors`: retryable errors (and a lost Redis, and the
task's soft time limit) are retried with backoff until `max_retries`; permanent ones end
the series at once with a reason `status` and the summary show.

`CircuitOpen` is not the series' failure but the fleet's breaker (no request was made):
its retry waits at least the breaker's remaining cool-down (`retry_after`), and it does
not spend the series' retry budget but one of its own (`max_circuit_waits`), so other
products tripping the breaker cannot fail a healthy series that never asked. A failed
outcome reports the series' own last exchange error, not the breaker (`reported_error`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import redis
from celery.exceptions import SoftTimeLimitExceeded

from core import defaults
from core.errors import (
    AuthError,
    BackfillError,
    CacheContractError,
    CircuitOpen,
    InvalidCandle,
    InvalidInput,
    PermanentError,
    RateLimited,
    RetryableError,
)
from core.text import clean_text

RETRY_BASE_S = 1.0
NON_EXCHANGE_RETRY_S = 1.0  # a lost Redis, a soft time limit: try again soon
MAX_CIRCUIT_WAITS = 30  # waits on an open breaker per series (each one cool-down at least)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = defaults.MAX_RETRIES
    retry_max_s: float = defaults.RETRY_MAX_S  # below the broker's visibility timeout
    max_circuit_waits: int = MAX_CIRCUIT_WAITS  # apart from max_retries


@dataclass(frozen=True)
class Retry:
    countdown: float
    auth_retried: bool = False  # this retry is the one allowed after a 401 under load
    circuit_wait: bool = False  # a wait on the open breaker: not one of the series' retries


@dataclass(frozen=True)
class Fail:
    reason: str  # what the outcome and `status` say


def retry_countdown(
    retries: int,
    error: BaseException,
    retry_max_s: float = defaults.RETRY_MAX_S,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Exponential backoff with full jitter, at least the exchange's reset time, capped
    at `retry_max_s` (a countdown is a message the worker holds unacked)."""
    if not isinstance(error, BackfillError):
        return min(NON_EXCHANGE_RETRY_S, retry_max_s)
    backoff = uniform(0, min(retry_max_s, RETRY_BASE_S * 2**retries))
    if isinstance(error, RateLimited) and error.reset_after:
        backoff = max(backoff, min(retry_max_s, error.reset_after))
    return max(0.2, backoff)


def circuit_countdown(
    error: CircuitOpen,
    retry_max_s: float = defaults.RETRY_MAX_S,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """At least the breaker's remaining cool-down (its `retry_after`), plus a little jitter
    so the waiting series do not all ask at one instant; capped at `retry_max_s`."""
    wait = error.retry_after if error.retry_after is not None else RETRY_BASE_S
    wait = max(0.0, wait)
    return min(retry_max_s, max(0.2, wait + uniform(0, min(1.0, wait / 4))))


def decide(
    error: BaseException,
    attempt: int,
    policy: RetryPolicy,
    *,
    throttled: bool = False,
    auth_retried: bool = False,
    circuit_waits: int = 0,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Retry | Fail:
    """`attempt`: the series' retries already made, waits on the breaker not counted;
    `circuit_waits`: those waits. `throttled`: the fleet is recovering from a 429
    (Coinbase has answered 401 under load where it meant 429: one retry, then believe it).
    """
    if isinstance(error, CircuitOpen):
        if circuit_waits < policy.max_circuit_waits:
            return Retry(circuit_countdown(error, policy.retry_max_s, uniform), circuit_wait=True)
        return Fail("circuit_open")
    if isinstance(error, AuthError):
        if throttled and not auth_retried:
            return Retry(retry_countdown(attempt, error, policy.retry_max_s, uniform), True)
        return Fail("auth")
    if isinstance(error, RetryableError | redis.RedisError | SoftTimeLimitExceeded):
        if attempt < policy.max_retries:
            return Retry(retry_countdown(attempt, error, policy.retry_max_s, uniform))
        return Fail("retries_exhausted")
    if isinstance(error, PermanentError):
        return Fail(type(error).__name__)
    if isinstance(error, InvalidInput):
        return Fail("config")
    if isinstance(error, InvalidCandle):
        return Fail("invalid_candle")
    if isinstance(error, CacheContractError):
        return Fail("cache_contract")
    return Fail("unexpected")


def last_exchange_error(error: BaseException, previous: str | None) -> str | None:
    """What the series' own last failure said: this error's text, unless it is the breaker
    (no request made), which keeps the previous one."""
    if isinstance(error, CircuitOpen):
        return previous
    return clean_text(f"{type(error).__name__}: {error}")


def reported_error(error: BaseException, last_error: str | None) -> str:
    """A failed outcome's error: the series' own last exchange error where the final
    attempt only met the open breaker, else the final error."""
    if isinstance(error, CircuitOpen) and last_error:
        return last_error
    return clean_text(f"{type(error).__name__}: {error}")
