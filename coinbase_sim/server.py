"""HTTP front of the simulator: Coinbase's two candle endpoints plus /_sim/* control routes.

With settings.exchange == "binance" the /api/* routes are Binance spot's instead
(coinbase_sim.binance); the /_sim/* control routes serve both personalities.

A stdlib ThreadingHTTPServer speaking HTTP/1.1 keep-alive (every response has
a Content-Length).  Order of checks on a candle request: authentication
(private endpoint), rate limit, injected fault, then argument validation, as
a client would experience them from the exchange.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from coinbase_sim import binance
from coinbase_sim.config import ConfigError, Settings, SettingsStore, settings_from
from coinbase_sim.faults import FaultInjector
from coinbase_sim.keys import (
    ApiKey,
    KeyFormatError,
    KeyRegistry,
    load_key_file,
    mint_key,
    parse_private_key,
    write_key_file,
)
from coinbase_sim.limits import Decision, RateLimiter, Stats
from coinbase_sim.market import GRANULARITIES, Market
from coinbase_sim.pages import PageCache
from coinbase_sim.products import catalog
from coinbase_sim.shared_control import SharedDocument, SharedKeyRegistry, SharedSettingsStore
from coinbase_sim.shared_faults import SharedFaultInjector
from coinbase_sim.shared_limits import SharedRateLimiter, SharedStats
from coinbase_sim.shared_walks import SharedWalks

PRIVATE_PATH = re.compile(r"/api/v3/brokerage/products/([^/]+)/candles")
PUBLIC_PATH = re.compile(r"/api/v3/brokerage/market/products/([^/]+)/candles")
TRUTH_PATH = re.compile(r"/_sim/truth/([^/]+)")

HTML_429 = b"<html><body><h1>429 Too Many Requests</h1></body></html>"
HTML_503 = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
HTML_200 = b"<html><head><title>Coinbase</title></head><body>Please wait...</body></html>"


class ApiError(Exception):
    """A request refused with a Coinbase-shaped JSON error body."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "error_details": message, "message": message}


def invalid(message: str) -> ApiError:
    """HTTP 400 INVALID_ARGUMENT with Coinbase's body shape."""
    return ApiError(400, "INVALID_ARGUMENT", message)


NOT_FOUND = ApiError(404, "NOT_FOUND", "valid product_id is required")


class SimState:
    """Everything the request handlers share.

    With settings.processes > 1, settings, keys, limits, stats and fault
    streams live in shared memory, so that processes forked after this
    constructor behave as one simulator; market and page cache stay per process.
    """

    def __init__(self, settings: Settings) -> None:
        products = catalog(settings.synthetic_products)
        walks = None
        if settings.processes > 1:
            walks = SharedWalks([p.product_id for p in products])
        self.market = Market(settings.seed, products, walks)
        self.pages = PageCache(self.market, settings.render_cache_mb << 20)
        self.stopping = threading.Event()
        self.binance: binance.BinanceState | None = None
        if settings.exchange == "binance":
            self.binance = binance.BinanceState(self.market)
        self.store: SettingsStore
        self.keys: KeyRegistry
        self.limiter: RateLimiter | SharedRateLimiter
        self.stats: Stats | SharedStats
        if settings.processes > 1:
            self.store = SharedSettingsStore(settings, SharedDocument(settings.public(), 1 << 16))
            self.keys = SharedKeyRegistry(SharedDocument({}))
            self.limiter = SharedRateLimiter()
            self.stats = SharedStats()
            self.faults: FaultInjector = SharedFaultInjector(settings.seed)
        else:
            self.store = SettingsStore(settings)
            self.keys = KeyRegistry()
            self.limiter = RateLimiter()
            self.stats = Stats()
            self.faults = FaultInjector(settings.seed)
        for path in settings.key_files:
            self.keys.load_file(path)

    def as_worker(self, index: int, count: int) -> None:
        """In forked worker `index` of `count`: keep in-progress draws distinct across workers."""
        self.market.reseat_calls(itertools.count(index, count))

    def now(self) -> float:
        """The simulated market clock: real time plus the configured offset."""
        return time.time() + self.store.current.clock_offset_s

    def reset(self) -> None:
        """Zero statistics, rate windows and restart the fault streams."""
        self.stats.reset()
        self.limiter.reset()
        self.faults.reset()
        if self.binance is not None:
            self.binance.reset()


