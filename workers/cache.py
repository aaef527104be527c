"""The candle cache writer, exactly as the indicator service reads it
(shared/reference/cache-contract.md).

Writes are one Lua call per series: atomic (a reader never sees half a series) and one
round trip. Only closed, valid candles are ever written. `CandleStore` is the seam the
fetch logic depends on: `CandleCache` is the real (Redis) one, `MemoryCandleStore` the
in-memory one for unit tests of that logic; the Redis tests stay the reference.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import redis

from core import defaults, keys
from core.candle import Candle
from core.errors import InvalidCandle
from core.freshness import EXHAUSTED_RECHECK_S, CachedState, read_states, state_of
from core.series import Series
from workers.lua import LuaScript

MAX_MEMBERS = defaults.MAX_CACHED


ANNOUNCE_NONE, ANNOUNCE_NEW, ANNOUNCE_NEWEST = 0, 1, 2


@dataclass(frozen=True)
class Written:
    held: int  # members the series holds after the write
    announced: int  # close events published (candles that were new)
    state: CachedState | None = None  # after the write, where a read-back was asked for


class CandleStore(Protocol):
    def write(
        self,
        series: Series,
        candles: list[Candle],
        *,
        checked_upto: int | None = None,
        exhausted: bool = False,
        exhausted_at: float | None = None,
        announce: int = ANNOUNCE_NONE,
        junk: tuple[bytes, ...] = (),
        read_back: tuple[int, int] | None = None,
    ) -> Written: ...

    def state(
        self, series: Series, upto_start: int, n: int, window: int | None = None
    ) -> CachedState: ...


def check_candles(series: Series, candles: list[Candle]) -> None:
    """Refuse the whole write if any candle breaks the contract (nothing is written)."""
    g, inf = series.timeframe.seconds, math.inf
    for c in candles:  # the usual candle passes `Candle.problem`'s rules here at once
        lo, h = c.low, c.high
        if (
            c.closed and c.start > 0 and c.start % g == 0 and 0 < lo <= c.open <= h < inf
            and lo <= c.close <= h and 0 <= c.volume < inf
            and type(c.open) is type(h) is type(lo) is type(c.close) is type(c.volume) is float
        ):  # fmt: skip
            continue
        if not c.closed:
            raise InvalidCandle(f"{series}: candle at {c.start} is still in progress")
        problem = c.problem(series.timeframe)
        if problem:
            raise InvalidCandle(f"{series}: candle at {c.start}: {problem}")


class CandleCache:
    """The Redis candle cache of one namespace (user id, exchange id)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        user_id: int = defaults.USER_ID,
        exchange_id: int = defaults.EXCHANGE_ID,
        ttl_s: int = defaults.CACHE_TTL_S,
        exhausted_recheck_s: float = EXHAUSTED_RECHECK_S,
    ) -> None:
        self.redis = client
        self.exhausted_recheck_s = exhausted_recheck_s
        self.user_id = user_id
        self.exchange_id = exchange_id
        self.ttl_s = ttl_s
        self._write = LuaScript(client, "cache_write.lua")

    def key(self, series: Series) -> str:
        return series.cache_key(self.user_id, self.exchange_id)

    def checked_key(self, series: Series) -> str:
        return keys.checked(self.user_id, self.exchange_id, series.symbol, series.timeframe.name)

    def write(
        self,
        series: Series,
        candles: list[Candle],
        *,
        checked_upto: int | None = None,
        exhausted: bool = False,
        exhausted_at: float | None = None,
        announce: int = ANNOUNCE_NONE,
        junk: tuple[bytes, ...] = (),
        read_back: tuple[int, int] | None = None,
    ) -> Written:
        """Write closed candles for one series, and announce the new ones on its close
        channel (the platform recomputes on each message), atomically.

        `checked_upto` (UNIX seconds) is the newest closed bucket the exchange was asked
        about, so a bucket with no trades does not make the series look stale next time.
        `exhausted` is stored as when it was found (`exhausted_at`, default now), so that it
        expires rather than being believed for the key's whole TTL.
        `announce`: ANNOUNCE_NEW publishes every candle no member held before (a
        refresh), ANNOUNCE_NEWEST only the newest one (a startup write).
        `junk`: members read before (`CachedState.junk`) that break the contract: removed
        in the same call, so a series is never written around junk the platform would
        refuse.
        `read_back` (bucket start, n): the series' state after the write, as `state()`
        reads it, in the same call (`Written.state`): what this call wrote is not sent
        back, and what another writer put there is checked as any member is.
        """
        check_candles(series, candles)
        candles = sorted(candles, key=lambda c: c.start)
        found = int(exhausted_at or time.time()) if exhausted else 0
        # one argument: each member's score is its timestamp (read in the script)
        symbol, tf = series.symbol, series.timeframe.name
        members = "\n".join([c.member(symbol, tf) for c in candles])
        if members.count("\n") != max(0, len(candles) - 1):  # never: the text is ours
            raise InvalidCandle(f"{series}: a member holds a line break")
        back_upto, back_n = (read_back[0] * 1000, read_back[1]) if read_back else ("", 0)
        reply = self._write(
            [
                self.key(series),
                self.checked_key(series),
                series.close_channel(self.user_id, self.exchange_id),
            ],
            [*junk, members],
            ttl=self.ttl_s,
            keep=MAX_MEMBERS,
            checked_upto=(checked_upto or 0) * 1000,
            exhausted_at=found,
            announce=announce,
            junk=len(junk),
            back_upto=back_upto,
            back_n=back_n,
        )
        state = None
        if read_back is not None:
            pairs = zip(reply[4::2], reply[5::2], strict=True)
            state = state_of(
                series,
                ((None if m == 1 else m, float(s)) for s, m in pairs),
                reply[2:4],
                back_n,
                time.time(),
                self.exhausted_recheck_s,
            )
        return Written(int(reply[0]), int(reply[1]), state)

    def state(
        self, series: Series, upto_start: int, n: int, window: int | None = None
    ) -> CachedState:
        """The newest n members at or before bucket `upto_start` (and the junk among the
        newest `window`), in one round trip."""
        return self.states([(series, upto_start)], n, window)[0]

    def states(
        self, wanted: list[tuple[Series, int]], n: int, window: int | None = None
    ) -> list[CachedState]:
        return read_states(
            self.redis,
            wanted,
            n,
            user_id=self.user_id,
            exchange_id=self.exchange_id,
            exhausted_recheck_s=self.exhausted_recheck_s,
            window=window,
        )


