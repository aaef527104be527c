"""Deterministic synthetic market data: same seed, same candles, at every granularity.

History is generated top-down so that every granularity is consistent by
construction: a per-product daily log-price random walk fixes each day's
O/H/L/C/V, and each bucket is split into its children (day -> 24 x 1h ->
2 x 30m -> 2 x 15m -> 3 x 5m -> 5 x 1m) from a hash of (seed, product, level,
bucket start).  Children walk a bridge from the parent's open to its close,
one present child touches the parent high and one the parent low exactly, and
the volume is split in integer units.  2h/4h/6h buckets are aggregated from
1h.  Hence a coarse bucket always equals the aggregate of its present
children, and a bucket is absent iff all its 1m children are absent.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple, Protocol

from coinbase_sim.products import CATALOG, VOLUME_DECIMALS, Product

GRANULARITIES: dict[str, int] = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "FOUR_HOUR": 14400,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}

DAY = 86400
LEVEL_SECONDS: tuple[int, ...] = (86400, 3600, 1800, 900, 300, 60)
_LEVEL_OF = {seconds: level for level, seconds in enumerate(LEVEL_SECONDS)}
MINUTE_LEVEL = len(LEVEL_SECONDS) - 1

EPOCH = 1451606400  # 2016-01-01T00:00:00Z: first listed day is the next one
REVERSION = 0.01  # daily pull of the log price towards its long-run level
HORIZON_DAYS = 11000  # walk length (~30 years), beyond it nothing trades


class WalkStore(Protocol):
    """Where a Market finds walks computed elsewhere (coinbase_sim.shared_walks)."""

    def get(self, product_id: str) -> Sequence[float] | None: ...

    def put(self, product_id: str, values: Sequence[float]) -> None: ...


class Candle(NamedTuple):
    """One bucket in integer units: prices in ticks, volume in 1e-8 units."""

    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int


def aggregate(start: int, candles: Iterable[Candle | None]) -> Candle | None:
    """Combine present candles (oldest first) into one bucket; None if none present."""
    present = [c for c in candles if c is not None]
    if not present:
        return None
    return Candle(
        start,
        present[0].open,
        max(c.high for c in present),
        min(c.low for c in present),
        present[-1].close,
        sum(c.volume for c in present),
    )


def _clamp(value: int, low: int, high: int) -> int:
    return low if value < low else high if value > high else value


class Market:
    """All products' candle history for one seed, with bounded caches of closed buckets."""

    def __init__(
        self, seed: int = 1, products: Sequence[Product] = CATALOG, walks: WalkStore | None = None
    ) -> None:
        """`walks`, when given, shares computed walks with other processes."""
        self.seed = seed
        self.products: dict[str, Product] = {p.product_id: p for p in products}
        self._walks: dict[str, Sequence[float]] = {}
        self._walk_store = walks
        self._walk_lock = threading.Lock()
        self._calls: Iterator[int] = itertools.count()
        self._day = lru_cache(maxsize=65536)(self._day_uncached)
        self._children = lru_cache(maxsize=65536)(self._children_uncached)
        self._multi_hour = lru_cache(maxsize=65536)(self._multi_hour_uncached)

    # ----------------------------------------------------------------- public
    def candles(
        self, product_id: str, granularity: int, first: int, last: int, now: float
    ) -> list[Candle]:
        """Buckets with first <= start <= last and start <= now, newest first.

        The bucket containing `now` is in progress: built from the elapsed
        closed minutes plus a partial current minute that changes per call.
        """
        lo = max(-(-first // granularity) * granularity, EPOCH)
        hi = min(last, math.floor(now)) // granularity * granularity
        out: list[Candle] = []
        for start in range(hi, lo - 1, -granularity):
            if start + granularity <= now:
                candle = self.closed(product_id, granularity, start)
            else:
                candle = self.in_progress(product_id, granularity, start, now)
            if candle is not None:
                out.append(candle)
        return out

    def closed(self, product_id: str, granularity: int, start: int) -> Candle | None:
        """The final value of a closed bucket (None when nothing traded)."""
        level = _LEVEL_OF.get(granularity)
        if level is not None:
            return self._node(product_id, level, start)
        return self._multi_hour(product_id, granularity, start)

    def span(self, product_id: str, start: int, end: int) -> Candle | None:
        """The closed bucket [start, end) of any width (minute-aligned): 3m, 8h, 1w, a month...

        Native widths come from closed(); others aggregate the nodes covering the span,
        so every width agrees with the finer buckets it is made of.
        """
        width = end - start
        native = width in _LEVEL_OF or (width % 3600 == 0 and DAY % width == 0)
        if native and start % width == 0:
            return self.closed(product_id, width, start)
        return aggregate(start, self._closed_range(product_id, start, end))

    def close_before(self, product_id: str, t: int) -> int | None:
        """Close (ticks) of the last traded minute that ends at or before `t` (minute-aligned)."""
        day = t - t % DAY
        close = self._last_close_in(product_id, 0, day, t)
        if close is not None:
            return close
        for start in range(day - DAY, EPOCH, -DAY):
            candle = self._node(product_id, 0, start)
            if candle is not None:
                return candle.close
        return None

    def _last_close_in(self, product_id: str, level: int, start: int, t: int) -> int | None:
        node = self._node(product_id, level, start)
        if node is None or start >= t:
            return None
        if start + LEVEL_SECONDS[level] <= t:
            return node.close
        if level == MINUTE_LEVEL:
            return None
        width = LEVEL_SECONDS[level + 1]
        children = self._children(product_id, level, start)
        for index in range(len(children) - 1, -1, -1):
            child_start = start + index * width
            if children[index] is not None and child_start < t:
                close = self._last_close_in(product_id, level + 1, child_start, t)
                if close is not None:
                    return close
        return None

    def first_trade(self, product_id: str) -> int | None:
        """Start of the product's first traded minute (its listing), None if it never trades."""
        for index in range(1, HORIZON_DAYS):
            start = EPOCH + index * DAY
            if self._node(product_id, 0, start) is None:
                continue
            level = 0
            while level < MINUTE_LEVEL:
                children = self._children(product_id, level, start)
                first = next(i for i, c in enumerate(children) if c is not None)
                start += first * LEVEL_SECONDS[level + 1]
                level += 1
            return start
        return None

    def render(self, product_id: str, candles: Sequence[Candle]) -> str:
        """JSON text of {"candles": [...]} with every field a string, as Coinbase sends.

        Formatting costs ~2 us a candle, less than a cache lookup keyed by the candle
        (and a scale run would only miss: every product's candles are new).
        """
        product = self.products[product_id]
        return '{"candles":[' + ",".join([_fragment_text(product, c) for c in candles]) + "]}"

    def reseat_calls(self, counter: Iterator[int]) -> None:
        """Number in-progress draws from `counter` (forked workers take disjoint ones)."""
        self._calls = counter

    def fragments(self, product_id: str, candles: Sequence[Candle]) -> list[str]:
        """The JSON object text of each candle, as joined by render()."""
        product = self.products[product_id]
        return [_fragment_text(product, c) for c in candles]

    def as_dicts(self, product_id: str, candles: Sequence[Candle]) -> list[dict[str, str]]:
        """Candles as Coinbase-shaped dicts of strings."""
        product = self.products[product_id]
        return [_as_dict(product, c) for c in candles]

    # ---------------------------------------------------------------- private
    def _rng(self, product_id: str, level: str | int, start: int) -> random.Random:
        key = f"{self.seed}|{product_id}|{level}|{start}".encode()
        return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))

    def _walk(self, product_id: str) -> Sequence[float]:
        """Daily log-price deviation from the product's price level (mean-reverting walk)."""
        walk = self._walks.get(product_id)
        if walk is not None:
            return walk
        with self._walk_lock:
            walk = self._walks.get(product_id)
            store = self._walk_store
            if walk is None and store is not None:
                walk = store.get(product_id)
            if walk is None:
                walk = self._compute_walk(product_id)
                if store is not None:
                    store.put(product_id, walk)
            self._walks[product_id] = walk
        return walk

    def _compute_walk(self, product_id: str) -> list[float]:
        product = self.products[product_id]
        rng = random.Random(f"{self.seed}|{product_id}|walk")
        level = 0.0
        walk = []
        for _ in range(HORIZON_DAYS):
            shock = rng.gauss(0.0, product.daily_vol)
            if rng.random() < 0.02:  # occasional fat-tailed day
                shock *= 3.0
            level += shock - REVERSION * level  # mean-reverting: prices stay plausible
            walk.append(level)
        return walk

    def _day_uncached(self, product_id: str, start: int) -> Candle | None:
        index = (start - EPOCH) // DAY
        if index < 1 or index >= HORIZON_DAYS:
            return None
        product = self.products[product_id]
        rng = self._rng(product_id, "day", start)
        if rng.random() >= product.presence[0]:
            return None
        walk = self._walk(product_id)
        base = product.base_ticks
        open_ = max(1, round(base * math.exp(walk[index - 1])))
        close = max(1, round(base * math.exp(walk[index])))
        top, bottom = max(open_, close), min(open_, close)
        high = top + round(top * abs(rng.gauss(0.0, product.daily_vol * 0.5)))
        low = max(1, bottom - round(bottom * abs(rng.gauss(0.0, product.daily_vol * 0.5))))
        volume = round(product.daily_volume_units * rng.lognormvariate(0.0, 0.45))
        volume = max(volume, 1440 * 1000)
        return Candle(start, open_, high, low, close, volume)

    def _node(self, product_id: str, level: int, start: int) -> Candle | None:
        if level == 0:
            return self._day(product_id, start)
        parent_seconds = LEVEL_SECONDS[level - 1]
        parent_start = start - start % parent_seconds
        children = self._children(product_id, level - 1, parent_start)
        return children[(start - parent_start) // LEVEL_SECONDS[level]]

    def _children_uncached(
        self, product_id: str, level: int, start: int
    ) -> tuple[Candle | None, ...]:
        """Split the bucket at `level` starting at `start` into its children."""
        width = LEVEL_SECONDS[level + 1]
        count = LEVEL_SECONDS[level] // width
        parent = self._node(product_id, level, start)
        if parent is None:
            return (None,) * count
        product = self.products[product_id]
        rng = self._rng(product_id, level, start)
        presence = product.presence[level + 1]
        present = [i for i in range(count) if rng.random() < presence]
        if not present:
            present = [rng.randrange(count)]
        k = len(present)
        o, h, low, c, v = parent.open, parent.high, parent.low, parent.close, parent.volume

        # Bridge from o to c through k - 1 intermediate points, clamped to [low, h].
        points = [o]
        scale = (h - low) * 0.35 / math.sqrt(k)
        drift = 0.0
        raw = [0.0]
        for _ in range(k):
            drift += rng.gauss(0.0, scale)
            raw.append(drift)
        for j in range(1, k):
            pinned = raw[j] - raw[k] * j / k
            points.append(_clamp(round(o + (c - o) * j / k + pinned), low, h))
        points.append(c)

        hi_child = max(range(k), key=lambda j: (max(points[j], points[j + 1]), rng.random()))
        lo_child = min(range(k), key=lambda j: (min(points[j], points[j + 1]), rng.random()))
        typical = max(1.0, (h - low) / math.sqrt(k) * 0.5)

        # Integer volume split: every present child gets at least its width in
        # minutes (so each descendant minute can own >= 1 unit), the rest by weight.
        minutes = width // 60
        spare = v - k * minutes
        weights = [rng.expovariate(1.0) + 0.25 for _ in range(k)]
        if level == 0:  # intraday profile: busier US afternoon
            weights = [
                w * (1.0 + 0.5 * math.sin((present[j] - 8) / 24 * 2 * math.pi))
                for j, w in enumerate(weights)
            ]
        total = sum(weights)
        shares = [int(spare * w / total) for w in weights]
        shares[rng.randrange(k)] += spare - sum(shares)

        out: list[Candle | None] = [None] * count
        for j, index in enumerate(present):
            co, cc = points[j], points[j + 1]
            top, bottom = max(co, cc), min(co, cc)
            ch = h if j == hi_child else top + round(rng.random() * min(h - top, typical))
            cl = low if j == lo_child else bottom - round(rng.random() * min(bottom - low, typical))
            out[index] = Candle(start + index * width, co, ch, cl, cc, minutes + shares[j])
        return tuple(out)

    def _multi_hour_uncached(self, product_id: str, granularity: int, start: int) -> Candle | None:
        day_start = start - start % DAY
        hours = self._children(product_id, 0, day_start)
        first = (start - day_start) // 3600
        return aggregate(start, hours[first : first + granularity // 3600])

    def _closed_range(self, product_id: str, start: int, end: int) -> list[Candle | None]:
        """Closed nodes exactly covering [start, end), oldest first, largest aligned first."""
        pieces: list[Candle | None] = []
        position = start
        while position < end:
            for level, seconds in enumerate(LEVEL_SECONDS):
                if position % seconds == 0 and position + seconds <= end:
                    pieces.append(self._node(product_id, level, position))
                    position += seconds
                    break
        return pieces

    def in_progress(
        self, product_id: str, granularity: int, start: int, now: float
    ) -> Candle | None:
        """The bucket containing `now` so far; its last minute differs on every call."""
        minute = int(now) // 60 * 60
        pieces = self._closed_range(product_id, start, minute)
        current = self._node(product_id, MINUTE_LEVEL, minute)
        if current is not None:
            call = next(self._calls)
            rng = self._rng(product_id, f"live{call}", minute)
            close = rng.randint(current.low, current.high)
            elapsed = max(0.0, min(1.0, (now - minute) / 60))
            volume = max(1, int(current.volume * elapsed * 0.9)) + call % 97 + 1
            pieces.append(
                Candle(
                    minute,
                    current.open,
                    max(current.open, close),
                    min(current.open, close),
                    close,
                    volume,
                )
            )
        return aggregate(start, pieces)


def _decimal(value: int, decimals: int) -> str:
    if decimals == 0:
        return str(value)
    if value >= 0:  # string slicing: the same text as divmod + format, a third of the cost
        digits = str(value)
        if len(digits) <= decimals:
            digits = "0" * (decimals + 1 - len(digits)) + digits
        return f"{digits[:-decimals]}.{digits[-decimals:]}"
    whole, frac = divmod(value, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}"


def _as_dict(product: Product, c: Candle) -> dict[str, str]:
    d, unit = product.tick_decimals, product.tick_units
    return {
        "start": str(c.start),
        "low": _decimal(c.low * unit, d),
        "high": _decimal(c.high * unit, d),
        "open": _decimal(c.open * unit, d),
        "close": _decimal(c.close * unit, d),
        "volume": _decimal(c.volume, VOLUME_DECIMALS),
    }


_FRAGMENT = '{"start":"%d","low":"%s","high":"%s","open":"%s","close":"%s","volume":"%s"}'


def _fragment_text(product: Product, c: Candle) -> str:
    d, unit, dec = product.tick_decimals, product.tick_units, _decimal
    return _FRAGMENT % (
        c.start,
        dec(c.low * unit, d),
        dec(c.high * unit, d),
        dec(c.open * unit, d),
        dec(c.close * unit, d),
        dec(c.volume, VOLUME_DECIMALS),
    )
