"""The candle cache, exactly as the indicator service reads it (shared/reference/cache-contract.md).

Writes are one Lua call per series: atomic (a reader never sees half a series) and one
round trip. Only closed, valid candles are ever written.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import redis

from backfill.series import Series
from workers.candle import Candle

MAX_MEMBERS = 1000
TTL_S = 24 * 3600


class InvalidCandle(ValueError):
    """Raised before any write when a candle breaks the contract: nothing is written."""


@dataclass(frozen=True)
class CachedState:
    """What the cache holds for a series at or before a given bucket."""

    count: int  # members at or before the bucket
    newest_start: int | None  # UNIX seconds of the newest such member


class CandleCache:
    def __init__(
        self, client: redis.Redis, *, user_id: int = 1, exchange_id: int = 1, ttl_s: int = TTL_S
    ) -> None:
        self.redis = client
        self.user_id = user_id
        self.exchange_id = exchange_id
        self.ttl_s = ttl_s
        self._write = client.register_script(
            resources.files("workers").joinpath("cache_write.lua").read_text()
        )

    def key(self, series: Series) -> str:
        return series.cache_key(self.user_id, self.exchange_id)

    def write(self, series: Series, candles: list[Candle]) -> int:
        """Write closed candles for one series; returns the members the key holds after."""
        args: list[object] = [self.ttl_s, MAX_MEMBERS]
        for c in candles:
            if not c.closed:
                raise InvalidCandle(f"{series}: candle at {c.start} is still in progress")
            problem = c.problem(series.timeframe)
            if problem:
                raise InvalidCandle(f"{series}: candle at {c.start}: {problem}")
            args += [c.timestamp_ms, c.member(series.symbol, series.timeframe.name)]
        if not candles:
            return int(self.redis.zcard(self.key(series)))
        return int(self._write(keys=[self.key(series)], args=args))

    def state(self, series: Series, upto_start: int) -> CachedState:
        """Members at or before bucket `upto_start` (in-progress members a live writer
        added after it do not make a series look fresh)."""
        key, upto_ms = self.key(series), upto_start * 1000
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(key, "-inf", upto_ms)
        pipe.zrevrangebyscore(key, upto_ms, "-inf", start=0, num=1, withscores=True)
        count, newest = pipe.execute()
        return CachedState(int(count), int(newest[0][1]) // 1000 if newest else None)

    def newest(self, series: Series, n: int) -> list[str]:
        """What a reader gets: the newest n members, oldest first (`ZRANGE key -n -1`)."""
        return [m.decode() if isinstance(m, bytes) else m for m in self.redis.zrange(self.key(series), -n, -1)]
