"""Fill one series: look at the cache, fetch only what is missing, write the newest closed candles.

- fresh: the cache already holds the latest closed bucket and enough candles: no request.
- tail: the cache is behind: fetch from its newest bucket (one bucket of overlap) to now,
  paginated, up to the cache's 1000 buckets: every missed bucket is filled (no hole after
  an outage), in one request in the normal case. An answer without the overlap bucket
  (which the cache holds, so it had trades) contradicts the cache: it is retried, never
  written, and the "checked up to" mark does not move past it.
- cold: fetch the newest `candle_count` buckets, and further back while gaps (no trades)
  leave fewer than `candle_count` closed candles. A cache holding junk (members that break
  the contract, in the window the platform reads) is refetched cold and the junk removed
  in the same write; a key of another type fails the series, naming the key.

Where the exchange rejects FOUR_HOUR, 4h is derived from 1h (and the rejection remembered
for the run, so later 4h series go straight to 1h); the outcome says `derived`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core import defaults
from core.candle import Candle, aggregate
from core.errors import BadRequest, CacheContractError, InvalidResponse
from core.freshness import fresh_outcome, is_fresh, reader_window
from core.outcome import Outcome
from core.series import Series
from core.timeframe import Timeframe, timeframe
from workers.cache import ANNOUNCE_NEWEST, MAX_MEMBERS, CandleStore
from workers.exchange.client import CandleClient
from workers.trace import trace

MAX_LOOKBACK_PAGES = 4  # how far beyond candle_count to look for candles on illiquid series
H1 = timeframe("1h")


@dataclass
class FetchOptions:
    candle_count: int = defaults.CANDLE_COUNT
    min_candles: int = defaults.MIN_CANDLES
    full: bool = False
    # close events: a startup write announces its newest candle, a refresh every new one
    announce: int = ANNOUNCE_NEWEST


class FourHourMemory:
    """Where 'the exchange rejects FOUR_HOUR' is remembered for a run (Redis in the tasks)."""

    def rejected(self) -> bool:
        return False

    def remember(self) -> None:
        pass


def is_granularity_rejection(e: BadRequest) -> bool:
    return "granularity" in e.detail and "not a valid value" in e.detail


def fill_series(
    series: Series,
    client: CandleClient,
    cache: CandleStore,
    options: FetchOptions,
    four_hour: FourHourMemory | None = None,
    now: float | None = None,
) -> Outcome:
    """Bring one series up to date in the cache and say what was done."""
    t0 = time.monotonic()
    tf = series.timeframe
    now = time.time() if now is None else now
    requests_before = client.requests_made
    out = Outcome(series=series.name, symbol=series.symbol, timeframe=tf.name)
    last_closed = tf.last_closed_start(now)
    n = options.candle_count

    window = reader_window(n)
    state = cache.state(series, last_closed, n, window)
    if state.problem is not None:
        raise CacheContractError(state.problem)
    enough = state.count >= n or state.exhausted
    if not options.full and is_fresh(state, tf, now, n):
        out.mode = "fresh"
    elif (
        not options.full
        and not state.junk
        and enough
        and state.newest_start is not None
        and (last_closed - state.newest_start) // tf.seconds < MAX_MEMBERS
    ):
        out.mode = "tail"  # one bucket of overlap: the newest cached one is fetched again
        candles = _fetch(series, client, state.newest_start, now, four_hour, out)
        closed = [c for c in candles if c.closed]
        if not any(c.start == state.newest_start for c in closed):
            raise InvalidResponse(
                f"the answer lacks bucket {state.newest_start}, which the cache holds "
                "(it had trades): not trusted",
                product=series.symbol,
                timeframe=tf.name,
            )
        written = cache.write(
            series,
            closed,
            checked_upto=_checked_upto(client, tf, now),
            exhausted=state.exhausted,
            announce=options.announce,
            exhausted_at=state.exhausted_at,  # a tail does not renew it: it is rechecked
            read_back=(last_closed, n),
        )
        trace.mark("written")
        out.candles_written, out.announced = len(closed), written.announced
    else:
        out.mode = "cold"
        closed = _fetch_newest(series, client, n, now, four_hour, out)[-n:]
        written = cache.write(
            series,
            closed,
            checked_upto=_checked_upto(client, tf, now),
            exhausted=len(closed) < n,
            announce=options.announce,
            junk=state.junk,
            read_back=(last_closed, n),
        )
        trace.mark("written")
        out.candles_written, out.announced = len(closed), written.announced
    if out.mode != "fresh":  # the junk went with the write: the newest n say the rest
        state = written.state
    done = fresh_outcome(series, state, options.min_candles, now=now, n=n)
    out.candles_cached, out.newest_ts, out.gaps = done.candles_cached, done.newest_ts, done.gaps
    out.requests = client.requests_made - requests_before
    out.ready = done.ready
    if not out.ready and state.count >= options.min_candles:
        out.reason = done.reason
    elif not out.ready:
        out.reason = (
            f"only {out.candles_cached} closed candles exist in the newest "
            f"{max(n, client.cap - 1) + MAX_LOOKBACK_PAGES * (client.cap - 1)} {tf.name} "
            f"buckets (no trades); {options.min_candles} needed"
        )
    out.elapsed_s = round(time.monotonic() - t0, 4)
    return out


def _checked_upto(client: CandleClient, tf: Timeframe, now: float) -> int:
    """The newest bucket that had closed when we asked, by both clocks (the exchange's may
    lag: it cannot have had buckets that had not closed for it; see `clock.closed_before`)."""
    judged = client.last_server_time or now
    return tf.last_closed_start(min(now, judged))


def _fetch_newest(
    series: Series, client: CandleClient, n: int, now: float, four_hour, out: Outcome
) -> list[Candle]:
    """The newest n closed candles, looking further back a page at a time through gaps.

    The first request asks for a whole page (same cost: one request) so that buckets
    without trades rarely cost a second request, which would queue behind the budget.
    """
    tf = series.timeframe
    end = tf.floor(int(now))  # the in-progress bucket, fetched and dropped
    # An exchange that answers empty intervals too (Binance) needs no more than n; one that
    # omits them (Coinbase) gets a whole page for the same one request's cost.
    span = n if client.dense else max(n, client.cap - 1)
    start = end - span * tf.seconds
    # n + 1 newest: n closed ones even if the newest is still in progress
    first_page = _fetch(series, client, start, now, four_hour, out, newest=n + 1)
    closed = [c for c in first_page if c.closed]
    for _ in range(MAX_LOOKBACK_PAGES):
        if len(closed) >= n:
            break
        older_end = start - tf.seconds
        start = start - (client.cap - 1) * tf.seconds
        older = _fetch(series, client, start, older_end, four_hour, out)
        closed = [c for c in older if c.closed] + closed
    return closed


def _fetch(
    series: Series,
    client: CandleClient,
    start: int,
    end: float,
    four_hour,
    out: Outcome,
    newest: int | None = None,
) -> list[Candle]:
    tf = series.timeframe
    if tf.name == "4h" and four_hour is not None and four_hour.rejected():
        return _derive_4h(series, client, start, end, out)
    try:
        return client.get_candles(series.symbol, tf, start, int(end), newest=newest)
    except BadRequest as e:
        if tf.name != "4h" or not is_granularity_rejection(e):
            raise
        if four_hour is not None:
            four_hour.remember()
        return _derive_4h(series, client, start, end, out)


def _derive_4h(
    series: Series, client: CandleClient, start: int, end: float, out: Outcome
) -> list[Candle]:
    """4h from 1h: only 4h buckets whose whole span was fetched and has closed."""
    out.derived = True
    tf4: Timeframe = series.timeframe
    lo, last = tf4.floor(start), tf4.floor(int(end))
    hourly = client.get_candles(series.symbol, H1, lo, last + tf4.seconds - H1.seconds)
    judged = min(time.time(), client.last_server_time or time.time())  # never the exchange's
    hi = min(last + tf4.seconds, H1.floor(int(judged)))  # [lo, hi) fetched and closed
    return aggregate(hourly, tf4, H1, fetched=(lo, hi))
