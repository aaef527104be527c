"""What a candles answer may contain: its JSON shape, then which rows we asked for.

Each rule turns a bad answer into a `BadRows` with a name (the client makes it an
`InvalidResponse`), never a `TypeError` deep in parsing: the exchange, a proxy or an
attacker on the path can send any JSON at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.candle import Candle, parse_candle
from core.errors import ExchangeError
from core.jsnum import js_integer, js_json_loads
from core.timeframe import Timeframe

FIELDS = ("start", "low", "high", "open", "close", "volume")


class BadRows(ValueError):
    """The answer is not the candles asked for; the message names what is wrong."""


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def candle_rows(body: bytes) -> list[Mapping[str, object]]:
    """The rows of a `{"candles": [{...}, ...]}` body, each an object with every field."""
    try:
        doc = js_json_loads(body)  # NaN/Infinity, as JSON.parse: not JSON
    except RecursionError:
        raise BadRows("JSON nested too deeply") from None
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError included
        raise BadRows(f"body is not JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise BadRows(f"body is a JSON {_kind(doc)}, not an object")
    if "candles" not in doc:
        raise BadRows("body has no 'candles'")
    rows = doc["candles"]
    if not isinstance(rows, list):
        raise BadRows(f"'candles' is a JSON {_kind(rows)}, not a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadRows(f"candle #{i} is a JSON {_kind(row)}, not an object")
        for name in FIELDS:
            value = row.get(name)
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise BadRows(f"candle #{i}: '{name}' is a JSON {_kind(value)}")
    return rows


def start_of(row: Mapping[str, object]) -> int:
    try:
        return js_integer(str(row["start"]))
    except ValueError:
        raise BadRows(f"candle start {str(row['start'])[:40]!r} is not an integer") from None


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
    by_start: dict[int, Mapping[str, object]] = {}
    for row in rows:
        s = start_of(row)
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
    return [_parse(by_start[s], tf, closed_before) for s in starts]


def _parse(row: Mapping[str, object], tf: Timeframe, closed_before: float) -> Candle:
    try:
        return parse_candle(row, tf, closed_before)
    except ExchangeError as e:
        raise BadRows(str(e)) from None
