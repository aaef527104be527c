"""Experiment only (`python -m bench --wide-first-page`): the cold fetch's first request
asks for `cap - 1` buckets instead of 1.5 x candle_count (same one request), so illiquid
series do not need a second request queued behind the whole fleet's budget slots.

Imported by the workers with `--include bench.wide_first_page`; it patches
`workers.fetch._fetch_newest` in the worker process. Evidence for a proposed change to
`workers/fetch.py`, not part of the default benchmark.
"""

from __future__ import annotations

from workers import fetch

_original = fetch._fetch_newest


def _fetch_newest_wide(series, client, n, now, four_hour, out):
    tf = series.timeframe
    end = tf.floor(int(now))
    start = end - (client.cap - 1) * tf.seconds
    closed = [c for c in fetch._fetch(series, client, start, now, four_hour, out) if c.closed]
    for _ in range(fetch.MAX_LOOKBACK_PAGES):
        if len(closed) >= n:
            break
        older_end = start - tf.seconds
        start = start - (client.cap - 1) * tf.seconds
        older = fetch._fetch(series, client, start, older_end, four_hour, out)
        closed = [c for c in older if c.closed] + closed
    return closed


fetch._fetch_newest = _fetch_newest_wide
