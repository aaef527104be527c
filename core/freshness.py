"""Is a series current? The one rule the dispatcher's warm check and a series task share.

A series is fresh when the cache was checked up to the latest closed bucket and holds
enough candles (or all the exchange has). `read_states` reads what that needs for many
series in one round trip; it never looks at members after the bucket asked about (an
in-progress bucket a live writer added does not make a series look fresh).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from core import defaults, keys
from core.outcome import Outcome
from core.series import Series
from core.timeframe import Timeframe

EXHAUSTED_RECHECK_S = float(defaults.EXHAUSTED_RECHECK_S)


@dataclass(frozen=True)
class CachedState:
    """The newest (up to n) closed members a series holds at or before a bucket."""

    starts: list[int]  # bucket starts, UNIX seconds, newest first
    checked_upto: int | None = None  # newest bucket the exchange was asked about (gaps included)
    exhausted: bool = False  # a recent full fetch found fewer candles than wanted: no more exist
    exhausted_at: float | None = None  # when (UNIX s); believed only for a while (a new
    # listing grows, an exchange hiccup passes), see `read_states`

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


def covers_last_close(state: CachedState, tf: Timeframe, now: float) -> bool:
    """The staleness rule: the newest closed bucket at `now` is cached, or the exchange
    was asked about it (a bucket without trades is absent, yet known)."""
    return max(state.newest_start or 0, state.checked_upto or 0) >= tf.last_closed_start(now)


def is_fresh(state: CachedState, tf: Timeframe, now: float, n: int) -> bool:
    """Nothing to fetch: checked up to the latest closed bucket, and enough candles."""
    return (state.count >= n or state.exhausted) and covers_last_close(state, tf, now)


def is_recent(state: CachedState, tf: Timeframe, now: float, n: int) -> bool:
    """The newest cached candle lies among the newest n buckets closed by our clock: a
    cache (or an exchange) holding only old data is never ready."""
    oldest_allowed = tf.last_closed_start(now) - (n - 1) * tf.seconds
    return state.newest_start is not None and state.newest_start >= oldest_allowed


def fresh_outcome(
    series: Series,
    state: CachedState,
    min_candles: int,
    *,
    now: float | None = None,
    n: int | None = None,
) -> Outcome:
    """The outcome of a series that needed nothing (the same record a task returns); with
    `now` and `n`, a series whose newest candle is older than the newest n closed buckets
    is not ready however many candles it holds."""
    out = Outcome(
        series=series.name,
        symbol=series.symbol,
        timeframe=series.timeframe.name,
        mode="fresh",
        candles_cached=state.count,
        gaps=state.gaps(series.timeframe.seconds),
    )
    out.newest_ts = state.newest_start * 1000 if state.newest_start else None
    out.ready = out.candles_cached >= min_candles
    if not out.ready:
        out.reason = f"only {state.count} closed candles exist (no trades); {min_candles} needed"
    elif now is not None and n is not None and not is_recent(state, series.timeframe, now, n):
        out.ready = False
        out.reason = (
            f"newest candle ({state.newest_start}) is older than the newest {n} closed "
            f"{series.timeframe.name} buckets"
        )
    return out


def read_states(
    client: redis.Redis,
    wanted: list[tuple[Series, int]],
    n: int,
    *,
    user_id: int = 1,
    exchange_id: int = 1,
    now: float | None = None,
    exhausted_recheck_s: float = EXHAUSTED_RECHECK_S,
) -> list[CachedState]:
    """For each (series, bucket start): its newest n members at or before that bucket.

    'Exhausted' counts only if it was found less than `exhausted_recheck_s` ago (0: never):
    short history is checked again later, not remembered as final.
    """
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for series, upto_start in wanted:
        pipe.zrevrangebyscore(
            series.cache_key(user_id, exchange_id),
            upto_start * 1000,
            "-inf",
            start=0,
            num=n,
            withscores=True,
        )
        pipe.hmget(
            keys.checked(user_id, exchange_id, series.symbol, series.timeframe.name),
            "upto",
            "exhausted",
        )
    replies = pipe.execute()
    out = []
    for members, (checked, exhausted) in zip(replies[::2], replies[1::2], strict=True):
        at = _exhausted_at(exhausted)
        out.append(
            CachedState(
                [int(score) // 1000 for _, score in members],
                int(checked) // 1000 if checked else None,
                at is not None and now - at < exhausted_recheck_s,
                at,
            )
        )
    return out


def _exhausted_at(raw: bytes | None) -> float | None:
    """When 'exhausted' was found (UNIX s); '0', nothing, or the old flag '1' is None."""
    try:
        at = float(raw) if raw else 0.0
    except ValueError:
        return None
    return at if at > 1 else None
