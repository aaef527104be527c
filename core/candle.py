"""One OHLCV candle: parsed from the exchange's strings, validated, written as the cache's JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import TypeVar

from core.errors import TransientError
from core.jsnum import PLAIN_DECIMAL, NumberTextError, js_decimal, js_integer, js_number
from core.text import clean_text
from core.timeframe import Timeframe

_N = TypeVar("_N", int, float)
_INF = math.inf
# The exchanges' usual number text (`PLAIN_DECIMAL`), a page's numbers joined by commas
_PLAIN_LIST = re.compile(f"{PLAIN_DECIMAL}(?:,{PLAIN_DECIMAL})*")
_ROW_NUMBERS = itemgetter("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Candle:
    start: int  # bucket start, UNIX seconds
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = True
    # The exchange's exact decimal text, so that summing volumes (4h from 1h) gives the
    # float the exchange's own 4h candle parses to, not one rounded differently.
    volume_text: str | None = field(default=None, compare=False, repr=False)

    @property
    def timestamp_ms(self) -> int:
        return self.start * 1000

    def problem(self, timeframe: Timeframe) -> str | None:
        """Why this candle must not be cached, or None when it is sound."""
        o, h, lo, c, v = self.open, self.high, self.low, self.close, self.volume
        for x in (o, h, lo, c, v):
            if not isinstance(x, float) or not -_INF < x < _INF:  # NaN compares false
                return "non-finite value"
        if self.start <= 0 or self.start % timeframe.seconds:
            return f"start {self.start} is not aligned to {timeframe.name}"
        if o <= 0 or h <= 0 or lo <= 0 or c <= 0:
            return "price <= 0"
        if v < 0:
            return "volume < 0"
        if not (lo <= o <= h and lo <= c <= h):
            return "low <= open/close <= high does not hold"
        return None

    def member(self, symbol: str, timeframe: str) -> str:
        """The cache contract's member, byte for byte what the platform's own writer stores
        (`JSON.stringify`: keys in the contract's order, numbers as JavaScript prints them,
        `310` not `310.0`). Symbol and timeframe are validated names: no escaping needed."""
        # `repr` is already JavaScript's text for a finite, non-integral float in
        # [1e-4, 1e16) (`js_number`): the usual candle's five, checked at once
        reprs = f"{self.open!r}|{self.high!r}|{self.low!r}|{self.close!r}|{self.volume!r}|"
        if "e" in reprs or "n" in reprs or ".0|" in reprs:
            o, h, lo, c, v = map(js_number, (self.open, self.high, self.low, self.close,
                                             self.volume))  # fmt: skip
        else:
            o, h, lo, c, v, _ = reprs.split("|")
        return (
            f'{{"timestamp":{self.start * 1000},"open":{o},"high":{h},"low":{lo},'
            f'"close":{c},"volume":{v},"symbol":"{symbol}","timeframe":"{timeframe}"}}'
        )


def parse_candle(
    raw: Mapping[str, object],
    timeframe: Timeframe,
    closed_before: float,
    *,
    start: int | None = None,
) -> Candle:
    """Parse one exchange candle; `closed_before` is the exchange time at the response
    (`start`: the row's start, already read from it by the caller).

    A malformed candle means the exchange sent something broken, which a retry may fix.
    Every number is read in the strict decimal grammar (`core.jsnum.js_decimal`): never with
    `float`/`int`, which take `"1_5"` (or 15 in Arabic-Indic digits) as 15 where JavaScript
    reads NaN.
    """
    try:
        if start is None:
            start = _read(raw, "start", js_integer)
        volume_text = str(raw["volume"])
        candle = Candle(  # positional: the fields' order (a per-candle cost, ~10^5 a run)
            start,
            _read(raw, "open", js_decimal),
            _read(raw, "high", js_decimal),
            _read(raw, "low", js_decimal),
            _read(raw, "close", js_decimal),
            _read(raw, "volume", js_decimal),
            start + timeframe.seconds <= closed_before,
            volume_text if _exact_decimal(volume_text) else None,
        )
    except (KeyError, TypeError, ValueError) as e:
        shown = clean_text(repr(raw)[:400], 160)
        raise TransientError(f"malformed candle {shown}: {clean_text(e, 80)}") from None
    problem = candle.problem(timeframe)
    if problem:
        raise TransientError(f"invalid candle at {candle.start}: {problem}")
    return candle


def parse_candles(
    rows: Sequence[Mapping[str, object]],
    starts: Sequence[int],
    timeframe: Timeframe,
    closed_before: float,
) -> list[Candle]:
    """`parse_candle` for each row (whose start the caller has read), the same candles and
    the same errors. A page whose numbers are all plain text (the usual answer) is checked
    and converted at once, and its sound candles built in one pass; on any other page each
    row is tried alone the same way, and what is not plain or not sound goes through
    `parse_candle`, which says what is wrong."""
    texts = _plain_texts(rows)
    if texts is not None:
        return _built(rows, starts, texts, timeframe, closed_before)
    out = []
    for row, start in zip(rows, starts, strict=True):
        one = _plain_texts([row])
        if one is None:
            out.append(parse_candle(row, timeframe, closed_before, start=start))
        else:
            out += _built([row], [start], one, timeframe, closed_before)
    return out


def _plain_texts(rows: Sequence[Mapping[str, object]]) -> list[str] | None:
    """Every row's five numbers, in order, where all of them are plain number text (one
    check for the page); None where any is not (a field missing, not text, or other text)."""
    try:
        texts = list(chain.from_iterable(map(_ROW_NUMBERS, rows)))
        joined = ",".join(texts)  # TypeError unless every one is text
    except (KeyError, TypeError):
        return None
    # as many pieces as texts (no text holds the separator), each one plain number text
    if joined.count(",") != len(texts) - 1 or not _PLAIN_LIST.fullmatch(joined):
        return None
    return texts


def _built(
    rows: Sequence[Mapping[str, object]],
    starts: Sequence[int],
    texts: list[str],
    timeframe: Timeframe,
    closed_before: float,
) -> list[Candle]:
    """Rows whose numbers are plain text (`texts`, five a row): a sound one becomes its
    candle here, any other goes through `parse_candle` for its error."""
    out = []
    g = timeframe.seconds
    values = iter(map(float, texts))  # plain text: >= 0, never NaN; finite once below inf
    for row, start, (o, h, lo, c, v), vt in zip(
        rows,
        starts,
        zip(values, values, values, values, values, strict=True),
        texts[4::5],
        strict=True,
    ):
        if start > 0 and start % g == 0 and lo > 0 and lo <= o <= h and lo <= c <= h and (
            h < _INF and v < _INF
        ):
            out.append(Candle(start, o, h, lo, c, v, start + g <= closed_before, vt))
        else:
            out.append(parse_candle(row, timeframe, closed_before, start=start))
    return out


def _read(raw: Mapping[str, object], name: str, read: Callable[[str], _N]) -> _N:
    """One number of the row, in the strict grammar; a bad one is named with its field."""
    try:
        return read(str(raw[name]))
    except NumberTextError as e:
        raise TransientError(f"invalid candle: {name} {clean_text(e, 80)}") from None


def _exact_decimal(text: str) -> bool:
    """Whether `Decimal` holds the text (it refuses an exponent beyond its limits, which the
    grammar allows: such a volume is summed as floats instead)."""
    if "e" not in text and "E" not in text:
        return True  # no exponent: any text in the grammar
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def merge(*pages: Iterable[Candle]) -> list[Candle]:
    """Merge pages into one oldest-first list with one candle per bucket.

    Where pages overlap, a closed candle wins over an in-progress one, and a later page
    wins over an earlier one (it saw more of the bucket).
    """
    by_start: dict[int, Candle] = {}
    for page in pages:
        for c in page:
            old = by_start.get(c.start)
            if old is None or c.closed or not old.closed:
                by_start[c.start] = c
    return [by_start[s] for s in sorted(by_start)]


def aggregate(
    children: list[Candle], into: Timeframe, child: Timeframe, *, fetched: tuple[int, int]
) -> list[Candle]:
    """Build `into` buckets from closed `child` buckets (e.g. 4h from 1h).

    `fetched` is the [from, to) range of child buckets that was fetched and has closed.
    Only `into` buckets whose whole span lies inside it are built; an absent child means
    no trades, and a bucket with no child at all stays absent: candles are never invented.
    """
    if into.seconds % child.seconds:
        raise ValueError(f"{into.name} is not a multiple of {child.name}")
    lo, hi = fetched
    groups: dict[int, list[Candle]] = {}
    for c in children:
        if c.closed and lo <= c.start and c.start + child.seconds <= hi:
            groups.setdefault(into.floor(c.start), []).append(c)
    out = []
    for start in sorted(groups):
        if start < lo or start + into.seconds > hi:
            continue
        g = groups[start]
        if all(c.volume_text for c in g):
            exact = sum((Decimal(c.volume_text) for c in g), Decimal(0))
            volume, text = float(exact), str(exact)
        else:
            volume, text = round(math.fsum(c.volume for c in g), 8), None
        out.append(
            Candle(
                start=start,
                open=g[0].open,
                high=max(c.high for c in g),
                low=min(c.low for c in g),
                close=g[-1].close,
                volume=volume,
                closed=True,
                volume_text=text,
            )
        )
    return out
