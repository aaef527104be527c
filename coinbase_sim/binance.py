"""The Binance spot personality: /api/v3/klines, exchangeInfo, ping and time.

`python -m coinbase_sim --exchange binance` serves these from the same Market
as the Coinbase personality, so one seed gives the same prices on both: the
Binance symbol of a product drops the dash and quotes USD as USDT (BTC-USD ->
BTCUSDT, BTC-EUR -> BTCEUR, ETH-BTC -> ETHBTC; USDT-USD has no symbol).

Klines follow binance-spot-api-docs: arrays of [openTime, open, high, low,
close, volume, closeTime, quoteAssetVolume, trades, takerBuyBase,
takerBuyQuote, "0"], oldest first, prices and volumes as 8-decimal strings,
closeTime = openTime + interval - 1 ms.  A request returns klines with
startTime <= openTime <= endTime: the first `limit` from startTime, else the
last `limit` up to endTime (or up to now); klines before the product's first
trade and in the future never come back; the newest one is in progress when
the range reaches now.  An interval without trades comes back as a
zero-volume kline with open = high = low = close = the previous close
(`zero_volume_klines`, Binance's behaviour), or is omitted (Coinbase's).

Weights (per IP per calendar minute, coinbase_sim.binance_limits): klines 2,
exchangeInfo 20, ping 1, time 1.  Order of checks: ban (418), weight (429),
injected fault (klines only), then argument validation.
"""

from __future__ import annotations

import calendar
import json
import math
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from coinbase_sim.binance_limits import BinanceStats, WeightDecision, WeightLimiter
from coinbase_sim.config import Settings
from coinbase_sim.market import DAY, Candle, Market
from coinbase_sim.products import VOLUME_DECIMALS, Product

if TYPE_CHECKING:
    from coinbase_sim.server import Handler

WEIGHTS = {"klines": 2, "exchangeInfo": 20, "ping": 1, "time": 1}
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
RAW_REQUESTS_PER_5M = 61000
DECIMALS = 8
WEEK_OFFSET = 4 * DAY  # 1970-01-05 was a Monday: weekly klines open on Mondays

INTERVALS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": DAY,
    "3d": 3 * DAY,
    "1w": 7 * DAY,
    "1M": 0,  # calendar months
}

KLINES_PATH = "/api/v3/klines"
TRUTH_PATH = re.compile(r"/_sim/klines/([^/]+)")

HTML_503 = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
HTML_200 = b"<html><head><title>Binance</title></head><body>Please wait...</body></html>"