class SimServer(ThreadingHTTPServer):
    """The listening simulator; `state` holds market, keys, limits and stats."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], state: SimState, listener: socket.socket | None = None
    ) -> None:
        """Bind `address`, or serve on `listener` (already bound, shared with other processes)."""
        self.state = state
        if listener is None:
            super().__init__(address, Handler)
            return
        super().__init__(listener.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = listener.getsockname()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8123."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def shutdown(self) -> None:
        """Stop serving and release requests held by timeout faults."""
        self.state.stopping.set()
        super().shutdown()


def parse_candle_query(
    query: dict[str, list[str]], settings: Settings
) -> tuple[str, int, int, int, int | None]:
    """Validate start/end/granularity/limit; return (name, seconds, start, end, limit)."""
    name = _one(query, "granularity")
    seconds = GRANULARITIES.get(name)
    if seconds is None or (name == "FOUR_HOUR" and not settings.four_hour):
        raise invalid(f'parsing field "granularity": "{name}" is not a valid value')
    start = _unix(query, "start")
    end = _unix(query, "end")
    if end < start:
        raise invalid("start must be before end")
    cap = settings.cap
    too_many = f"number of candles requested should be less than {cap}"
    if end - start > cap * seconds:
        raise invalid(too_many)
    limit = None
    if _one(query, "limit"):
        try:
            limit = int(_one(query, "limit"))
        except ValueError:
            raise invalid(f'parsing field "limit": "{_one(query, "limit")}"') from None
        if limit < 1:
            raise invalid("limit must be positive")
        if limit > cap:
            raise invalid(too_many)
    return name, seconds, start, end, limit


def _one(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _unix(query: dict[str, list[str]], name: str) -> int:
    text = _one(query, name)
    if not text:
        raise invalid(f"{name} is required")
    try:
        value = int(text)
    except ValueError:
        raise invalid(f'parsing field "{name}": "{text}" is not a valid value') from None
    if value < 0:
        raise invalid(f'parsing field "{name}": "{text}" is not a valid value')
    return value


class Handler(BaseHTTPRequestHandler):
    """One connection; answers Coinbase candle requests and /_sim/* routes."""

    protocol_version = "HTTP/1.1"
    server_version = "coinbase-sim"
    sys_version = ""
    server: SimServer

    def setup(self) -> None:
        """Disable Nagle so small responses leave at once."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """`Date` follows the simulated clock, as the exchange's own clock would."""
        return super().date_time_string(self.server.state.now() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (it would dominate CPU at hundreds of req/s)."""

    # ---------------------------------------------------------------- routing
    def do_GET(self) -> None:
        """Route GET requests."""
        self._drain_body()
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path
        state = self.server.state
        if state.binance is not None and self._binance_get(path, query):
            return
        if match := PRIVATE_PATH.fullmatch(path):
            self._candles(match.group(1), query, path, private=True)
        elif match := PUBLIC_PATH.fullmatch(path):
            self._candles(match.group(1), query, path, private=False)
        elif path == "/_sim/health":
            self._json(200, {"status": "ok", "pid": os.getpid()})
        elif path == "/_sim/stats":
            self._json(200, state.stats.snapshot())
        elif path == "/_sim/config":
            self._json(200, state.store.current.public())
        elif path == "/_sim/products":
            self._json(200, {"products": _product_list(state.market)})
        elif match := TRUTH_PATH.fullmatch(path):
            self._truth(match.group(1), query)
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        """Route POST requests (control plane only)."""
        body = self._drain_body()
        path = urlsplit(self.path).path
        state = self.server.state
        if path == "/_sim/reset":
            state.reset()
            self._json(200, {"status": "reset"})
        elif path == "/_sim/keys":
            self._mint_key(body)
        elif path == "/_sim/config":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ConfigError("body must be a JSON object")
                ban_s = self._ban_request(changes)
                settings = state.store.update(changes)
                if ban_s is not None:
                    self._ban_caller(ban_s)
            except (ConfigError, json.JSONDecodeError) as exc:
                self._json(400, {"error": "INVALID_ARGUMENT", "message": str(exc)})
                return
            self._json(200, settings.public())
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _binance_get(self, path: str, query: dict[str, list[str]]) -> bool:
        """Routes of the Binance personality; False for the shared /_sim/* ones."""
        state = self.server.state
        assert state.binance is not None
        if path.startswith("/api/"):
            binance.serve_api(self, path, query)
        elif path == "/_sim/stats":
            self._json(200, state.binance.stats.snapshot())
        elif path == "/_sim/symbols":
            self._json(200, {"symbols": state.binance.symbols})
        elif match := binance.TRUTH_PATH.fullmatch(path):
            binance.serve_truth(self, match.group(1), query)
        else:
            return False
        return True

    def _ban_request(self, changes: dict[str, Any]) -> float | None:
        """Take `ban_s` (Binance personality: ban the caller now; 0 lifts it) out of `changes`."""
        if self.server.state.binance is None or "ban_s" not in changes:
            return None
        try:
            seconds = float(changes.pop("ban_s"))
        except (TypeError, ValueError):
            raise ConfigError("ban_s must be a number of seconds") from None
        if not 0 <= seconds <= 3 * 86400:
            raise ConfigError("ban_s must be within [0, 259200]")
        return seconds

    def _ban_caller(self, seconds: float) -> None:
        state = self.server.state
        assert state.binance is not None
        state.binance.limiter.ban(self.client_address[0], state.now(), seconds)

    def _mint_key(self, body: bytes) -> None:
        """Mint a key the simulator trusts from now on; optionally write its key file."""
        try:
            request = json.loads(body or b"{}")
            key_type = request.get("key_type", "ec")
            path = request.get("path")
            if path:
                write_key_file(path, key_type)
                key = load_key_file(path)
            else:
                name, secret = mint_key(key_type)
                key = ApiKey(name, secret, parse_private_key(secret))
        except (KeyFormatError, OSError, AttributeError, json.JSONDecodeError) as exc:
            self._json(400, {"error": "INVALID_ARGUMENT", "message": str(exc)})
            return
        self.server.state.keys.add(key.name, key.private_key)
        self._json(200, {"name": key.name, "privateKey": key.secret})

    # ---------------------------------------------------------------- candles
    def _candles(
        self, product_id: str, query: dict[str, list[str]], path: str, private: bool
    ) -> None:
        state = self.server.state
        settings = state.store.current
        series = f"{product_id}:{_one(query, 'granularity')}"
        state.stats.arrival("private" if private else "public", series)
        delay = state.faults.latency_s(settings)
        headers: dict[str, str] = {}

        if private:
            name = state.keys.verify(self._bearer(), path, self.headers.get("Host"))
            if name is None:
                headers = _rate_headers(Decision(False, settings.key_rate, settings.key_rate, 1.0))
                self._finish(delay, 401, b"Unauthorized", "text/plain", headers, "401")
                return
            identity, rate = f"key:{name}", settings.key_rate
        else:
            identity, rate = f"ip:{self.client_address[0]}", settings.ip_rate
        state.stats.identity(identity)
        decision = state.limiter.check(identity, rate, settings.rate_limits)
        if private:
            headers = _rate_headers(decision)
        if not decision.allowed:
            self._throttled(delay, headers, fault=None)
            return

        fault = state.faults.draw(settings)
        if fault == "p429":
            self._throttled(delay, headers, fault=fault)
            return
        if fault == "p500":
            body = _error_body("INTERNAL", "internal server error")
            self._finish(delay, 500, body, "application/json", headers, "500", fault)
            return
        if fault == "p503":
            self._finish(delay, 503, HTML_503, "text/html", headers, "503", fault)
            return
        if fault == "ptimeout":
            self._drop(settings)
            return
        if fault == "pnonjson":
            self._finish(delay, 200, HTML_200, "text/html", headers, "200", fault)
            return

        try:
            _, seconds, start, end, limit = parse_candle_query(query, settings)
            if product_id not in state.market.products:
                raise NOT_FOUND
        except ApiError as error:
            body = json.dumps(error.body).encode()
            self._finish(delay, error.status, body, "application/json", headers, str(error.status))
            return
        body, count = state.pages.render(product_id, seconds, start, end, limit, state.now())
        if fault == "ptruncated":
            body = body[: max(1, len(body) // 2)]
        self._finish(delay, 200, body, "application/json", headers, "200", fault, candles=count)

    def _throttled(self, delay: float, headers: dict[str, str], fault: str | None) -> None:
        state = self.server.state
        if state.faults.html_429():
            self._finish(delay, 429, HTML_429, "text/html", headers, "429", fault)
        else:
            body = _error_body("RATE_LIMIT_EXCEEDED", "Too many requests")
            self._finish(delay, 429, body, "application/json", headers, "429", fault)

    def _drop(self, settings: Settings) -> None:
        """Timeout fault: hold the request past any sane client timeout, or hang up."""
        state = self.server.state
        state.stats.response("timeout", fault="ptimeout")
        if settings.timeout_mode == "hold":
            state.stopping.wait(settings.timeout_hold_s)
        self.close_connection = True

    def _truth(self, product_id: str, query: dict[str, list[str]]) -> None:
        state = self.server.state
        if product_id not in state.market.products:
            self._json(404, NOT_FOUND.body)
            return
        name = _one(query, "granularity")
        seconds = GRANULARITIES.get(name)
        try:
            if seconds is None:
                raise invalid(f'parsing field "granularity": "{name}" is not a valid value')
            start, end = _unix(query, "start"), _unix(query, "end")
        except ApiError as error:
            self._json(error.status, error.body)
            return
        now = state.now()
        candles = [
            c
            for c in state.market.candles(product_id, seconds, start, end, now)
            if c.start + seconds <= now
        ]
        body = state.market.render(product_id, candles).encode()
        self._send(200, body, "application/json")

    # ---------------------------------------------------------------- helpers
    def _bearer(self) -> str:
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def _drain_body(self) -> bytes:
        """Read the request body so keep-alive stays in sync (the SDK sends `{}` on GET)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _finish(
        self,
        delay: float,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str],
        stat: str,
        fault: str | None = None,
        candles: int = 0,
    ) -> None:
        self.server.state.stats.response(stat, candles=candles, fault=fault)
        if delay > 0:
            time.sleep(delay)
        self._send(status, body, content_type, headers)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            # Headers and body in one write: no Nagle / delayed-ACK stall.
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _rate_headers(decision: Decision) -> dict[str, str]:
    """x-ratelimit-* headers; reset is seconds until a slot frees (not a timestamp)."""
    return {
        "x-ratelimit-limit": str(decision.limit),
        "x-ratelimit-remaining": str(decision.remaining),
        "x-ratelimit-reset": f"{math.ceil(decision.reset_s * 1000) / 1000:.3f}",
    }


def _error_body(error: str, message: str) -> bytes:
    return json.dumps({"error": error, "error_details": message, "message": message}).encode()


def _product_list(market: Market) -> list[dict[str, object]]:
    return [
        {
            "product_id": p.product_id,
            "price_level": str(p.price),
            "quote_increment": str(p.tick),
            "liquidity": p.liquidity,
        }
        for p in market.products.values()
    ]


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    settings: Settings | dict[str, Any] | None = None,
    **config: Any,
) -> SimServer:
    """Bind a simulator (not yet serving): call serve_forever(), e.g. serve_in_thread().

    `settings` is a Settings or a dict of its fields (seed, key_files, p500,
    cap, ...); `config` holds more fields applied on top.
    """
    merged: dict[str, Any] = {}
    if isinstance(settings, Settings):
        merged = settings.public()
    elif settings:
        merged = dict(settings)
    merged.update(config)
    return SimServer((host, port), SimState(settings_from(**merged)))


def serve_in_thread(server: SimServer) -> threading.Thread:
    """Run serve_forever in a daemon thread; stop with server.shutdown()."""
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="coinbase-sim", daemon=True
    )
    thread.start()
    return thread
