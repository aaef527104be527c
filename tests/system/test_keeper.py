"""Keeping the cache fresh: real beat processes, real workers, the simulator, real closes.

The `1m` timeframe gives a real bucket close every minute; the simulator's clock moves
for outages.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from helpers import assert_matches_truth, wait_until

from backfill.app import app
from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from backfill.local import BeatProcess
from core import jobs, keys
from core.config import BackfillConfig
from core.jobs import RefreshJob
from core.series import Series

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


class CloseListener:
    """PSUBSCRIBEs the platform's candle-close channels, as the indicator service does."""

    def __init__(self, url: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("channel:candle:close:1:1:*:*")
        self.messages: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.pubsub.get_message(timeout=0.2)
            if m and m["type"] == "pmessage":
                self.messages.append((m["channel"].decode(), m["data"].decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()


@pytest.fixture
def listener(redis_url):
    lst = CloseListener(redis_url)
    yield lst
    lst.close()


def fill(rclient, redis_url, timeframes=("1m",), exit_code: int = 0) -> None:
    d = dispatch(BackfillConfig(symbols=SYMBOLS, timeframes=timeframes), redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.exit_code == exit_code, result.summary


@pytest.mark.timeout(300)
def test_two_beats_refresh_each_series_once_per_close(
    rclient, redis_url, sim, start_workers, worker_env, tmp_path, listener
):
    env = {
        "BACKFILL_SYMBOLS": ",".join(SYMBOLS),
        "BACKFILL_TIMEFRAMES": "1m",
        "BACKFILL_SETTLE_S": "1",
    }
    start_workers(1, env=env)
    fill(rclient, redis_url)
    beats = [
        BeatProcess({**worker_env, **env}, log_path=tmp_path / f"beat{i}.log").start()
        for i in range(2)
    ]
    try:
        # start counting well clear of a close, so the next close is the one measured
        wait_until(lambda: 10 <= time.time() % 60 <= 50, 60, "a quiet moment in the minute")
        sim.reset()
        listener.messages.clear()
        close = (int(time.time()) // 60 + 1) * 60  # the next bucket close
        bucket = close - 60  # the bucket that closes then
        series = [Series.of(s, "1m") for s in SYMBOLS]

        def refreshed():
            return all(
                rclient.zcount(s.cache_key(), bucket * 1000, bucket * 1000) == 1 for s in series
            )

        wait_until(refreshed, close - time.time() + 1 + 15, "every series' new bucket")
        took = time.time() - close
        for s in series:
            assert_matches_truth(rclient, sim, s, 100, not_before=close)
        # one request per series, whatever two beats sent
        wait_until(lambda: len(listener.messages) >= 3, 10, "three close messages")
        stats = sim.stats()
        assert stats["requests_total"] == len(SYMBOLS), stats
        # one close message per series, the stored member, for the new bucket only
        got = sorted(listener.messages)
        want = sorted(
            (
                s.close_channel(),
                rclient.zrangebyscore(s.cache_key(), bucket * 1000, bucket * 1000)[0].decode(),
            )
            for s in series
        )
        assert got == want
        assert all(json.loads(m)["timestamp"] == bucket * 1000 for _, m in got)
        claims = rclient.keys(keys.boundary_claim("1m", close * 1000))
        assert len(claims) == 1
        assert took < 1 + 10, f"refreshed {took:.1f}s after the close"
    finally:
        for b in beats:
            b.stop(timeout=10)


@pytest.mark.timeout(240)
def test_an_outage_is_repaired_without_a_hole_and_the_breaker_opens_and_closes(
    rclient, redis_url, sim, start_workers, tmp_path, listener
):
    env = {"BACKFILL_BREAKER_FAILURES": "3", "BACKFILL_BREAKER_COOLDOWN_S": "2"}
    (worker,) = start_workers(1, env=env)
    sim.configure(clock_offset_s=-3 * 3600)  # the exchange (and our cache) 3 hours behind
    fill(rclient, redis_url, timeframes=("5m",), exit_code=3)  # cached, but not ready: lags
    sim.configure(clock_offset_s=0)

    # the exchange fails: refreshes fail, the breaker opens and stops the requests
    sim.configure(p500=1.0)
    sim.reset()
    listener.messages.clear()
    boundary_ms = int(time.time()) // 300 * 300 * 1000
    for s in SYMBOLS:
        app.signature(jobs.signature(RefreshJob(s, "5m", boundary_ms=boundary_ms))).apply_async()
    wait_until(
        lambda: any(
            rclient.hget(k, "state") == b"open"
            for k in rclient.scan_iter("backfill:breaker:*", _type="HASH")
        ),
        60,
        "the breaker to open",
    )
    failed_requests = sim.stats()["requests_total"]
    assert failed_requests >= 3
    # while open, nobody asks the exchange (the retries wait out the cool-down)
    sim.configure(p500=0.0)
    series = [Series.of(s, "5m") for s in SYMBOLS]
    last_closed = series[0].timeframe.last_closed_start(time.time())
    newest = last_closed * 1000
    wait_until(
        lambda: all(rclient.zcount(s.cache_key(), newest, newest) for s in series),
        90,
        "every series repaired after the outage",
    )
    for s in series:
        assert_matches_truth(rclient, sim, s, 100, not_before=time.time() - 1)
        held = rclient.zrange(s.cache_key(), 0, -1, withscores=True)
        starts = [int(score) // 1000 for _, score in held]
        truth = {
            int(c["start"])
            for c in sim.truth(s.symbol, "FIVE_MINUTE", starts[0], starts[-1])
        }
        assert set(starts) == truth  # no hole the exchange did not have
    log = (tmp_path / "worker1.log").read_text()
    assert '"event":"breaker_open"' in log and '"event":"breaker_closed"' in log
    # each newly closed candle announced once, oldest first per series
    wait_until(lambda: len(listener.messages) >= 3 * 36, 10, "the missed closes announced")
    for s in series:
        mine = [
            json.loads(m)["timestamp"] for ch, m in listener.messages if ch == s.close_channel()
        ]
        assert mine == sorted(set(mine)) and len(mine) >= 36
    assert worker.proc.poll() is None