class BinanceError(Exception):
    """A request refused with Binance's {"code", "msg"} body."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.body = json.dumps({"code": code, "msg": msg}, separators=(",", ":")).encode()


def _mandatory(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _illegal(name: str) -> BinanceError:
    msg = f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
    return BinanceError(400, -1100, msg)


INVALID_SYMBOL = BinanceError(400, -1121, "Invalid symbol.")
INVALID_INTERVAL = BinanceError(400, -1120, "Invalid interval.")


def symbol_of(product_id: str) -> str | None:
    """The Binance symbol for a model product (None when it has none)."""
    base, _, quote = product_id.partition("-")
    quote = "USDT" if quote == "USD" else quote
    if not quote or base == quote:
        return None
    return base + quote


# ------------------------------------------------------------------ intervals
@dataclass(frozen=True)
class Interval:
    """Bucket arithmetic for one kline interval (fixed width, or calendar months)."""

    name: str
    seconds: int  # 0 for months

    def floor(self, t: int) -> int:
        """Open time of the kline containing `t`."""
        if self.seconds == 0:
            moment = datetime.fromtimestamp(t, UTC)
            return calendar.timegm((moment.year, moment.month, 1, 0, 0, 0))
        offset = WEEK_OFFSET if self.name == "1w" else 0
        return t - (t - offset) % self.seconds

    def next(self, start: int) -> int:
        """Open time of the following kline."""
        if self.seconds == 0:
            moment = datetime.fromtimestamp(start, UTC)
            year, month = divmod(moment.year * 12 + moment.month, 12)
            return calendar.timegm((year, month + 1, 1, 0, 0, 0))
        return start + self.seconds

    def previous(self, start: int) -> int:
        """Open time of the kline before."""
        if self.seconds == 0:
            return self.floor(start - 1)
        return start - self.seconds

    def ceil(self, t: int) -> int:
        """Open time of the first kline opening at or after `t`."""
        start = self.floor(t)
        return start if start == t else self.next(start)


# ------------------------------------------------------------------ state
class BinanceState:
    """What the Binance routes share: symbol table, weight limiter, stats, listing times."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.symbols: dict[str, str] = {}
        for product_id in market.products:
            symbol = symbol_of(product_id)
            if symbol is not None and symbol not in self.symbols:
                self.symbols[symbol] = product_id
        self.limiter = WeightLimiter()
        self.stats = BinanceStats()
        self._listings: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Zero the stats and forget every weight and ban."""
        self.limiter.reset()
        self.stats.reset()

    def listing(self, product_id: str) -> int | None:
        """First traded minute of a product (cached)."""
        with self._lock:
            if product_id in self._listings:
                return self._listings[product_id]
        first = self.market.first_trade(product_id)
        with self._lock:
            self._listings[product_id] = first
        return first

    # ------------------------------------------------------------ klines
    def klines(
        self,
        product_id: str,
        interval: Interval,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now: float,
        zero_volume: bool,
        closed_only: bool = False,
    ) -> list[str]:
        """JSON texts of the klines a request returns, oldest first."""
        listing = self.listing(product_id)
        if listing is None:
            return []
        current = interval.floor(math.floor(now))
        last = interval.previous(current) if closed_only else current
        first = interval.floor(listing)
        if end_ms is not None:
            last = min(last, interval.floor(end_ms // 1000))
        starts: list[int] = []
        if start_ms is not None:
            start = max(first, interval.ceil(-(-start_ms // 1000)))
            while start <= last and len(starts) < limit:
                starts.append(start)
                start = interval.next(start)
        else:
            start = last
            while start >= first and len(starts) < limit:
                starts.append(start)
                start = interval.previous(start)
            starts.reverse()
        if not starts:
            return []
        product = self.market.products[product_id]
        previous: int | None = None
        if zero_volume:
            previous = self.market.close_before(product_id, starts[0])
        out: list[str] = []
        for start in starts:
            end = interval.next(start)
            if end <= now:
                candle = self.market.span(product_id, start, end)
            else:
                candle = self.market.in_progress(product_id, end - start, start, now)
            if candle is not None:
                out.append(_kline(product, candle, end))
                previous = candle.close
            elif zero_volume and previous is not None:
                out.append(_empty_kline(product, start, end, previous))
        return out


def _price_scale(product: Product) -> int:
    return product.tick_units * 10 ** (DECIMALS - product.tick_decimals)


def _fixed(value: int) -> str:
    whole, frac = divmod(value, 10**DECIMALS)
    return f"{whole}.{frac:0{DECIMALS}d}"


def _taker_share(start: int) -> int:
    """A deterministic taker-buy share of a kline's volume, in thousandths (350..649)."""
    return 350 + (start // 60 * 2654435761) % (1 << 32) % 300


def _kline(product: Product, c: Candle, end: int) -> str:
    scale = _price_scale(product)
    assert VOLUME_DECIMALS == DECIMALS
    typical = (c.open + c.high + c.low + c.close) * scale // 4
    quote = c.volume * typical // 10**DECIMALS
    trades = max(1, c.volume * 200_000 // max(1, product.daily_volume_units))
    share = _taker_share(c.start)
    taker = c.volume * share // 1000
    return (
        f'[{c.start * 1000},"{_fixed(c.open * scale)}","{_fixed(c.high * scale)}",'
        f'"{_fixed(c.low * scale)}","{_fixed(c.close * scale)}","{_fixed(c.volume)}",'
        f'{end * 1000 - 1},"{_fixed(quote)}",{trades},"{_fixed(taker)}",'
        f'"{_fixed(quote * share // 1000)}","0"]'
    )


def _empty_kline(product: Product, start: int, end: int, close: int) -> str:
    price = _fixed(close * _price_scale(product))
    zero = _fixed(0)
    return (
        f'[{start * 1000},"{price}","{price}","{price}","{price}","{zero}",'
        f'{end * 1000 - 1},"{zero}",0,"{zero}","{zero}","0"]'
    )


# ------------------------------------------------------------------ requests
def _one(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _number(query: dict[str, list[str]], name: str) -> int | None:
    text = _one(query, name)
    if text == "":
        return None
    if not text.isdigit() or len(text) > 20:
        raise _illegal(name)
    return int(text)


def parse_klines(
    state: BinanceState, query: dict[str, list[str]]
) -> tuple[str, Interval, int | None, int | None, int]:
    """Validate symbol/interval/startTime/endTime/limit as Binance does."""
    symbol = _one(query, "symbol")
    if not symbol:
        raise _mandatory("symbol")
    name = _one(query, "interval")
    if not name:
        raise _mandatory("interval")
    start_ms, end_ms = _number(query, "startTime"), _number(query, "endTime")
    limit = _number(query, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    elif not 1 <= limit <= MAX_LIMIT:
        raise BinanceError(
            400, -1100, f"Illegal value for parameter 'limit'; legal range is [1, {MAX_LIMIT}]."
        )
    product_id = state.symbols.get(symbol)
    if product_id is None:
        raise INVALID_SYMBOL
    seconds = INTERVALS.get(name)
    if seconds is None:
        raise INVALID_INTERVAL
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise BinanceError(400, -1023, "Start time is greater than end time.")
    return product_id, Interval(name, seconds), start_ms, end_ms, limit


def exchange_info(
    state: BinanceState, settings: Settings, now: float, symbols: list[str] | None
) -> dict[str, Any]:
    """The exchangeInfo document (optionally for some symbols only)."""
    wanted = list(state.symbols) if symbols is None else symbols
    listed = []
    for symbol in wanted:
        product_id = state.symbols.get(symbol)
        if product_id is None:
            raise INVALID_SYMBOL
        listed.append(_symbol_info(symbol, state.market.products[product_id]))
    return {
        "timezone": "UTC",
        "serverTime": math.floor(now * 1000),
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": settings.weight_limit,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": RAW_REQUESTS_PER_5M,
            },
        ],
        "exchangeFilters": [],
        "symbols": listed,
    }


def _symbol_info(symbol: str, product: Product) -> dict[str, Any]:
    base, _, quote = product.product_id.partition("-")
    quote = "USDT" if quote == "USD" else quote
    tick = _fixed(_price_scale(product))
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": DECIMALS,
        "quoteAsset": quote,
        "quotePrecision": DECIMALS,
        "quoteAssetPrecision": DECIMALS,
        "baseCommissionPrecision": DECIMALS,
        "quoteCommissionPrecision": DECIMALS,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": "0.00001000",
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _symbols_param(query: dict[str, list[str]]) -> list[str] | None:
    if symbol := _one(query, "symbol"):
        return [symbol]
    if text := _one(query, "symbols"):
        try:
            symbols = json.loads(text)
        except json.JSONDecodeError:
            symbols = None
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'symbols'.")
        return symbols
    return None


ENDPOINTS = {
    "/api/v3/klines": "klines",
    "/api/v3/exchangeInfo": "exchangeInfo",
    "/api/v3/ping": "ping",
    "/api/v3/time": "time",
}


def serve_api(handler: Handler, path: str, query: dict[str, list[str]]) -> None:
    """Answer one /api/... request of the Binance personality."""
    state = handler.server.state
    binance = state.binance
    assert binance is not None
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        handler._send(404, b"", "text/html")
        return
    settings = state.store.current
    series = None
    if endpoint == "klines":
        series = f"{_one(query, 'symbol')}:{_one(query, 'interval')}"
    binance.stats.arrival(endpoint, series)
    delay = state.faults.latency_s(settings) if endpoint == "klines" else 0.0
    ip = handler.client_address[0]
    now = state.now()
    decision = binance.limiter.admit(
        ip,
        WEIGHTS[endpoint],
        now,
        settings.weight_limit,
        settings.rate_limits,
        settings.ban_after,
        settings.ban_duration_s,
    )
    binance.stats.weight(f"ip:{ip}", decision)
    headers = {"X-MBX-USED-WEIGHT-1M": str(decision.used)}
    reply = _Reply(handler, binance.stats, delay, headers)
    if decision.status != 200:
        reply.refused(decision, settings)
        return

    fault = state.faults.draw(settings) if endpoint == "klines" else None
    if fault == "p429":
        minute_end = (math.floor(now) // 60 + 1) * 60
        headers["Retry-After"] = str(max(1, math.ceil(minute_end - now)))
        reply.error(BinanceError(429, -1003, _too_much(settings)), fault)
        return
    if fault == "p500":
        msg = "An unknown error occurred while processing the request."
        reply.error(BinanceError(500, -1000, msg), fault)
        return
    if fault == "p503":
        reply.send(503, HTML_503, "text/html", fault=fault)
        return
    if fault == "ptimeout":
        handler._drop(settings)
        return
    if fault == "pnonjson":
        reply.send(200, HTML_200, "text/html", fault=fault)
        return

    try:
        if endpoint == "klines":
            product_id, interval, start_ms, end_ms, limit = parse_klines(binance, query)
            rows = binance.klines(
                product_id, interval, start_ms, end_ms, limit, now, settings.zero_volume_klines
            )
            body = ("[" + ",".join(rows) + "]").encode()
            if fault == "ptruncated":
                body = body[: max(1, len(body) // 2)]
            reply.send(200, body, "application/json", fault=fault, klines=len(rows))
        elif endpoint == "exchangeInfo":
            info = exchange_info(binance, settings, now, _symbols_param(query))
            reply.send(200, json.dumps(info).encode(), "application/json")
        elif endpoint == "ping":
            reply.send(200, b"{}", "application/json")
        else:
            body = json.dumps({"serverTime": math.floor(now * 1000)}).encode()
            reply.send(200, body, "application/json")
    except BinanceError as error:
        reply.error(error)


def _too_much(settings: Settings) -> str:
    return (
        f"Too much request weight used; current limit is {settings.weight_limit} request "
        "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling "
        "the API."
    )


@dataclass
class _Reply:
    handler: Handler
    stats: BinanceStats
    delay: float
    headers: dict[str, str]

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        fault: str | None = None,
        klines: int = 0,
    ) -> None:
        self.stats.response(str(status), klines=klines, fault=fault)
        if self.delay > 0:
            self.handler.server.state.stopping.wait(self.delay)
        self.handler._send(status, body, content_type, self.headers)

    def error(self, error: BinanceError, fault: str | None = None) -> None:
        self.send(error.status, error.body, "application/json", fault=fault)

    def refused(self, decision: WeightDecision, settings: Settings) -> None:
        self.headers["Retry-After"] = str(decision.retry_after_s)
        if decision.status == 429:
            self.error(BinanceError(429, -1003, _too_much(settings)))
            return
        msg = (
            f"Way too much request weight used; IP banned until {decision.banned_until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
        self.error(BinanceError(418, -1003, msg))


def serve_truth(handler: Handler, symbol: str, query: dict[str, list[str]]) -> None:
    """GET /_sim/klines/{symbol}?interval=&startTime=&endTime=: closed klines, no limits."""
    state = handler.server.state
    binance = state.binance
    assert binance is not None
    try:
        product_id = binance.symbols.get(symbol)
        if product_id is None:
            raise INVALID_SYMBOL
        name = _one(query, "interval")
        seconds = INTERVALS.get(name)
        if seconds is None:
            raise INVALID_INTERVAL
        start_ms, end_ms = _number(query, "startTime"), _number(query, "endTime")
        if start_ms is None or end_ms is None:
            raise _mandatory("startTime" if start_ms is None else "endTime")
    except BinanceError as error:
        handler._send(error.status, error.body, "application/json")
        return
    settings = state.store.current
    rows = binance.klines(
        product_id,
        Interval(name, seconds),
        start_ms,
        end_ms,
        1 << 62,
        state.now(),
        settings.zero_volume_klines,
        closed_only=True,
    )
    handler._send(200, ("[" + ",".join(rows) + "]").encode(), "application/json")
