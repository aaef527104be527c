"""The seed's algorithm (the original TypeScript service), timed faithfully.

For every series, in batches of 5 run in parallel, one request of 300 candles
(newest first), then a 1 s pause before the next batch. It kept `candles.slice(-100)`;
here the newest 100 closed candles are written with our `CandleCache`, so the
comparison is about speed only. Same client class, same cache writer, same simulator.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis

from core.credentials import load_credentials
from core.series import Series
from workers.cache import CandleCache
from workers.coinbase.client import CoinbaseClient

BATCH = 5
PAUSE_S = 1.0
SEED_CANDLES = 300


@dataclass
class SeedResult:
    wall_s: float
    series: int
    written: int
    failed: int


def run_seed(
    series: list[Series], base_url: str, key_file: str, redis_url: str, candle_count: int = 100
) -> SeedResult:
    creds = load_credentials(key_file, None, None)
    cache = CandleCache(redis.Redis.from_url(redis_url))
    local = threading.local()

    def client() -> CoinbaseClient:  # one HTTP connection per parallel slot, no fleet budget
        if not hasattr(local, "client"):
            local.client = CoinbaseClient(base_url, creds)
        return local.client

    def fetch_one(s: Series) -> int:
        tf = s.timeframe
        end = tf.floor(int(time.time()))
        start = end - (SEED_CANDLES - 1) * tf.seconds  # 300 buckets, the newest in progress
        try:
            candles = client().get_page(s.symbol, tf, start, end)
        except Exception:
            return -1
        closed = [c for c in candles if c.closed][-candle_count:]
        cache.write(s, closed, checked_upto=tf.last_closed_start(time.time()))
        return len(closed)

    t0 = time.monotonic()
    written = failed = 0
    with ThreadPoolExecutor(BATCH) as pool:
        for i in range(0, len(series), BATCH):
            if i:
                time.sleep(PAUSE_S)
            for n in pool.map(fetch_one, series[i : i + BATCH]):
                if n < 0:
                    failed += 1
                else:
                    written += n
    return SeedResult(round(time.monotonic() - t0, 3), len(series), written, failed)
