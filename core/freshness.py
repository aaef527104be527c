"""Is a series current? The one rule the dispatcher's warm check and a series task share.

A series is fresh when the cache was checked up to the latest closed bucket and holds
enough candles (or all the exchange has). `read_states` reads what that needs for many
series in one round trip; it never looks at members after the bucket asked about (an
in-progress bucket a live writer added does not make a series look fresh).

What is in Redis is input too: only members that parse under the cache contract and sit
at their own timestamp count (`core.member`); anything else in the window the platform
reads is junk, which makes a series not fresh (its next write removes it). A key of
another type is a `problem`: that series fails with the key named, the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from core import defaults, keys
from core.member import READER_WINDOW, is_member_at
from core.outcome import Outcome
from core.series import Series
from core.timeframe import Timeframe

EXHAUSTED_RECHECK_S = float(defaults.EXHAUSTED_RECHECK_S)
# A series is ready when the exchange was asked about the newest bucket closed this long
# ago by our clock: a `Date` a little behind is no reason to fail, a day behind is.
RECENT_TOLERANCE_S = defaults.MAX_CLOCK_SKEW_S


@dataclass(frozen=True)
class CachedState:
    """The newest (up to n) closed members a series holds at or before a bucket."""

    starts: list[int]  # bucket starts, UNIX seconds, newest first
    checked_upto: int | None = None  # newest bucket the exchange was asked about (gaps included)
    exhausted: bool = False  # a recent full fetch found fewer candles than wanted: no more exist
    exhausted_at: float | None = None  # when (UNIX s); believed only for a while (a new
    # listing grows, an exchange hiccup passes), see `read_states`
    junk: tuple[bytes, ...] = ()  # members in the reader's window that break the contract
    problem: str | None = None  # the key cannot be read as a series (another type)

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
    """Nothing to fetch: checked up to the latest closed bucket, enough candles, no junk."""
    return (
        state.problem is None
        and not state.junk
        and (state.count >= n or state.exhausted)
        and covers_last_close(state, tf, now)
    )


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
    out.ready = out.candles_cached >= min_candles and state.problem is None and not state.junk
    tf = series.timeframe
    if state.problem is not None:
        out.reason = state.problem
    elif state.junk:
        out.reason = f"{len(state.junk)} cached members break the cache contract"
    elif not out.ready:
        out.reason = f"only {state.count} closed candles exist (no trades); {min_candles} needed"
    elif now is not None and n is not None and not is_recent(state, tf, now, n):
        out.ready = False
        out.reason = (
            f"newest candle ({state.newest_start}) is older than the newest {n} closed "
            f"{tf.name} buckets"
        )
    elif now is not None and not covers_last_close(state, tf, now - RECENT_TOLERANCE_S):
        out.ready = False
        known = max(state.newest_start or 0, state.checked_upto or 0)
        out.reason = (
            f"the exchange was asked up to {tf.name} bucket {known} only, not up to the newest "
            f"closed one ({tf.last_closed_start(now)}): its clock or answer lags"
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
    window: int | None = None,
) -> list[CachedState]:
    """For each (series, bucket start): its newest n valid members at or before that bucket,
    and the junk among the newest `window` (default: n) members there (`state_of`)."""
    now = time.time() if now is None else now
    window = max(n, window or n)
    pipe = client.pipeline(transaction=False)
    for series, upto_start in wanted:
        pipe.zrevrangebyscore(
            series.cache_key(user_id, exchange_id),
            upto_start * 1000,
            "-inf",
            start=0,
            num=window,
            withscores=True,
        )
        pipe.hmget(
            keys.checked(user_id, exchange_id, series.symbol, series.timeframe.name),
            "upto",
            "exhausted",
        )
    replies = pipe.execute(raise_on_error=False)
    out = []
    for (series, _), members, checked in zip(wanted, replies[::2], replies[1::2], strict=True):
        problem = _foreign(members, series.cache_key(user_id, exchange_id)) or _foreign(
            checked, keys.checked(user_id, exchange_id, series.symbol, series.timeframe.name)
        )
        if problem:
            out.append(CachedState([], problem=problem))
            continue
        out.append(state_of(series, members, checked, n, now, exhausted_recheck_s))
    return out


def state_of(
    series: Series,
    members: Iterable[tuple[bytes | None, float]],
    checked: Sequence[bytes | None],
    n: int,
    now: float,
    exhausted_recheck_s: float = EXHAUSTED_RECHECK_S,
) -> CachedState:
    """A series' state from its members (newest first, with scores: a member `None` is one
    the caller just wrote there, sound without being parsed again) and its checked hash
    (`upto`, `exhausted`).

    'Exhausted' counts only if it was found less than `exhausted_recheck_s` ago (0: never):
    short history is checked again later, not remembered as final.
    """
    starts, junk = [], []
    for raw, score in members:
        if raw is None or is_member_at(raw, score, series):
            if len(starts) < n:
                starts.append(int(score) // 1000)
        else:
            junk.append(raw)
    upto, exhausted = checked
    at = _exhausted_at(exhausted)
    return CachedState(
        starts,
        _int(upto) // 1000 if _int(upto) else None,
        at is not None and now - at < exhausted_recheck_s,
        at,
        tuple(junk),
    )


def reader_window(n: int) -> int:
    """How many members a fill checks for junk: what the platform reads, at least."""
    return max(n, READER_WINDOW)


def _foreign(reply: object, key: str) -> str | None:
    """A WRONGTYPE reply says the key holds something else: name it (other errors raise)."""
    if not isinstance(reply, Exception):
        return None
    if isinstance(reply, redis.ResponseError) and str(reply).startswith("WRONGTYPE"):
        return f"{key} holds another Redis type than this cache writes: not touched"
    raise reply


def _int(raw: bytes | None) -> int:
    """A bookkeeping number we wrote; anything else there counts as absent."""
    try:
        return int(raw) if raw and raw.isdigit() else 0
    except ValueError:
        return 0


def _exhausted_at(raw: bytes | None) -> float | None:
    """When 'exhausted' was found (UNIX s); '0', nothing, or the old flag '1' is None."""
    try:
        at = float(raw) if raw else 0.0
    except ValueError:
        return None
    return at if at > 1 else None
