"""What a failed series does next: retry after N seconds, or end with a failed outcome.

A pure function of the error, the attempt and the policy, so every branch is a unit test
(tests/unit/test_retry.py); the task body only carries the decision out. The classes
follow the error tree in `core.errors`: retryable errors (and a lost Redis, and the
task's soft time limit) are retried with backoff until `max_retries`; permanent ones end
the series at once with a reason `status` and the summary show.
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
    InvalidCandle,
    InvalidInput,
    PermanentError,
    RateLimited,
    RetryableError,
)

RETRY_BASE_S = 1.0
NON_EXCHANGE_RETRY_S = 1.0  # a lost Redis, a soft time limit: try again soon


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = defaults.MAX_RETRIES
    retry_max_s: float = defaults.RETRY_MAX_S  # below the broker's visibility timeout


@dataclass(frozen=True)
class Retry:
    countdown: float
    auth_retried: bool = False  # this retry is the one allowed after a 401 under load


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


def decide(
    error: BaseException,
    attempt: int,
    policy: RetryPolicy,
    *,
    throttled: bool = False,
    auth_retried: bool = False,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Retry | Fail:
    """`attempt`: retries already made. `throttled`: the fleet is recovering from a 429
    (Coinbase has answered 401 under load where it meant 429: one retry, then believe it).
    """
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
    return Fail("unexpected")
