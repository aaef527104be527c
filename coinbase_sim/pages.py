"""Candle pages whose closed buckets are rendered once and reused (an LRU bounded in bytes).

Closed buckets never change, so the JSON of a page's closed part is a pure
function of (product, granularity, first bucket, last closed bucket); only
the in-progress bucket, if the page reaches "now", is built per request.
The body is byte-identical to Market.render(Market.candles(...)[:limit]).
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import OrderedDict

from coinbase_sim.market import EPOCH, Market

_ENTRY_OVERHEAD = 256  # bytes of key, tuple and object headers per cached page


class PageCache:
    """Renders candle response bodies for one process, reusing closed parts."""

    def __init__(self, market: Market, budget_bytes: int) -> None:
        self.market = market
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, int, int, int], tuple[bytes, array]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def render(
        self,
        product_id: str,
        granularity: int,
        first: int,
        last: int,
        limit: int | None,
        now: float,
    ) -> tuple[bytes, int]:
        """(body, number of candles) for buckets first <= start <= last, newest first.

        `limit` (>= 1, or None) keeps the newest `limit` candles, as the endpoint does.
        """
        market = self.market
        if self.budget_bytes <= 0:
            candles = market.candles(product_id, granularity, first, last, now)[:limit]
            return market.render(product_id, candles).encode(), len(candles)
        lo = max(-(-first // granularity) * granularity, EPOCH)
        hi = min(last, math.floor(now)) // granularity * granularity
        live = b""
        if hi >= lo and hi + granularity > now:  # newest bucket still in progress
            candle = market.in_progress(product_id, granularity, hi, now)
            if candle is not None:
                live = market.fragments(product_id, [candle])[0].encode()
            hi -= granularity
        closed, ends = self._closed(product_id, granularity, lo, hi)
        keep = len(ends) if limit is None else max(0, min(len(ends), limit - bool(live)))
        if keep < len(ends):
            closed = closed[: ends[keep - 1]] if keep else b""
        joiner = b"," if live and closed else b""
        body = b'{"candles":[' + live + joiner + closed + b"]}"
        return body, bool(live) + keep

    def _closed(self, product_id: str, granularity: int, lo: int, hi: int) -> tuple[bytes, array]:
        """Closed buckets in [lo, hi] as joined fragments (newest first) and their end offsets."""
        if hi < lo:
            return b"", array("L")
        key = (product_id, granularity, lo, hi)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            self.misses += 1
        market = self.market
        candles = [
            c
            for start in range(hi, lo - 1, -granularity)
            if (c := market.closed(product_id, granularity, start)) is not None
        ]
        parts = [f.encode() for f in market.fragments(product_id, candles)]
        ends = array("L")
        position = -1
        for part in parts:
            position += len(part) + 1
            ends.append(position)
        entry = (b",".join(parts), ends)
        self._store(key, entry)
        return entry

    def _store(self, key: tuple[str, int, int, int], entry: tuple[bytes, array]) -> None:
        size = len(entry[0]) + entry[1].itemsize * len(entry[1]) + _ENTRY_OVERHEAD
        if size > self.budget_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self.budget_bytes:
                _, (text, ends) = self._entries.popitem(last=False)
                self._bytes -= len(text) + ends.itemsize * len(ends) + _ENTRY_OVERHEAD
