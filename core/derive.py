"""Longer timeframes from the finest one: the keeper's rule, as pure data.

A closed 15m, 30m, 1h, 2h, 4h, 6h or 1d bucket is exactly the aggregate of the finer
buckets inside it (open of the first, close of the last, max high, min low, summed
volume; buckets without trades absent). At a bucket close the keeper fetches only the
finest configured timeframe and builds the newest closed bucket of every longer one from
what the cache holds (`plan`: which timeframe from which), here (`derive`), written by
the data plane with the same bytes the exchange's own candle would give.

Only from complete data: every finer bucket inside the closed one is cached or known to
have had no trades. Known means the finer series was asked about it after it closed (its
`checked` mark reaches the span's last finer bucket) and its cached run reaches back to
the span's start (the fills are contiguous from the oldest cached member to the mark).
The derived series itself must be current up to the bucket before (deriving the newest
bucket over a hole would hide the hole) and hold enough candles (a cold fill is a native
one). Anything less is an `Incomplete` with the reason: the keeper then asks the exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.candle import Candle, aggregate
from core.errors import CacheContractError
from core.member import validate_member
from core.series import Series
from core.timeframe import Timeframe


@dataclass(frozen=True)
class SourceView:
    """What the cache holds of a finer series for one longer bucket."""

    timeframe: Timeframe
    members: list[tuple[bytes, float]]  # (member, score) inside the bucket's span
    checked_upto: int | None  # newest finer bucket the exchange was asked about (UNIX s)
    oldest_start: int | None  # the oldest cached finer bucket (UNIX s)


@dataclass(frozen=True)
class TargetView:
    """What the cache holds of the longer series before its new bucket."""

    newest_before: int | None  # newest cached bucket before the new one (UNIX s)
    checked_upto: int | None  # newest bucket the exchange (or a derivation) covered
    count: int  # members held
    exhausted: bool = False  # no older candles exist (a recent cold fill found fewer)


@dataclass(frozen=True)
class Derived:
    """The new bucket (None: no trades in it, known), and the timeframe it came from."""

    candle: Candle | None
    source: str


@dataclass(frozen=True)
class Incomplete:
    reason: str


def plan(finest: Timeframe, closing: list[Timeframe]) -> list[Timeframe]:
    """The timeframes closing now that can be derived from `finest` (shortest first, so
    each can be built from one derived before it)."""
    return sorted(
        (tf for tf in closing if tf.seconds > finest.seconds and tf.seconds % finest.seconds == 0),
        key=lambda tf: tf.seconds,
    )


def sources(into: Timeframe, current: list[Timeframe]) -> list[Timeframe]:
    """Where `into` may come from: timeframes already current at this close that divide it,
    coarsest first (fewest members to read: 4h and 1d from 1h, not from 5m)."""
    return sorted(
        (tf for tf in current if tf.seconds < into.seconds and into.seconds % tf.seconds == 0),
        key=lambda tf: -tf.seconds,
    )


def derive(
    series: Series, bucket: int, source: SourceView, target: TargetView, candle_count: int
) -> Derived | Incomplete:
    """The closed `series` bucket starting at `bucket` (UNIX s), from `source`."""
    into, child = series.timeframe, source.timeframe
    if into.seconds % child.seconds or child.seconds >= into.seconds or bucket % into.seconds:
        return Incomplete(f"{into.name} bucket {bucket} cannot be built from {child.name}")
    end = bucket + into.seconds
    last_child = end - child.seconds
    if (source.checked_upto or 0) < last_child:
        return Incomplete(
            f"{child.name} checked up to {source.checked_upto} only, not to {last_child}"
        )
    if source.oldest_start is None or source.oldest_start > bucket:
        return Incomplete(f"{child.name} cache starts after {bucket} ({source.oldest_start})")
    known = max(target.newest_before or 0, target.checked_upto or 0)
    if known < bucket - into.seconds:
        return Incomplete(f"{into.name} holds nothing known after {known}: a hole first")
    children = []
    child_series = Series(series.symbol, child)
    for raw, score in source.members:
        try:
            m = validate_member(raw, child_series, "")
        except CacheContractError:
            return Incomplete(f"a cached {child.name} member breaks the contract")
        start = int(score) // 1000
        if m["timestamp"] != score or not bucket <= start < end:
            return Incomplete(f"a cached {child.name} member is not at its own timestamp")
        volume = float(m["volume"])
        children.append(
            Candle(
                start=start,
                open=float(m["open"]),
                high=float(m["high"]),
                low=float(m["low"]),
                close=float(m["close"]),
                volume=volume,
                closed=True,
                # the shortest text of the cached double: the exchange's own digits for any
                # volume of up to 15 significant digits, so the sum is exact
                volume_text=repr(volume),
            )
        )
    children.sort(key=lambda c: c.start)
    built = aggregate(children, into, child, fetched=(bucket, end))
    held = target.count + len(built)
    if held < candle_count and not target.exhausted:  # a native (cold) fill fetches more
        return Incomplete(f"{into.name} would hold {held} of {candle_count} candles")
    if not built:
        return Derived(None, child.name)
    problem = built[0].problem(into)
    if problem:
        return Incomplete(f"derived {into.name} candle at {bucket}: {problem}")
    return Derived(built[0], child.name)
