"""Retry countdowns (README, "The request budget" and "When ... the exchange fails"):
exponential backoff with full jitter, at least the exchange's reset time, and never as long
as the broker's visibility timeout (a countdown is a message the worker holds unacked)."""

from __future__ import annotations

import random

import pytest

from core.errors import RateLimited, TransientError
from core.settings import load_settings
from workers.resources import WorkerResources
from workers.retry import retry_countdown

DRAWS = 400


def draws(retries: int, error, retry_max_s: float) -> list[float]:
    random.seed(retries)  # reproducible; the bounds below hold for any draw
    return [retry_countdown(retries, error, retry_max_s) for _ in range(DRAWS)]


@pytest.mark.parametrize("reset_after", [0.7, 3.0, 12.5])
def test_a_429_waits_at_least_the_reset_time(reset_after):
    error = RateLimited("429", reset_after=reset_after, status=429)
    for retries in (0, 1, 3):
        got = draws(retries, error, 60.0)
        assert min(got) >= reset_after  # the exchange said when: never earlier


def test_reset_time_beyond_the_cap_is_capped():
    error = RateLimited("429", reset_after=500.0, status=429)
    assert max(draws(0, error, 20.0)) <= 20.0


@pytest.mark.parametrize("retries", [0, 2, 5, 9, 30])
def test_backoff_is_exponential_with_full_jitter_and_capped(retries):
    cap = 20.0
    got = draws(retries, TransientError("503", status=503), cap)
    ceiling = min(cap, 1.0 * 2**retries)
    assert all(0 < c <= ceiling for c in got)
    # full jitter: spread over (0, ceiling], not pinned to it or to the floor
    assert min(got) < 0.35 * ceiling + 0.2 and max(got) > 0.65 * ceiling


@pytest.mark.parametrize(
    "visibility_s,cap_s",
    [(900, 60.0), (120, 40.0), (8, 8 / 3), (3, 2.0)],
)
def test_countdown_cap_stays_below_the_visibility_timeout(visibility_s, cap_s):
    res = WorkerResources(load_settings(backfill_visibility_timeout_s=visibility_s)).get()
    assert res.retry_max_s == pytest.approx(cap_s)
    assert res.retry_max_s < visibility_s
    # whatever happened, the countdown a task asks for is below the visibility timeout
    worst = [
        *draws(40, TransientError("timeout"), res.retry_max_s),
        *draws(0, RateLimited("429", reset_after=10_000.0, status=429), res.retry_max_s),
    ]
    assert max(worst) <= res.retry_max_s < visibility_s
    # and so is the time a task may wait for a budget slot (it holds its message meanwhile)
    for name in ("coinbase", "binance"):
        assert res.exchange(name)[1].max_wait_s <= res.retry_max_s


# --- the decision: every error class, every branch ------------------------------------------

from celery.exceptions import SoftTimeLimitExceeded  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402

from core.errors import (  # noqa: E402
    AuthError,
    BadRequest,
    BudgetTimeout,
    CircuitOpen,
    InvalidCandle,
    InvalidInput,
    InvalidResponse,
    NotFound,
)
from workers.retry import Fail, Retry, RetryPolicy, decide  # noqa: E402

POLICY = RetryPolicy(max_retries=3, retry_max_s=20.0)


