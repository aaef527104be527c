"""A cached member, read as the platform's reader reads it (shared/reference/cache-contract.md).

The one reader of what is already in Redis: readiness, the fresh check and the cache
writer count only members that parse here (and whose score is their own timestamp), so a
cache holding junk is never "ready", and `backfill indicators` refuses what the
platform's reader would refuse.
"""

from __future__ import annotations

import math
import re

from core.errors import CacheContractError
from core.jsnum import js_json_loads
from core.series import Series

READER_WINDOW = 200  # the platform reads `ZRANGE key -200 -1`: every one of them must parse
MEMBER_KEYS = ("timestamp", "open", "high", "low", "close", "volume", "symbol", "timeframe")


def validate_member(raw: str | bytes, series: Series, key: str) -> dict:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        m = js_json_loads(text)  # NaN, Infinity, 1e400: what JSON.parse refuses or no price is
    except ValueError:
        raise CacheContractError(f"{key}: member is not JSON: {text[:80]!r}") from None
    if not isinstance(m, dict) or tuple(m) != MEMBER_KEYS:
        raise CacheContractError(f"{key}: member keys are not {MEMBER_KEYS}: {text[:120]!r}")
    ts = m["timestamp"]
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0 or ts % series.timeframe.ms:
        raise CacheContractError(f"{key}: bad timestamp {ts!r}")
    for f in ("open", "high", "low", "close", "volume"):
        v = m[f]
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise CacheContractError(f"{key}: {f} {v!r} is not a number")
        if (v < 0) if f == "volume" else (v <= 0):
            raise CacheContractError(f"{key}: {f} {v!r} out of range")
    if m["symbol"] != series.symbol or m["timeframe"] != series.timeframe.name:
        raise CacheContractError(f"{key}: member is for {m['symbol']} {m['timeframe']}")
    return m


_NUM = rb"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)"
_CANONICAL = re.compile(
    rb'\{"timestamp":([1-9][0-9]{0,15}),"open":' + _NUM + rb',"high":' + _NUM + rb',"low":'
    + _NUM + rb',"close":' + _NUM + rb',"volume":' + _NUM
    + rb',"symbol":"([A-Z0-9-]{1,41})","timeframe":"([0-9a-z]{2,3})"\}'
)


def is_member_at(raw: str | bytes, score: float, series: Series) -> bool:
    """True for a member that parses under the contract and sits at its own timestamp.

    Members as our writer (and the platform's) writes them take a fast path (one regex,
    five floats: the fresh check reads hundreds per series); anything else is parsed in
    full by `validate_member`, so both give the same verdict."""
    data = raw.encode() if isinstance(raw, str) else raw
    m = _CANONICAL.fullmatch(data)
    if m is not None:
        ts, o, h, lo, c, v, sym, tf = m.groups()
        prices = [float(x) for x in (o, h, lo, c)]
        volume = float(v)
        return (
            int(ts) == score
            and int(ts) % series.timeframe.ms == 0
            and sym.decode() == series.symbol
            and tf.decode() == series.timeframe.name
            and all(0 < x < math.inf for x in prices)
            and 0 <= volume < math.inf
        )
    try:
        m = validate_member(raw, series, "")
    except CacheContractError:
        return False
    return m["timestamp"] == score
