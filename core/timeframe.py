"""Timeframes: the one place that knows a timeframe's length, granularity and priority."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import InvalidInput
from core.text import split_names


@dataclass(frozen=True, order=False)
class Timeframe:
    name: str
    seconds: int
    granularity: str

    @property
    def ms(self) -> int:
        return self.seconds * 1000

    def floor(self, ts: int) -> int:
        """Start (UNIX seconds) of the bucket holding `ts`."""
        return ts - ts % self.seconds

    def last_closed_start(self, now: float) -> int:
        """Start of the newest bucket that has closed at `now`."""
        return self.floor(int(now)) - self.seconds

    def __str__(self) -> str:
        return self.name


_ALL = (
    Timeframe("1m", 60, "ONE_MINUTE"),
    Timeframe("5m", 300, "FIVE_MINUTE"),
    Timeframe("15m", 900, "FIFTEEN_MINUTE"),
    Timeframe("30m", 1800, "THIRTY_MINUTE"),
    Timeframe("1h", 3600, "ONE_HOUR"),
    Timeframe("2h", 7200, "TWO_HOUR"),
    Timeframe("4h", 14400, "FOUR_HOUR"),
    Timeframe("6h", 21600, "SIX_HOUR"),
    Timeframe("1d", 86400, "ONE_DAY"),
)
TIMEFRAMES: dict[str, Timeframe] = {tf.name: tf for tf in _ALL}
BY_GRANULARITY: dict[str, Timeframe] = {tf.granularity: tf for tf in _ALL}

# The seed's order: what the indicator service needs first is backfilled first.
TIMEFRAME_PRIORITY: tuple[str, ...] = ("5m", "15m", "1h", "4h", "1d")


def timeframe(name: str) -> Timeframe:
    try:
        return TIMEFRAMES[name]
    except KeyError:
        raise InvalidInput(
            f"unknown timeframe {name!r}; expected one of {', '.join(TIMEFRAMES)}"
        ) from None


def priority_key(name: str) -> tuple[int, int]:
    """Sort key: the seed's priority list first, any other timeframe after, by duration."""
    tf = timeframe(name)
    if name in TIMEFRAME_PRIORITY:
        return (0, TIMEFRAME_PRIORITY.index(name))
    return (1, tf.seconds)


def close_step(timeframes: list[Timeframe]) -> int:
    """Seconds between two instants at which a bucket of some of `timeframes` closes (the
    finest step they share: 300 for 5m..1d, 60 once 1m is among them)."""
    return math.gcd(*(tf.seconds for tf in timeframes))


def closed_at(timeframes: list[Timeframe], now: float) -> tuple[int, list[Timeframe]]:
    """The latest close instant at or before `now` (UNIX s) and the timeframes, in
    priority order, whose bucket closed then."""
    step = close_step(timeframes)
    at = int(now) - int(now) % step
    return at, [tf for tf in timeframes if at % tf.seconds == 0]


def parse_timeframes(names: list[str] | str) -> list[Timeframe]:
    """Validate, de-duplicate and order timeframes by priority."""
    if isinstance(names, str):
        names = split_names(names)
    if not names:
        raise InvalidInput("no timeframes given")
    unique = list(dict.fromkeys(names))
    return [timeframe(n) for n in sorted(unique, key=priority_key)]
