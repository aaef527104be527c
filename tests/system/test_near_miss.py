"""The exchange's own count slows the fleet before it says 429: a second client on the same
key (or sends bunched on the way) shows in `x-ratelimit-remaining`, and the budget reacts.
Real HTTP to the simulator, a real redis-server for the budget."""

from __future__ import annotations

import time

import pytest
import redis

from core.credentials import read_key_file
from core.timeframe import timeframe
from workers.budget import FleetBudget
from workers.coinbase.client import CoinbaseClient
from workers.exchange import clock

H1 = timeframe("1h")


def test_another_client_on_the_key_slows_the_fleet_before_any_429(sim, key_file, redis_url):
    creds = read_key_file(key_file)
    end = H1.last_closed_start(time.time())
    rclient = redis.Redis.from_url(redis_url)
    ours = CoinbaseClient(sim.url, creds, budget=FleetBudget(rclient, "near-miss", 10.0))
    ours.get_candles("BTC-USD", H1, end, end)  # alone on the key: within the plan
    assert ours.budget.factor == 1.0 and not ours.budget.recently_throttled()
    foreign = CoinbaseClient(sim.url, creds)  # not ours: no budget
    for _ in range(12):
        foreign.get_candles("ETH-USD", H1, end, end)
    ours.get_candles("BTC-USD", H1, end, end)  # the exchange now counts 14 in its second
    assert ours.budget.factor == pytest.approx(0.8, abs=0.01)
    assert ours.budget.recently_throttled()
    assert sim.stats()["responses_by_status"] == {"200": 14}  # and no 429 on the way


def test_the_public_endpoint_sends_no_count_and_changes_nothing(sim, redis_url):
    end = H1.last_closed_start(time.time())
    budget = FleetBudget(redis.Redis.from_url(redis_url), "public-near-miss", 2.0)
    client = CoinbaseClient(sim.url, budget=budget)
    for _ in range(3):
        client.get_candles("BTC-USD", H1, end, end)
    assert budget.factor == 1.0


@pytest.mark.parametrize(
    ("limit", "remaining", "want"),
    [
        ("30", "3", (27, 30)),
        (" 30 ", "30", (0, 30)),
        ("30", "31", None),  # more remaining than the limit
        ("30", "-1", None),
        ("0", "0", None),
        ("1e9", "0", None),
        ("99999999999999", "0", None),
        ("30", "nan", None),
        ("30", None, None),
        (None, "3", None),
        ("3" * 5000, "3", None),
        ("<script>", "3", None),
        ("3_0", "3", None),
        ("30", "\u0663", None),
    ],
)
def test_only_sane_counts_are_believed(limit, remaining, want):
    assert clock.window_count(limit, remaining) == want
