"""Argument validation and error bodies, exactly as the exchange sends them."""

from __future__ import annotations

import time

import pytest
from sim_support import Sim

HOUR = 3600


def _invalid(message: str) -> dict[str, str]:
    return {"error": "INVALID_ARGUMENT", "error_details": message, "message": message}


def test_candle_shape_all_strings_newest_first(sim: Sim) -> None:
    end = int(time.time()) // HOUR * HOUR - 10 * HOUR
    response = sim.public("ETH-USD", granularity="ONE_HOUR", start=end - 5 * HOUR, end=end)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    candles = response.json()["candles"]
    assert [int(c["start"]) for c in candles] == [end - i * HOUR for i in range(6)]
    for candle in candles:
        assert list(candle) == ["start", "low", "high", "open", "close", "volume"]
        assert all(isinstance(v, str) for v in candle.values())


@pytest.mark.parametrize(
    ("cap", "buckets", "status"),
    [(300, 300, 200), (300, 301, 400), (350, 350, 200), (350, 351, 400)],
)
def test_span_cap(sim: Sim, cap: int, buckets: int, status: int) -> None:
    sim.configure(cap=cap)
    end = int(time.time()) // HOUR * HOUR - 400 * HOUR
    response = sim.public("BTC-USD", granularity="ONE_HOUR", start=end - buckets * HOUR, end=end)
    assert response.status_code == status
    if status == 400:
        assert response.json() == _invalid(f"number of candles requested should be less than {cap}")


def test_limit_truncates_to_newest_and_is_capped(sim: Sim) -> None:
    end = int(time.time()) // HOUR * HOUR - 50 * HOUR
    response = sim.public(
        "BTC-USD", granularity="ONE_HOUR", start=end - 20 * HOUR, end=end, limit=5
    )
    assert [int(c["start"]) for c in response.json()["candles"]] == [
        end - i * HOUR for i in range(5)
    ]
    too_many = sim.public("BTC-USD", granularity="ONE_HOUR", start=end - HOUR, end=end, limit=301)
    assert too_many.status_code == 400


def test_unknown_product_404(sim: Sim) -> None:
    now = int(time.time())
    for response in (
        sim.public("NOPE-USD", granularity="ONE_HOUR", start=now - 10 * HOUR, end=now),
        sim.private("NOPE-USD", granularity="ONE_HOUR", start=now - 10 * HOUR, end=now),
    ):
        assert response.status_code == 404
        assert response.json() == {
            "error": "NOT_FOUND",
            "error_details": "valid product_id is required",
            "message": "valid product_id is required",
        }


def test_bad_granularity_400(sim: Sim) -> None:
    now = int(time.time())
    response = sim.public("BTC-USD", granularity="TEN_MINUTE", start=now - 10 * HOUR, end=now)
    assert response.status_code == 400
    assert response.json() == _invalid(
        'parsing field "granularity": "TEN_MINUTE" is not a valid value'
    )


def test_four_hour_switch(sim: Sim) -> None:
    now = int(time.time())
    params = {"granularity": "FOUR_HOUR", "start": now - 40 * HOUR, "end": now}
    assert sim.public("BTC-USD", **params).status_code == 200
    sim.configure(four_hour=False)
    response = sim.public("BTC-USD", **params)
    assert response.status_code == 400
    assert response.json() == _invalid(
        'parsing field "granularity": "FOUR_HOUR" is not a valid value'
    )
    assert sim.private("BTC-USD", **params).status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"granularity": "ONE_HOUR", "end": "1700000000"},
        {"granularity": "ONE_HOUR", "start": "1700000000"},
        {"granularity": "ONE_HOUR", "start": "abc", "end": "1700000000"},
        {"granularity": "ONE_HOUR", "start": "1700003600", "end": "1700000000"},
    ],
)
def test_missing_or_invalid_start_end_400(sim: Sim, params: dict[str, str]) -> None:
    response = sim.public("BTC-USD", **params)
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_ARGUMENT"


def test_future_buckets_are_not_returned(sim: Sim) -> None:
    now = int(time.time())
    response = sim.public("BTC-USD", granularity="ONE_HOUR", start=now - HOUR, end=now + 100 * HOUR)
    starts = [int(c["start"]) for c in response.json()["candles"]]
    assert starts and max(starts) <= now


def test_control_plane(sim: Sim) -> None:
    assert sim.session.get(sim.url + "/_sim/health").status_code == 200
    products = sim.session.get(sim.url + "/_sim/products").json()["products"]
    assert len(products) >= 50
    config = sim.configure(latency_ms=[1, 2], p500=0.1)
    assert config["latency_ms"] == [1.0, 2.0]
    assert sim.session.get(sim.url + "/_sim/config").json()["p500"] == 0.1
    refused = sim.session.post(sim.url + "/_sim/config", json={"cap": 351})
    assert refused.status_code == 400
    assert sim.session.post(sim.url + "/_sim/config", json={"nope": 1}).status_code == 400
    assert sim.session.get(sim.url + "/elsewhere").status_code == 404
