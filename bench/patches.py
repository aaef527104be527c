"""Experiments only (`python -m bench --patch NAME[,NAME]`): evidence for changes to code
that is not the benchmark's to edit. The workers import this module
(`celery worker --include bench.patches`) and it patches, in the worker process only,
what `BENCH_PATCHES` names:

- `narrow_first_page`: a cold fetch's first request asks 1.5 x candle_count buckets
  (the behaviour before the whole-page first request), to measure what the wide page costs.
- `fast_member`: the cache member written with one %-format instead of `json.dumps`
  (same text: `repr(float)` is what the json module writes for finite floats), and no
  second `problem()` pass in `CandleCache.write` for candles `parse_candle` validated.
"""

from __future__ import annotations

import json
import os

from workers import cache as cache_mod
from workers import candle as candle_mod
from workers import fetch

ACTIVE = {p.strip() for p in os.environ.get("BENCH_PATCHES", "").split(",") if p.strip()}


def _narrow_first_page(series, client, n, now, four_hour, out):
    tf = series.timeframe
    end = tf.floor(int(now))
    span = max(n, min(client.cap - 1, n + n // 2))
    start = end - span * tf.seconds
    closed = [c for c in fetch._fetch(series, client, start, now, four_hour, out) if c.closed]
    for _ in range(fetch.MAX_LOOKBACK_PAGES):
        if len(closed) >= n:
            break
        older_end = start - tf.seconds
        start = start - (client.cap - 1) * tf.seconds
        older = fetch._fetch(series, client, start, older_end, four_hour, out)
        closed = [c for c in older if c.closed] + closed
    return closed


_MEMBER = (
    '{"timestamp":%d,"open":%r,"high":%r,"low":%r,"close":%r,"volume":%r,'
    '"symbol":%s,"timeframe":%s}'
)


def _fast_member(self, symbol, timeframe):
    return _MEMBER % (
        self.start * 1000,
        self.open,
        self.high,
        self.low,
        self.close,
        self.volume,
        json.dumps(symbol),
        json.dumps(timeframe),
    )


def _fast_write(self, series, candles, *, checked_upto=None, exhausted=False):
    args = [self.ttl_s, cache_mod.MAX_MEMBERS, (checked_upto or 0) * 1000, int(exhausted)]
    sym, tf = series.symbol, series.timeframe.name
    for c in candles:
        if not c.closed:
            raise cache_mod.InvalidCandle(f"{series}: candle at {c.start} is still in progress")
        args += [c.start * 1000, c.member(sym, tf)]
    return int(self._write(keys=[self.key(series), self.checked_key(series)], args=args))


if "narrow_first_page" in ACTIVE:
    fetch._fetch_newest = _narrow_first_page
if "fast_member" in ACTIVE:
    candle_mod.Candle.member = _fast_member
    cache_mod.CandleCache.write = _fast_write