def top(lo: float, hi: float) -> float:
    """A deterministic 'random' draw: the top of the jitter range."""
    return hi


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("429", status=429),
        TransientError("503", status=503),
        InvalidResponse("not json"),
        BudgetTimeout("no slot"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_retryable_exchange_errors_back_off_until_max_retries(error):
    assert decide(error, 0, POLICY, uniform=top) == Retry(1.0)
    assert decide(error, 2, POLICY, uniform=top) == Retry(4.0)
    assert decide(error, 3, POLICY, uniform=top) == Fail("retries_exhausted")


def test_a_429_retry_waits_its_reset_capped():
    e = RateLimited("429", reset_after=7.5, status=429)
    assert decide(e, 0, POLICY, uniform=top) == Retry(7.5)
    e = RateLimited("429", reset_after=500.0, status=429)
    assert decide(e, 0, POLICY, uniform=top) == Retry(20.0)


@pytest.mark.parametrize(
    "error", [RedisConnectionError("gone"), SoftTimeLimitExceeded()], ids=lambda e: type(e).__name__
)
def test_a_lost_redis_or_the_soft_limit_retries_after_a_second(error):
    assert decide(error, 0, POLICY) == Retry(1.0)
    assert decide(error, 3, POLICY) == Fail("retries_exhausted")


def test_auth_error_is_retried_once_only_while_throttled():
    e = AuthError("401", status=401)
    assert decide(e, 0, POLICY) == Fail("auth")
    assert decide(e, 0, POLICY, throttled=True, uniform=top) == Retry(1.0, auth_retried=True)
    assert decide(e, 1, POLICY, throttled=True, auth_retried=True) == Fail("auth")


@pytest.mark.parametrize(
    "error,reason",
    [
        (NotFound("404", status=404), "NotFound"),
        (BadRequest("400", status=400), "BadRequest"),
        (InvalidInput("bad key"), "config"),
        (InvalidCandle("high < low"), "invalid_candle"),
        (KeyError("a bug"), "unexpected"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_permanent_errors_end_the_series_at_once(error, reason):
    assert decide(error, 0, POLICY, throttled=True) == Fail(reason)


# --- the fleet's breaker is open: wait it out, on a budget of its own ------------------------


def test_circuit_open_waits_at_least_the_breakers_remaining_cool_down():
    e = CircuitOpen("open", retry_after=7.0)
    for attempt in (0, 2, 3, 9):  # whatever the exchange retries spent: not from their budget
        d = decide(e, attempt, POLICY, uniform=top)
        assert isinstance(d, Retry) and d.circuit_wait
        assert 7.0 <= d.countdown <= 7.0 + 1.0


def test_circuit_open_countdown_is_jittered_and_capped_below_the_visibility_timeout():
    e = CircuitOpen("open", retry_after=0.0)
    assert decide(e, 0, POLICY, uniform=lambda lo, hi: lo) == Retry(0.2, circuit_wait=True)
    e = CircuitOpen("open", retry_after=500.0)
    assert decide(e, 0, POLICY, uniform=top) == Retry(20.0, circuit_wait=True)
    e = CircuitOpen("open")  # the breaker did not say: one base backoff
    assert decide(e, 0, POLICY, uniform=top).countdown == pytest.approx(1.0 + 0.25)


def test_circuit_waits_have_their_own_bound():
    policy = RetryPolicy(max_retries=3, retry_max_s=20.0, max_circuit_waits=4)
    e = CircuitOpen("open", retry_after=1.0)
    assert isinstance(decide(e, 0, policy, circuit_waits=3), Retry)
    assert decide(e, 0, policy, circuit_waits=4) == Fail("circuit_open")
    # the exchange retries are counted apart: waits spent do not exhaust them
    assert isinstance(decide(TransientError("503"), 0, policy, circuit_waits=4), Retry)


def test_a_failed_outcome_reports_the_series_own_last_exchange_error():
    from workers.retry import reported_error

    own = "TransientError: BAD-USD 5m status=503: unavailable"
    assert reported_error(CircuitOpen("open"), own) == own
    assert reported_error(CircuitOpen("open"), None).startswith("CircuitOpen: ")
    assert reported_error(TransientError("timeout"), own).startswith("TransientError: ")


def test_last_error_is_the_newest_exchange_error_never_the_breaker():
    from workers.retry import last_exchange_error

    e = TransientError("down", product="BAD-USD", timeframe="5m", status=503)
    assert last_exchange_error(e, None) == "TransientError: BAD-USD 5m status=503: down"
    assert last_exchange_error(CircuitOpen("open"), "before") == "before"
    assert last_exchange_error(CircuitOpen("open"), None) is None
