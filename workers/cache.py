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
    """The newest (up to n) closed members a series holds at or before a bucket."""

    starts: list[int]  # bucket starts, UNIX seconds, newest first
    checked_upto: int | None = None  # newest bucket the exchange was asked about (gaps included)
    exhausted: bool = False  # the last full fetch found fewer candles than wanted: no more exist

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def newest_start(self) -> int | None:
        return self.starts[0] if self.starts else None

    def gaps(self, seconds: int) -> int:
        """Buckets with no trades inside the span these members cover."""
        if len(self.starts) < 2:
            return 0
        return (self.starts[0] - self.starts[-1]) // seconds + 1 - len(self.starts)


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

    def checked_key(self, series: Series) -> str:
        tf = series.timeframe.name
        return f"backfill:checked:{self.user_id}:{self.exchange_id}:{series.symbol}:{tf}"

    def write(
        self,
        series: Series,
        candles: list[Candle],
        *,
        checked_upto: int | None = None,
        exhausted: bool = False,
    ) -> int:
        """Write closed candles for one series; returns the members the key holds after.

        `checked_upto` (UNIX seconds) is the newest closed bucket the exchange was asked
        about, so a bucket with no trades does not make the series look stale next time.
        """
        args: list[object] = [self.ttl_s, MAX_MEMBERS, (checked_upto or 0) * 1000, int(exhausted)]
        for c in candles:
            if not c.closed:
                raise InvalidCandle(f"{series}: candle at {c.start} is still in progress")
            problem = c.problem(series.timeframe)
            if problem:
                raise InvalidCandle(f"{series}: candle at {c.start}: {problem}")
            args += [c.timestamp_ms, c.member(series.symbol, series.timeframe.name)]
        return int(self._write(keys=[self.key(series), self.checked_key(series)], args=args))

    def state(self, series: Series, upto_start: int, n: int) -> CachedState:
        """The newest n members at or before bucket `upto_start`, in one round trip.

        Members after it (an in-progress bucket a live writer added) do not make a series
        look fresh.
        """
        return self.states([(series, upto_start)], n)[0]

    def states(self, wanted: list[tuple[Series, int]], n: int) -> list[CachedState]:
        """`state` for many series in one round trip (the dispatcher's warm check)."""
        pipe = self.redis.pipeline(transaction=False)
        for series, upto_start in wanted:
            pipe.zrevrangebyscore(
                self.key(series), upto_start * 1000, "-inf", start=0, num=n, withscores=True
            )
            pipe.hmget(self.checked_key(series), "upto", "exhausted")
        replies = pipe.execute()
        return [
            CachedState(
                [int(score) // 1000 for _, score in members],
                int(checked) // 1000 if checked else None,
                exhausted == b"1",
            )
            for members, (checked, exhausted) in zip(replies[::2], replies[1::2], strict=True)
        ]

    def newest(self, series: Series, n: int) -> list[str]:
        """What a reader gets: the newest n members, oldest first (`ZRANGE key -n -1`)."""
        members = self.redis.zrange(self.key(series), -n, -1)
        return [m.decode() if isinstance(m, bytes) else m for m in members]
