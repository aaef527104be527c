"""Which rows of an answer we asked for, checked the same way on every exchange.

An exchange module turns its body into rows (`{"start", "low", "high", "open", "close",
"volume"}`, text as sent); from there each rule turns a bad answer into a `BadRows` with a
name (the client makes it an `InvalidResponse`), never a `TypeError` deep in parsing.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.candle import Candle, parse_candle, parse_candles
from core.errors import ExchangeError
from core.jsnum import js_integer
from core.timeframe import Timeframe

FIELDS = ("start", "low", "high", "open", "close", "volume")


class BadRows(ValueError):
    """The answer is not the candles asked for; the message names what is wrong."""


def start_of(row: Mapping[str, object]) -> int:
    try:
        return js_integer(str(row["start"]))
    except ValueError:
        raise BadRows(f"candle start {str(row['start'])[:40]!r} is not an integer") from None


def starts_of(rows: list[Mapping[str, object]]) -> list[int]:
    """Each row's start; a page of plain digit text (the usual answer) is read at once."""
    try:
        texts = [row["start"] for row in rows]
        joined = "".join(texts)  # TypeError unless every one is text
    except (KeyError, TypeError):
        texts, joined = [], ""
    lengths = set(map(len, texts))  # 1 to 15 digits: below 2**53, exact as `js_integer` reads
    if texts and joined.isascii() and joined.isdigit() and 0 not in lengths and max(lengths) < 16:
        return list(map(int, texts))
    return [start_of(row) for row in rows]


def select(
    rows: list[Mapping[str, object]],
    tf: Timeframe,
    start: int,
    end: int,
    *,
    now: float,
    closed_before: float,
    newest: int | None = None,
) -> list[Candle]:
    """The candles asked for, oldest first, one per bucket.

    Rows outside [start, end] or after our clock's current bucket were not asked for and are
    dropped before anything is chosen; identical duplicates collapse, and two different rows
    for one bucket make the whole answer invalid. With `newest`, only the newest are parsed.
    """
    current = tf.floor(int(now))
    row_starts = starts_of(rows)
    if row_starts and min(row_starts) >= start and max(row_starts) <= min(end, current) and (
        len(set(row_starts)) == len(row_starts)
    ):  # the usual answer: every row asked for, one per bucket (checked at once)
        order = sorted(range(len(rows)), key=row_starts.__getitem__)
        if newest is not None:
            order = order[-newest:]
        try:
            return parse_candles(
                [rows[i] for i in order], [row_starts[i] for i in order], tf, closed_before
            )
        except ExchangeError as e:
            raise BadRows(str(e)) from None
    by_start: dict[int, Mapping[str, object]] = {}
    for row, s in zip(rows, row_starts, strict=True):
        if not (start <= s <= end) or s > current:
            continue
        old = by_start.get(s)
        if (
            old is not None
            and any(str(old[f]) != str(row[f]) for f in FIELDS)
            and _parse(old, tf, closed_before) != _parse(row, tf, closed_before)
        ):
            raise BadRows(f"two different candles for bucket {s}")
        by_start[s] = row
    starts = sorted(by_start)
    if newest is not None:
        starts = starts[-newest:]
    try:
        return parse_candles([by_start[s] for s in starts], starts, tf, closed_before)
    except ExchangeError as e:
        raise BadRows(str(e)) from None


def _parse(row: Mapping[str, object], tf: Timeframe, closed_before: float) -> Candle:
    try:
        return parse_candle(row, tf, closed_before)
    except ExchangeError as e:
        raise BadRows(str(e)) from None