class MemoryCandleStore:
    """The same rules in memory (one member per bucket, newest 1000, checked marks)."""

    def __init__(self, exhausted_recheck_s: float = EXHAUSTED_RECHECK_S, clock=time.time) -> None:
        self.members: dict[str, dict[int, str]] = {}
        self.checked: dict[str, tuple[int | None, float | None]] = {}
        self.announced: list[str] = []  # close events, in publishing order
        self.writes = 0
        self.exhausted_recheck_s = exhausted_recheck_s
        self.clock = clock

    def write(
        self,
        series: Series,
        candles: list[Candle],
        *,
        checked_upto: int | None = None,
        exhausted: bool = False,
        exhausted_at: float | None = None,
        announce: int = ANNOUNCE_NONE,
        junk: tuple[bytes, ...] = (),
        read_back: tuple[int, int] | None = None,
    ) -> Written:
        check_candles(series, candles)
        held = self.members.setdefault(series.name, {})
        new = []
        for c in sorted(candles, key=lambda c: c.start):
            if c.start not in held:
                new.append(c.start)
            held[c.start] = c.member(series.symbol, series.timeframe.name)
        if announce == ANNOUNCE_NEWEST:
            new = new[-1:] if new and candles and new[-1] == max(c.start for c in candles) else []
        announced = [held[s] for s in new] if announce else []
        self.announced.extend(announced)
        for start in sorted(held)[:-MAX_MEMBERS]:
            del held[start]
        if checked_upto:
            old_upto, _ = self.checked.get(series.name, (None, None))
            at = (exhausted_at or self.clock()) if exhausted else None
            self.checked[series.name] = (max(old_upto or 0, checked_upto), at)
        self.writes += 1
        state = self.state(series, *read_back) if read_back is not None else None
        return Written(len(held), len(announced), state)

    def state(
        self, series: Series, upto_start: int, n: int, window: int | None = None
    ) -> CachedState:
        held = self.members.get(series.name, {})
        starts = sorted((s for s in held if s <= upto_start), reverse=True)[:n]
        upto, at = self.checked.get(series.name, (None, None))
        trusted = at is not None and self.clock() - at < self.exhausted_recheck_s
        return CachedState(starts, upto, trusted, at)
