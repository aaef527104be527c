"""The keeper derives the longer timeframes of a close from the finest one: real workers,
real Redis, the simulator over HTTP.

A real 1h close cannot be waited for, so each test makes the cache look as it does right
after one (as `python -m bench` does): filled natively first, then each series' newest
candle taken out again and its `checked` mark moved back one bucket; then one
`backfill.boundary` naming the timeframes, on the control queue, as beat sends it.
"""

from __future__ import annotations

import json

import pytest
import redis
from helpers import clear_of_close, wait_until

from backfill.app import app
from backfill.dispatch import dispatch
from backfill.freshness import freshness, prometheus
from backfill.gate import wait_ready
from core import keys
from core.config import BackfillConfig
from core.series import Series
from core.settings import load_settings

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


def fill(rclient: redis.Redis, redis_url: str, timeframes: tuple[str, ...], n: int = 100) -> None:
    config = BackfillConfig(symbols=SYMBOLS, timeframes=timeframes, candle_count=n)
    d = dispatch(config, redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.exit_code == 0, result.summary


def take_back(rclient: redis.Redis, series: Series, n: int = 1) -> list[tuple[bytes, float]]:
    """Remove the series' newest n members and move its checked mark back before them."""
    popped = rclient.zpopmax(series.cache_key(), n)
    assert len(popped) == n, series
    oldest = int(min(score for _, score in popped))
    checked = keys.checked(1, 1, series.symbol, series.timeframe.name)
    rclient.hset(checked, "upto", oldest - series.timeframe.ms)
    return popped


def close(timeframes: tuple[str, ...]) -> None:
    """What beat sends at a close where every one of `timeframes` closes."""
    app.send_task(keys.BOUNDARY_TASK, args=(list(timeframes),), queue=keys.CONTROL_QUEUE)


def at(rclient: redis.Redis, series: Series, score: float) -> list[bytes]:
    return rclient.zrangebyscore(series.cache_key(), score, score)


def events(tmp_path, name: str) -> list[dict]:
    lines = (tmp_path / "worker1.log").read_text().splitlines()
    out = []
    for line in lines:
        if f'"event":"{name}"' in line:
            out.append(json.loads(line))
    return out


@pytest.fixture
def env():
    return {
        "BACKFILL_SYMBOLS": ",".join(SYMBOLS),
        "BACKFILL_TIMEFRAMES": "5m,15m,1h",
        "BACKFILL_AUDIT_SHARE": "0",
    }


@pytest.mark.timeout(240)
def test_a_derived_candle_is_byte_identical_to_the_native_one_for_one_request_per_symbol(
    rclient, redis_url, sim, start_workers, env, tmp_path
):
    from test_keeper import CloseListener

    start_workers(1, env=env)
    clear_of_close(300, 60)
    fill(rclient, redis_url, ("5m", "15m", "1h"))
    native = {}
    for s in SYMBOLS:
        for tf in ("5m", "15m", "1h"):
            series = Series.of(s, tf)
            native[series] = take_back(rclient, series)[0]
    listener = CloseListener(redis_url)
    try:
        sim.reset()
        close(("5m", "15m", "1h"))
        wait_until(
            lambda: all(at(rclient, se, score) for se, (_, score) in native.items()),
            60,
            "every series' newest candle back",
        )
        for series, (member, score) in native.items():
            assert at(rclient, series, score) == [member], series  # the same bytes
        assert sim.stats()["requests_total"] == len(SYMBOLS)  # 5m only
        wait_until(lambda: len(listener.messages) >= len(native), 10, "every close announced")
    finally:
        listener.close()
    got = sorted(listener.messages)
    want = sorted((se.close_channel(), m.decode()) for se, (m, _) in native.items())
    assert got == want  # each candle announced once, on its own channel, as stored
    rows = [e for e in events(tmp_path, "refresh_complete") if e.get("mode") == "derived"]
    assert sorted((e["symbol"], e["timeframe"]) for e in rows) == sorted(
        (s, tf) for s in SYMBOLS for tf in ("15m", "1h")
    )
    # derived series are current by the staleness rule, and their lags are recorded
    config = BackfillConfig(symbols=SYMBOLS, timeframes=("5m", "15m", "1h")).validated()
    report = freshness(rclient, rclient, config, load_settings())
    for tf in ("5m", "15m", "1h"):
        assert report["timeframes"][tf]["stale"] == 0, report
        assert report["timeframes"][tf]["lag_max_s"] is not None


@pytest.mark.timeout(240)
def test_a_hole_in_the_finer_series_forces_a_native_fetch(
    rclient, redis_url, sim, start_workers, env, tmp_path
):
    start_workers(1, env=env)
    clear_of_close(300, 60)
    fill(rclient, redis_url, ("5m", "15m", "1h"))
    native = {}
    for s in SYMBOLS:
        for tf in ("5m", "15m", "1h"):
            series = Series.of(s, tf)
            native[series] = take_back(rclient, series)[0]
    # BTC's 15m missed the whole last hour (its refreshes failed): unknown, not "no trades"
    btc15 = Series.of("BTC-USD", "15m")
    hour = native[Series.of("BTC-USD", "1h")][1]
    rclient.zremrangebyscore(btc15.cache_key(), hour, "+inf")
    rclient.hset(keys.checked(1, 1, "BTC-USD", "15m"), "upto", int(hour - 900_000))
    # ETH's 1h misses the hour before too
    eth1h = Series.of("ETH-USD", "1h")
    older = take_back(rclient, eth1h)[0]
    sim.reset()
    close(("5m", "15m", "1h"))
    wait_until(
        lambda: (
            all(at(rclient, se, score) for se, (_, score) in native.items())
            and at(rclient, eth1h, older[1])
        ),
        60,
        "every series' newest candle back",
    )
    for series, (member, score) in native.items():
        assert at(rclient, series, score) == [member], series
    assert at(rclient, eth1h, older[1]) == [older[0]]
    # one request per symbol, plus one for each series that could not be derived
    assert sim.stats()["requests_total"] == len(SYMBOLS) + 2
    rows = {
        (e["symbol"], e["timeframe"]): e
        for e in events(tmp_path, "refresh_complete")
        if e.get("mode") in ("derived", "native_fallback")
    }
    assert rows[("BTC-USD", "15m")]["mode"] == "native_fallback"
    assert "a hole first" in rows[("BTC-USD", "15m")]["reason"]
    assert rows[("BTC-USD", "1h")]["mode"] == "derived"  # from the 15m just fetched
    assert rows[("ETH-USD", "1h")]["mode"] == "native_fallback"
    assert rows[("SOL-USD", "1h")]["mode"] == "derived"


@pytest.mark.timeout(300)
def test_a_planted_divergence_is_found_and_switches_the_series_back_to_native(
    rclient, redis_url, sim, start_workers, env, tmp_path
):
    env = {**env, "BACKFILL_TIMEFRAMES": "5m,1h", "BACKFILL_AUDIT_SHARE": "1"}
    start_workers(1, env=env)
    clear_of_close(300, 50)  # the test takes ~20 s: two closes must not be real ones
    # more than the keeper's 100: its 5m refresh is a tail that leaves the plant in place
    fill(rclient, redis_url, ("5m", "1h"), n=150)
    config = BackfillConfig(symbols=SYMBOLS, timeframes=("5m", "1h")).validated()

    def take_all() -> dict:
        return {
            Series.of(s, tf): take_back(rclient, Series.of(s, tf))[0]
            for s in SYMBOLS
            for tf in ("5m", "1h")
        }

    native = take_all()
    # plant: one cached 5m candle inside SOL's last hour, wrong but valid (higher high)
    sol5, sol1h = Series.of("SOL-USD", "5m"), Series.of("SOL-USD", "1h")
    hour = native[sol1h][1]
    (raw, score), *_ = rclient.zrangebyscore(
        sol5.cache_key(), hour, hour + 3_000_000, withscores=True
    )
    m = json.loads(raw)
    m["high"] = m["high"] * 2
    rclient.zrem(sol5.cache_key(), raw)
    rclient.zadd(sol5.cache_key(), {json.dumps(m, separators=(",", ":")): score})
    sim.reset()
    close(("5m", "1h"))
    stats = keys.derive_audit("coinbase")
    wait_until(lambda: rclient.hget(stats, "audits") == b"3", 60, "three audits")
    assert rclient.hget(stats, "divergences") == b"1"
    assert rclient.smembers(keys.derive_native(1, 1)) == {b"SOL-USD:1h"}
    # the exchange's candle replaced the derived one; the others were right all along
    wait_until(
        lambda: all(at(rclient, se, sc) == [m] for se, (m, sc) in native.items()),
        10,
        "the exchange's candle in place of the diverging one",
    )
    # 3 refreshes + 3 audits; the counters say which (by the close of each timeframe)
    closes = {int(hour) + 3_600_000, int(native[sol5][1]) + 300_000}

    def counted(field: str) -> int:
        return sum(int(rclient.hget(keys.keeper_requests(c), field) or 0) for c in closes)

    assert (counted("refresh"), counted("derived"), counted("audit")) == (3, 3, 3)
    report = freshness(rclient, rclient, config, load_settings())
    assert report["derivation"]["coinbase"]["divergences"] == 1
    assert report["derivation"]["coinbase"]["native_series"] == ["SOL-USD:1h"]
    assert 'backfill_derive_divergences_total{exchange="coinbase"} 1' in prometheus(report)

    # the next close: SOL's 1h is refreshed natively, the others still derived
    for k in [*rclient.keys("backfill:boundary:*"), *rclient.keys("backfill:refresh:*")]:
        rclient.delete(k)
    for c in closes:
        rclient.delete(keys.keeper_requests(c))
    native = take_all()
    sim.reset()
    close(("5m", "1h"))
    wait_until(
        lambda: all(at(rclient, se, score) for se, (_, score) in native.items()),
        60,
        "every series' newest candle back",
    )
    wait_until(lambda: rclient.hget(stats, "audits") == b"5", 60, "two more audits")
    # 5m for each symbol and SOL's 1h natively; BTC's and ETH's 1h derived and audited
    assert (counted("refresh"), counted("derived"), counted("audit")) == (4, 2, 2)
    assert rclient.hget(stats, "divergences") == b"1"
    for series, (member, score) in native.items():
        assert at(rclient, series, score) == [member], series
