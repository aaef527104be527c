"""The shared-memory parts behave as their one-process counterparts (in one process)."""

from __future__ import annotations

import ctypes
import random

import pytest

from coinbase_sim.config import ConfigError, settings_from
from coinbase_sim.limits import RateLimiter, Stats
from coinbase_sim.market import Market
from coinbase_sim.pages import PageCache
from coinbase_sim.shared_control import SharedDocument, SharedSettingsStore
from coinbase_sim.shared_faults import SharedFaultInjector
from coinbase_sim.shared_limits import SharedRateLimiter, SharedStats
from coinbase_sim.shared_walks import SharedWalks
from coinbase_sim.slots import SlotTable


class _Count(ctypes.Structure):
    _fields_ = [("value", ctypes.c_int64)]


def test_slot_table_claims_finds_clears_and_fills() -> None:
    table = SlotTable(4, _Count)
    with table.lock:
        table.get("a").value = 3
        table.get("b").value = 4
        assert table.get("a").value == 3
        assert [(n, c.value) for n, c in table.items()] == [("a", 3), ("b", 4)]
        table.get("c"), table.get("d")
        assert table.get("e") is None  # full: new names are dropped
        table.clear()
        assert list(table.items()) == []
        assert table.get("b").value == 0  # re-claimed slots start at zero


def test_shared_limiter_decides_like_the_local_one() -> None:
    local, shared = RateLimiter(), SharedRateLimiter()
    times = [0.0, 0.1, 0.2, 0.3, 1.05, 1.06, 1.07, 2.5, 2.5, 2.6]
    for t in times:
        assert shared.check("k", 3, True, now=t) == local.check("k", 3, True, now=t)
    assert shared.check("k", 3, False, now=2.7) == local.check("k", 3, False, now=2.7)
    shared.reset()
    assert shared.check("k", 3, True, now=2.8).remaining == 2


def test_shared_stats_snapshot_matches_local_stats() -> None:
    local, shared = Stats(), SharedStats()
    for stats in (local, shared):
        for t in (0.0, 0.5, 0.99, 1.0, 1.2, 1.98, 2.5):
            stats.arrival("public", "BTC-USD:ONE_HOUR")
            stats.identity("ip:x", now=t)
        stats.arrival("private", "ETH-USD:ONE_DAY")
        stats.response("200", candles=300)
        stats.response("429", fault="p429")
        stats.response("timeout", fault="ptimeout")
    assert shared.snapshot() == local.snapshot()
    assert shared.snapshot()["max_requests_in_any_second"] == {"ip:x": 4}
    shared.reset()
    assert shared.snapshot() == Stats().snapshot()


def test_shared_faults_reproducible_with_the_configured_shares() -> None:
    settings = settings_from(p500=0.2, p503=0.1, latency_ms=[10, 20])
    faults = SharedFaultInjector(3)
    first = [faults.draw(settings) for _ in range(2000)]
    delays = [faults.latency_s(settings) for _ in range(10)]
    faults.reset()
    assert [faults.draw(settings) for _ in range(2000)] == first
    assert [faults.latency_s(settings) for _ in range(10)] == delays
    assert all(0.010 <= d <= 0.020 for d in delays)
    assert 0.17 < first.count("p500") / 2000 < 0.23
    assert 0.07 < first.count("p503") / 2000 < 0.13
    assert [faults.html_429() for _ in range(3)] == [True, False, True]


def test_shared_settings_store_validates_and_shares() -> None:
    settings = settings_from(processes=2)
    document = SharedDocument(settings.public())
    one, two = SharedSettingsStore(settings, document), SharedSettingsStore(settings, document)
    one.update({"clock_offset_s": -60, "latency_ms": [1, 2]})
    assert two.current.clock_offset_s == -60 and two.current.latency_ms == (1.0, 2.0)
    with pytest.raises(ConfigError):
        two.update({"p500": 0.8, "p503": 0.8})
    with pytest.raises(ConfigError):
        two.update({"processes": 3})
    assert one.current.p500 == 0.0


@pytest.mark.parametrize("granularity", [60, 300, 3600, 14400, 86400])
def test_page_cache_bytes_equal_market_render(granularity: int) -> None:
    """Same calls in the same order: identical bodies, in-progress bucket included."""
    cached, plain = Market(4), Market(4)
    pages = PageCache(cached, 1 << 20)
    rng = random.Random(granularity)
    now = 1_700_000_000.5
    for _ in range(60):
        last = int(now) - rng.randrange(0, 40) * granularity - rng.randrange(granularity)
        first = last - rng.randrange(0, 300) * granularity + rng.randrange(-5, 5)
        limit = rng.choice([None, None, 1, 2, 50])
        product = rng.choice(["BTC-USD", "SHIB-USD"])
        for _repeat in range(2):  # the second time from the cache
            body, count = pages.render(product, granularity, first, last, limit, now)
            candles = plain.candles(product, granularity, first, last, now)[:limit]
            assert body == plain.render(product, candles).encode()
            assert count == len(candles)
            now += rng.random()
    assert pages.hits > 0


def test_page_cache_stays_within_its_budget() -> None:
    pages = PageCache(Market(4), 100_000)
    for day in range(20):
        end = 1_600_000_000 + day * 86400 * 300
        pages.render("BTC-USD", 3600, end - 299 * 3600, end, None, 1_700_000_000.0)
    assert 0 < pages._bytes <= 100_000


def test_shared_walks_computed_once_and_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SharedWalks(list(Market(4).products))
    first, plain = Market(4, walks=store), Market(4)
    args = ("ETH-USD", 86400, 1_600_000_000, 1_600_000_000 + 299 * 86400, 1_700_000_000.0)
    assert first.candles(*args) == plain.candles(*args)
    second = Market(4, walks=store)
    monkeypatch.setattr(second, "_compute_walk", lambda product_id: pytest.fail("recomputed"))
    assert second.candles(*args) == plain.candles(*args)
