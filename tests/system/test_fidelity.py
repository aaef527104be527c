"""Data fidelity against the simulator's ground truth: 4h either way, warm restarts after
an outage, gaps on illiquid products, live writers sharing the keys."""

from __future__ import annotations

import json
import threading
import time

import pytest
from helpers import assert_matches_truth, clear_of_close, wait_until

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from core.config import BackfillConfig
from core.outcome import Outcome
from core.run import RunStore
from core.series import Series

pytestmark = pytest.mark.slow


def outcomes(rclient, run_id: str) -> dict[str, Outcome]:
    return RunStore(rclient).outcomes(run_id)


def test_4h_derived_from_1h_equals_native(rclient, redis_url, sim, start_workers):
    start_workers(1)
    config = BackfillConfig(symbols=("BTC-USD", "ETH-USD", "DOGE-USD"), timeframes=("4h",))
    t0 = time.time()
    native = dispatch(config, redis_url=redis_url)
    assert wait_ready(rclient, native.run_id, timeout=60).exit_code == 0
    native_members = {
        s: rclient.zrange(Series.of(s, "4h").cache_key(), 0, -1) for s in config.symbols
    }
    rclient.flushdb()
    sim.configure(four_hour=False)
    sim.reset()
    derived = dispatch(config, redis_url=redis_url)
    assert wait_ready(rclient, derived.run_id, timeout=60).exit_code == 0
    got = outcomes(rclient, derived.run_id)
    assert all(o.derived and o.candles_cached == 100 for o in got.values())
    for s in config.symbols:
        assert rclient.zrange(Series.of(s, "4h").cache_key(), 0, -1) == native_members[s]
        sim.configure(four_hour=True)
        assert_matches_truth(rclient, sim, Series.of(s, "4h"), 100, t0)
    by_series = sim.stats()["requests_by_series"]
    # the rejection is remembered for the run: only the first 4h task asked for FOUR_HOUR
    assert sum(v for k, v in by_series.items() if k.endswith(":FOUR_HOUR")) == 1
    assert all(by_series.get(f"{s}:ONE_HOUR", 0) >= 2 for s in config.symbols)  # 400+ hours


def test_outage_fetches_only_the_tails(rclient, redis_url, sim, start_workers):
    start_workers(2)
    clear_of_close(300, 60)  # a 5m close between the runs would add a request
    config = BackfillConfig(symbols=("BTC-USD", "ETH-USD"), timeframes=("5m", "15m", "1h"))
    sim.configure(clock_offset_s=-3 * 3600)  # the exchange (and our cache) three hours behind
    first = dispatch(config, redis_url=redis_url)
    lagging = wait_ready(rclient, first.run_id, timeout=60)
    assert lagging.exit_code == 3, lagging.summary  # an exchange 3 h behind: nothing is ready
    assert all("lags" in n["reason"] for n in lagging.summary["not_ready"]), lagging.summary
    sim.configure(clock_offset_s=0)  # caught up: three hours of candles are missing
    sim.reset()
    t0 = time.time()
    second = dispatch(config, redis_url=redis_url)
    assert wait_ready(rclient, second.run_id, timeout=60).exit_code == 0
    got = outcomes(rclient, second.run_id)
    for o in got.values():
        assert o.mode == "tail" and o.requests == 1, o
        tf = Series.of(o.symbol, o.timeframe).timeframe
        assert o.candles_written <= 3 * 3600 // tf.seconds + 2  # the tail and one overlap
    for s in config.symbols:
        for tf in config.timeframes:
            assert_matches_truth(rclient, sim, Series.of(s, tf), 100, t0)
    assert sim.stats()["requests_total"] == 6


