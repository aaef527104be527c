"""What a Coinbase candles answer may contain: its JSON shape (rows are then checked
below the seam, workers/exchange/rows.py).

Each rule turns a bad answer into a `BadRows` with a name (the client makes it an
`InvalidResponse`), never a `TypeError` deep in parsing: the exchange, a proxy or an
attacker on the path can send any JSON at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from operator import itemgetter

from core.jsnum import js_json_loads, js_json_loads_fast
from workers.exchange.rows import FIELDS, BadRows

__all__ = ["BadRows", "candle_rows"]


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


_SCALARS = frozenset((str, int, float))  # JSON booleans are `bool`, not `int`, by type
_row_fields = itemgetter(*FIELDS)


def _row_kinds(rows: list) -> set[type] | None:
    """The types of every row's fields, or None where a row is no object with every field
    (the usual answer checked in one pass; `candle_rows` names what is wrong otherwise)."""
    if not set(map(type, rows)) <= {dict}:
        return None
    try:
        fields = list(chain.from_iterable(map(_row_fields, rows)))
    except KeyError:
        return None
    try:
        "".join(fields)  # the usual answer, every field text: one check
    except TypeError:
        return set(map(type, fields))
    return {str} if fields else set()


def candle_rows(body: bytes) -> list[Mapping[str, object]]:
    """The rows of a `{"candles": [{...}, ...]}` body, each an object with every field."""
    rows = _rows(body, js_json_loads_fast)
    kinds = _row_kinds(rows)
    if kinds == {str}:  # Coinbase's form: every number as text
        return rows
    if kinds is not None and int in kinds:  # beyond 2**53 - 1 only JSON.parse's double will do
        rows = _rows(body, js_json_loads)
        kinds = _row_kinds(rows)
    if kinds is not None and kinds <= _SCALARS:
        return rows
    for i, row in enumerate(rows):  # something is wrong: find and name it
        if not isinstance(row, dict):
            raise BadRows(f"candle #{i} is a JSON {_kind(row)}, not an object")
        for name in FIELDS:
            value = row.get(name)
            kind = type(value)
            if kind is not str and kind is not int and kind is not float:
                raise BadRows(f"candle #{i}: '{name}' is a JSON {_kind(value)}")
    return rows


def _rows(body: bytes, loads) -> list:
    try:
        doc = loads(body)  # NaN/Infinity, as JSON.parse: not JSON
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
    return rows
