"""The fleet's circuit breaker against a real Redis: when it opens, probes and closes."""

from __future__ import annotations

import logging

import pytest
from helpers import wait_until

from core.errors import CircuitOpen, InvalidResponse, RateLimited, TransientError
from workers.breaker import Breaker, counts_against_exchange


def probe_allowed(br: Breaker) -> bool:
    """The breaker lets this caller ask the exchange (closed, or its one probe)."""
    try:
        br.check()
    except CircuitOpen:
        return False
    return True


def test_opens_after_repeated_failures_across_series_and_stops_everyone(rclient):
    a = Breaker(rclient, "b1", failures=3, cooldown_s=30)
    b = Breaker(rclient, "b1", failures=3, cooldown_s=30)  # another worker, same exchange
    a.check()
    a.failure("BTC-USD:5m")
    a.failure("BTC-USD:5m")
    b.check()  # two failures: still closed
    b.failure("ETH-USD:5m")
    for breaker in (a, b):
        with pytest.raises(CircuitOpen):
            breaker.check("SOL-USD", "5m")


def test_one_failing_series_never_opens_it(rclient):
    br = Breaker(rclient, "b2", failures=3, cooldown_s=30)
    for _ in range(10):
        br.failure("GHOST-USD:5m")
    br.check()


def test_a_success_resets_the_count(rclient):
    br = Breaker(rclient, "b3", failures=3, cooldown_s=30)
    br.failure("BTC-USD:5m")
    br.failure("ETH-USD:5m")
    br.success()
    br.failure("BTC-USD:5m")
    br.failure("ETH-USD:5m")
    br.check()


def test_after_the_cool_down_one_probe_then_success_closes(rclient, caplog):
    caplog.set_level(logging.INFO)
    br = Breaker(rclient, "b4", failures=2, cooldown_s=0.3)
    br.failure("BTC-USD:5m")
    br.failure("ETH-USD:5m")
    with pytest.raises(CircuitOpen):
        br.check()

    wait_until(lambda: probe_allowed(br), 5, "the cool-down to end")
    with pytest.raises(CircuitOpen):  # only one probe at a time
        br.check()
    br.success()
    br.check()
    br.check()
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("breaker_open") == 1 and events.count("breaker_closed") == 1


def test_a_failed_probe_opens_it_again(rclient):
    br = Breaker(rclient, "b5", failures=2, cooldown_s=0.3)
    br.failure("BTC-USD:5m")
    br.failure("ETH-USD:5m")

    wait_until(lambda: probe_allowed(br), 5, "the cool-down to end")
    br.failure("BTC-USD:5m")
    with pytest.raises(CircuitOpen):
        br.check()


def test_what_counts_against_the_exchange():
    assert counts_against_exchange(TransientError("503", status=503))
    assert counts_against_exchange(RateLimited("429", status=429))
    assert not counts_against_exchange(InvalidResponse("bad shape", status=200))
    assert not counts_against_exchange(CircuitOpen("open"))
