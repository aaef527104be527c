"""Market data: determinism, cross-granularity consistency, gaps, the in-progress bucket."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from sim_support import Sim

from coinbase_sim.market import GRANULARITIES, Market
from coinbase_sim.products import CATALOG
from coinbase_sim.server import make_server, serve_in_thread

DAY = 86400
REQUIRED = (
    "BTC-USD",
    "ETH-USD",
    "SOL-USD",
    "XRP-USD",
    "ADA-USD",
    "DOGE-USD",
    "AVAX-USD",
    "LINK-USD",
    "DOT-USD",
    "LTC-USD",
    "BCH-USD",
    "POL-USD",
    "UNI-USD",
    "ATOM-USD",
    "XLM-USD",
    "ETC-USD",
    "FIL-USD",
    "AAVE-USD",
    "ALGO-USD",
    "NEAR-USD",
    "APT-USD",
    "ARB-USD",
    "OP-USD",
    "SHIB-USD",
    "ICP-USD",
)


def _aggregate(children: list[dict[str, str]], start: int) -> dict[str, Decimal] | None:
    """O/H/L/C/V of present children given newest first, as Decimals."""
    if not children:
        return None
    oldest_first = children[::-1]
    return {
        "start": Decimal(start),
        "open": Decimal(oldest_first[0]["open"]),
        "high": max(Decimal(c["high"]) for c in children),
        "low": min(Decimal(c["low"]) for c in children),
        "close": Decimal(oldest_first[-1]["close"]),
        "volume": sum((Decimal(c["volume"]) for c in children), Decimal(0)),
    }


def _decimals(candle: dict[str, str]) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in candle.items()}


def test_catalog_has_required_products_and_illiquid_ones() -> None:
    ids = {p.product_id for p in CATALOG}
    assert len(ids) >= 50
    assert set(REQUIRED) <= ids
    assert "DUST-USD" in ids


def test_same_seed_same_truth_and_different_seed_differs() -> None:
    end = int(time.time()) - 2 * DAY
    start = end - 3 * DAY
    servers = [make_server("127.0.0.1", 0, seed=s) for s in (3, 3, 4)]
    try:
        for server in servers:
            serve_in_thread(server)
        import requests

        bodies = [
            requests.get(
                f"{server.url}/_sim/truth/ETH-USD",
                params={"granularity": "FIVE_MINUTE", "start": start, "end": end},
                timeout=10,
            ).json()["candles"]
            for server in servers
        ]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert len(bodies[0]) > 800
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


@pytest.mark.parametrize("product", ["BTC-USD", "ATOM-USD", "SAND-USD", "DUST-USD"])
def test_every_granularity_is_the_aggregate_of_every_finer_one(sim: Sim, product: str) -> None:
    now = int(time.time())
    start = (now // DAY - 4) * DAY
    end = start + 2 * DAY - 1  # two whole days
    truth = {g: sim.truth(product, g, start, end) for g in GRANULARITIES}
    assert truth["ONE_MINUTE"], "some minute traded"
    for fine, fine_s in GRANULARITIES.items():
        for coarse, coarse_s in GRANULARITIES.items():
            if coarse_s <= fine_s or coarse_s % fine_s:
                continue
            by_bucket: dict[int, list[dict[str, str]]] = {}
            for candle in truth[fine]:
                bucket = int(candle["start"]) // coarse_s * coarse_s
                by_bucket.setdefault(bucket, []).append(candle)
            expected = [_aggregate(by_bucket[b], b) for b in sorted(by_bucket, reverse=True)]
            got = [_decimals(c) for c in truth[coarse]]
            assert got == expected, f"{product} {coarse} != aggregate of {fine}"
    for granularity, seconds in GRANULARITIES.items():
        starts = [int(c["start"]) for c in truth[granularity]]
        assert starts == sorted(starts, reverse=True)
        assert all(s % seconds == 0 for s in starts)
        for c in truth[granularity]:
            low, high = Decimal(c["low"]), Decimal(c["high"])
            assert low <= min(Decimal(c["open"]), Decimal(c["close"]))
            assert high >= max(Decimal(c["open"]), Decimal(c["close"]))
            assert Decimal(c["volume"]) > 0
            assert len(c["volume"].split(".")[1]) == 8
    assert {int(c["start"]) % DAY for c in truth["FOUR_HOUR"]} <= {
        h * 3600 for h in range(0, 24, 4)
    }


def test_liquid_products_have_every_bucket(sim: Sim) -> None:
    end = int(time.time()) // 300 * 300 - 300
    candles = sim.truth("BTC-USD", "ONE_MINUTE", end - 299 * 60, end)
    assert len(candles) == 300


def test_dust_is_very_illiquid(sim: Sim) -> None:
    now = int(time.time())
    last_6h = sim.truth("DUST-USD", "FIVE_MINUTE", now - 6 * 3600, now)
    assert len(last_6h) < 60
    week = sim.truth("DUST-USD", "FIVE_MINUTE", now - 7 * DAY, now)
    newest_100 = week[:100]
    span_buckets = (int(newest_100[0]["start"]) - int(newest_100[-1]["start"])) // 300 + 1
    assert span_buckets > 300, "100 candles span far more than 100 bucket widths"
    hours = sim.truth("DUST-USD", "ONE_HOUR", now - 10 * DAY, now - DAY)
    assert 0.2 * 216 < len(hours) < 0.8 * 216, "many hours are absent"


def test_in_progress_bucket_changes_between_calls_and_is_not_truth(sim: Sim) -> None:
    now = int(time.time())
    for granularity in ("ONE_MINUTE", "ONE_HOUR", "ONE_DAY"):
        seconds = GRANULARITIES[granularity]
        current = now // seconds * seconds
        params = {"granularity": granularity, "start": now - 10 * seconds, "end": now + 2 * seconds}
        first = sim.public("BTC-USD", **params).json()["candles"]
        second = sim.public("BTC-USD", **params).json()["candles"]
        if int(first[0]["start"]) != current or int(second[0]["start"]) != current:
            continue  # crossed a bucket boundary between the calls; rare
        assert first[0] != second[0], granularity
        assert first[1:] == second[1:]
        truth = sim.truth("BTC-USD", granularity, now - 10 * seconds, now + 2 * seconds)
        assert int(truth[0]["start"]) == current - seconds
        assert truth == second[1:]


def test_in_progress_bucket_reflects_elapsed_minutes(sim: Sim) -> None:
    now = int(time.time())
    hour = now // 3600 * 3600
    live = sim.public("BTC-USD", granularity="ONE_HOUR", start=hour, end=hour)
    minutes = sim.truth("BTC-USD", "ONE_MINUTE", hour, now)
    candle = live.json()["candles"][0]
    if minutes and int(candle["start"]) == hour:
        assert candle["open"] == minutes[-1]["open"]
        assert Decimal(candle["high"]) >= max(Decimal(m["high"]) for m in minutes)
        assert Decimal(candle["volume"]) > sum(Decimal(m["volume"]) for m in minutes)


def test_clock_offset_moves_now(sim: Sim) -> None:
    now = int(time.time())
    sim.configure(clock_offset_s=-10800)
    params = {"granularity": "ONE_MINUTE", "start": now - 4 * 3600, "end": now}
    past = sim.public("BTC-USD", **params).json()["candles"]
    assert now - 10800 - 60 <= int(past[0]["start"]) <= now - 10800
    assert not sim.truth("BTC-USD", "ONE_MINUTE", now - 10800, now)
    sim.configure(clock_offset_s=0)
    caught_up = sim.public("BTC-USD", **params).json()["candles"]
    assert int(caught_up[0]["start"]) >= now - 60


def test_market_answers_a_full_page_again_after_warm_up() -> None:
    """The same page twice is the same page (the speed of it is `python -m bench`'s
    `sim_page_ms`)."""
    market = Market(seed=11)
    now = time.time()
    end = int(now)
    for granularity in (86400, 60, 14400):
        first = market.candles("BTC-USD", granularity, end - 300 * granularity, end, now)
        again = market.candles("BTC-USD", granularity, end - 300 * granularity, end, now)
        assert [c.start for c in again] == [c.start for c in first] and len(again) >= 300
        closed = [c for c in first if c.start + granularity <= now]
        assert closed and [c for c in again if c.start + granularity <= now] == closed


def test_synthetic_products_are_deterministic_and_served() -> None:
    from coinbase_sim.config import ConfigError, SettingsStore, settings_from
    from coinbase_sim.products import catalog, synthetic_products

    assert synthetic_products(3) == synthetic_products(3)
    assert [p.product_id for p in synthetic_products(2)] == ["SYN0001-USD", "SYN0002-USD"]
    assert len(catalog(500)) == len(CATALOG) + 500
    store = SettingsStore(settings_from(synthetic_products=5))
    store.update({"synthetic_products": 5})  # restating a fixed setting is allowed
    with pytest.raises(ConfigError):
        store.update({"synthetic_products": 6})
