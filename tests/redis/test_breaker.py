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


def open_wait(br: Breaker, product: str = "", timeframe: str = "5m") -> float:
    with pytest.raises(CircuitOpen) as info:
        br.check(product, timeframe)
    return info.value.retry_after


def test_an_open_breaker_says_until_when(rclient):
    br = Breaker(rclient, "b6", failures=2, cooldown_s=30)
    br.failure("BTC-USD:5m")
    br.failure("ETH-USD:5m")
    wait = open_wait(br, "SOL-USD")
    assert 29 <= wait <= 30  # the rest of the cool-down, in seconds


def test_a_series_that_failed_on_its_own_leaves_the_probe_to_the_others(rclient):
    """Bad products trip it: a healthy series gets the probe after the cool-down (and its
    success closes the breaker); a series that failed since the last success waits one
    cool-down more, so the bad ones cannot keep it open by probing first."""
    br = Breaker(rclient, "b7", failures=2, cooldown_s=0.3)
    br.failure("BADA-USD:5m")
    br.failure("BADB-USD:5m")
    assert 0.6 - 0.05 <= open_wait(br, "BADA-USD") <= 0.6  # two cool-downs for a suspect
    assert open_wait(br, "GOOD-USD") <= 0.3
    wait_until(lambda: probe_allowed_for(br, "GOOD-USD"), 5, "the cool-down to end")
    br.success()
    br.check("BADA-USD", "5m")  # closed: everyone asks again


def test_with_only_suspects_left_a_probe_still_goes_out(rclient):
    br = Breaker(rclient, "b8", failures=2, cooldown_s=0.2)
    br.failure("BADA-USD:5m")
    br.failure("BADB-USD:5m")
    wait_until(lambda: probe_allowed_for(br, "BADA-USD"), 5, "a suspect's probe")
    assert open_wait(br, "BADB-USD") > 0  # one probe at a time
    br.failure("BADA-USD:5m")  # the probe failed: open again
    assert open_wait(br, "GOOD-USD") > 0.1


def probe_allowed_for(br: Breaker, product: str) -> bool:
    try:
        br.check(product, "5m")
    except CircuitOpen:
        return False
    return True