def test_illiquid_series_reported_not_ready_and_no_candle_invented(
    rclient, redis_url, sim, start_workers
):
    start_workers(1)
    d = dispatch(
        BackfillConfig(symbols=("GHOST-USD", "BTC-USD"), timeframes=("5m",)), redis_url=redis_url
    )
    result = wait_ready(rclient, d.run_id, timeout=60)
    s = result.summary
    assert result.exit_code == 3 and s["ready"] == ["BTC-USD:5m"]
    [nr] = s["not_ready"]
    assert nr["series"] == "GHOST-USD:5m" and nr["candles"] < 60 and "no trades" in nr["reason"]
    o = outcomes(rclient, d.run_id)["GHOST-USD:5m"]
    assert o.gaps > 0 and o.requests == 5  # looked further back, page by page
    series = Series.of("GHOST-USD", "5m")
    cached = [json.loads(m) for m in rclient.zrange(series.cache_key(), 0, -1)]
    oldest = cached[0]["timestamp"] // 1000
    truth = sim.truth("GHOST-USD", "FIVE_MINUTE", oldest, cached[-1]["timestamp"] // 1000)
    assert sorted(int(c["start"]) * 1000 for c in truth) == [c["timestamp"] for c in cached]


def test_live_writer_and_backfill_share_keys(rclient, redis_url, sim, start_workers):
    """A WebSocket adapter writes the in-progress bucket (and rewrites closed ones) while the
    backfill runs: REST's closed candles win, the in-progress bucket is left to the adapter.
    The adapter looks at the in-progress bucket before each rewrite (in the same MULTI), so
    a backfill write to it is seen even though the adapter overwrites it a moment later.
    The whole watch lies inside one bucket, so every look is checked: no bucket closes
    meanwhile, and no closed REST candle can legitimately appear in the watched bucket."""
    start_workers(1)
    clear_of_close(300, 100)  # writer start (<= 30 s) + run (<= 60 s) inside one 5m bucket
    series = Series.of("BTC-USD", "5m")
    key = series.cache_key()
    stop = threading.Event()
    tf = series.timeframe
    foreign: list[dict] = []  # someone else's member in the in-progress bucket
    rounds = [0]
    watched: set[int] = set()  # the buckets the adapter looked at

    def live_member(start: int) -> str:
        return json.dumps(
            {
                "timestamp": start * 1000,
                "open": 1.0,
                "high": 1.0,
                "low": 1.0,
                "close": 1.0,
                "volume": 0.0,
                "symbol": "BTC-USD",
                "timeframe": "5m",
            },
            separators=(",", ":"),
        )

    def live_writer() -> None:
        while not stop.is_set():
            now = time.time()
            in_progress = tf.floor(int(now))
            pipe = rclient.pipeline()  # MULTI ... EXEC
            pipe.zrangebyscore(key, in_progress * 1000, in_progress * 1000)
            for start in (in_progress, in_progress - 300):  # in progress, and just closed
                pipe.zremrangebyscore(key, start * 1000, start * 1000)
                pipe.zadd(key, {live_member(start): start * 1000})
            seen = pipe.execute()[0]
            watched.add(in_progress)
            foreign.extend(m for m in map(json.loads, seen) if m["open"] != 1.0)
            rounds[0] += 1
            stop.wait(0.005)

    writer = threading.Thread(target=live_writer)
    writer.start()
    try:
        wait_until(lambda: rounds[0] >= 10, 30, "the adapter to be writing")
        before = rounds[0]
        d = dispatch(BackfillConfig(symbols=("BTC-USD",), timeframes=("5m",)), redis_url=redis_url)
        assert wait_ready(rclient, d.run_id, timeout=60).exit_code == 0
        during = rounds[0] - before
    finally:
        stop.set()
        writer.join()
    assert during >= 1  # the adapter kept writing while the backfill ran
    assert len(watched) == 1, watched  # one bucket, in progress for the whole watch
    assert not foreign, f"the backfill wrote the in-progress bucket: {foreign[:2]}"
    members = rclient.zrange(key, 0, -1, withscores=True)
    scores = [int(s) for _, s in members]
    assert len(scores) == len(set(scores))  # one member per timestamp, whoever wrote last
    # every closed bucket older than the live writer's rewrites is REST's closed candle
    in_progress = tf.floor(int(time.time())) * 1000
    older = [json.loads(m) for m, s in members if int(s) < in_progress - 300_000]
    assert len(older) >= 98 and all(m["open"] != 1.0 for m in older)
