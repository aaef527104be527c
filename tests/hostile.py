"""A hostile candles endpoint for tests: the Coinbase candle paths, misbehaving on request.

A threaded stdlib HTTP server on 127.0.0.1 (port 0). Each product id gets a behaviour
(`server.behave("SKEW-USD", "date", offset=86400)`); unknown products answer like a sound
exchange with deterministic candles. Every answer is bounded in time (`MAX_ANSWER_S`),
so a test can never hang on the server itself.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import json
import re
import threading
import time
from collections import Counter
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from core.timeframe import BY_GRANULARITY, TIMEFRAMES

CANDLES = re.compile(r"/api/v3/brokerage/(?:market/)?products/([^/]+)/candles")
KLINES = "/api/v3/klines"  # Binance: the same behaviours, answered as kline arrays
MAX_ANSWER_S = 20.0


def row(start: int, g: int, shift: float = 0.0) -> dict[str, str]:
    """The deterministic candle of a bucket (what a sound exchange would send)."""
    price = 100.0 + (start // g) % 13 + shift
    return {
        "start": str(start),
        "low": f"{price - 1:.2f}",
        "high": f"{price + 2:.2f}",
        "open": f"{price:.2f}",
        "close": f"{price + 1:.2f}",
        "volume": "1.5",
    }


def rows(g: int, start: int, end: int, now: float, lo: int = 0, hi: float = float("inf")):
    """Newest first, as Coinbase sends: [start, end] up to the in-progress bucket, within
    [lo, hi] (the product's history)."""
    last = int(min(end, int(now) - int(now) % g, hi))
    first = max(start - start % g, lo)
    return [row(s, g) for s in range(int(last), first - 1, -g) if s >= first]


@lru_cache(maxsize=1)
def gzip_bomb(decoded: int = 64 * 1024 * 1024) -> bytes:
    """A gzip body that is ~64 KB on the wire and `decoded` bytes of JSON-ish text."""
    return gzip.compress(b'{"candles":[' + b" " * decoded + b"]}", compresslevel=9)


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client hanging up on a hostile answer is the point, not an error

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviours: dict[str, tuple[str, dict]] = {}
        self.hits: Counter[str] = Counter()
        self.open_s: list[tuple[str, float]] = []  # (product, seconds a held answer lasted)
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def behave(self, product: str, kind: str, **params) -> None:
        self.behaviours[product] = (kind, params)

    def __enter__(self) -> HostileServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostileServer

    fake_date: float | None = None

    def log_message(self, format: str, *args) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header: the behaviour's clock where it has one."""
        return email.utils.formatdate(self.fake_date or timestamp or time.time(), usegmt=True)

    binance = False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        m = CANDLES.fullmatch(url.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if m:
            product = m.group(1)
            g = BY_GRANULARITY[q["granularity"]].seconds
            start, end = int(q["start"]), int(q["end"])
        elif url.path == KLINES:
            self.binance = True
            product, g = q["symbol"], TIMEFRAMES[q["interval"]].seconds
            start, end = int(q["startTime"]) // 1000, int(q["endTime"]) // 1000
        else:
            return self._send(404, b'{"error":"NOT_FOUND"}')
        with self.server.lock:
            self.server.hits[product] += 1
            n = self.server.hits[product]
        kind, p = self.server.behaviours.get(product, ("ok", {}))
        now = time.time()
        getattr(self, f"_{kind}")(p, g, start, end, now, n, product)

    # ------------------------------------------------------------------ behaviours
    def _ok(self, p, g, start, end, now, n, product, lo=0, hi=float("inf"), date=None):
        self._candles(rows(g, start, end, now, lo, hi), date)

    def _date(self, p, g, start, end, now, n, product):
        """A clock `offset` seconds off; the rows are still the true ones."""
        self._ok(p, g, start, end, now, n, product, date=now + p["offset"])

    def _old(self, p, g, start, end, now, n, product):
        """Only data that ended `ago` buckets back (a stuck feed), dated that far back."""
        hi = now - now % g - p["ago"] * g
        self._ok(p, g, start, end, now, n, product, hi=hi, date=hi + g)

    def _short(self, p, g, start, end, now, n, product):
        """A new listing: only the newest `buckets` buckets exist."""
        self._ok(p, g, start, end, now, n, product, lo=int(now - now % g - p["buckets"] * g))

    def _extra(self, p, g, start, end, now, n, product):
        """The true rows plus rows nobody asked for: future buckets and outside [start, end]."""
        cur = int(now) - int(now) % g
        bogus = [row(cur + k * g, g, shift=50) for k in (1, 2, 30)]
        bogus += [row(start - g, g, shift=50), row(end + 5 * g, g, shift=50)]
        self._candles(bogus + rows(g, start, end, now))

    def _dup_same(self, p, g, start, end, now, n, product):
        true = rows(g, start, end, now)
        self._candles(true + true[::3])

    def _dup_conflict(self, p, g, start, end, now, n, product):
        true = rows(g, start, end, now)
        self._candles([*true, row(int(true[5]["start"]), g, shift=3)])

    def _redirect(self, p, g, start, end, now, n, product):
        self._send(
            p.get("status", 302),
            b"",
            headers={"Location": p["to"] + "?" + self.path.split("?", 1)[1]},
        )

    def _trickle(self, p, g, start, end, now, n, product):
        """Headers at once, then one byte every `every` s, until the client hangs up."""
        t0 = time.monotonic()
        self._head(200, 50_000, close=True)
        try:
            while time.monotonic() - t0 < MAX_ANSWER_S:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(p.get("every", 0.1))
        except OSError:
            pass
        self._held(product, t0)

    def _trickle_head(self, p, g, start, end, now, n, product):
        """The status line and headers themselves, one byte at a time."""
        t0 = time.monotonic()
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 10_000 + b"\r\n\r\n"
        try:
            for i in range(len(head)):
                if time.monotonic() - t0 > MAX_ANSWER_S:
                    break
                self.wfile.write(head[i : i + 1])
                self.wfile.flush()
                time.sleep(p.get("every", 0.1))
        except OSError:
            pass
        self.close_connection = True
        self._held(product, t0)

    def _huge(self, p, g, start, end, now, n, product):
        """`size` bytes of valid-looking JSON; no Content-Length when `declare` is false."""
        size = p.get("size", 50 * 1024 * 1024)
        self._head(200, size if p.get("declare", True) else None, close=True)
        t0, sent = time.monotonic(), 0
        try:
            self.wfile.write(b'{"candles":[')
            block = b" " * 65536
            while sent < size and time.monotonic() - t0 < MAX_ANSWER_S:
                self.wfile.write(block)
                sent += len(block)
        except OSError:
            pass
        with self.server.lock:
            self.server.hits[f"{product}:bytes_sent"] += sent

    def _bomb(self, p, g, start, end, now, n, product):
        body = gzip_bomb()
        self._send(200, body, headers={"Content-Encoding": "gzip"})

    def _throttle(self, p, g, start, end, now, n, product):
        """429 with the reset header `reset` for the first `times` requests, then sound."""
        if n <= p.get("times", 1):
            return self._send(
                429,
                b'{"error":"RATE_LIMITED"}',
                headers={p.get("header", "x-ratelimit-reset"): p["reset"]},
            )
        self._ok(p, g, start, end, now, n, product)

    def _error_text(self, p, g, start, end, now, n, product):
        message = p["message"]
        self._send(
            p.get("status", 404), json.dumps({"error": "NOT_FOUND", "message": message}).encode()
        )

    def _body(self, p, g, start, end, now, n, product):
        self._send(p.get("status", 200), p["body"])

    # ------------------------------------------------------------------ plumbing
    def _candles(self, candles: list[dict], date: float | None = None) -> None:
        self.fake_date = date
        if self.binance:  # kline arrays, oldest first, keyed by open time in ms
            klines = [_kline(c) for c in reversed(candles)]
            return self._send(200, json.dumps(klines).encode())
        self._send(200, json.dumps({"candles": candles}).encode())

    def _head(
        self, status: int, length: int | None, headers: dict | None = None, close=False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length is not None:
            self.send_header("Content-Length", str(length))
        if close or length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self._head(status, len(body), headers)
        with contextlib.suppress(OSError):  # the client may hang up early: that is its right
            self.wfile.write(body)

    def _held(self, product: str, t0: float) -> None:
        with self.server.lock:
            self.server.open_s.append((product, time.monotonic() - t0))


def _kline(c: dict) -> list:
    """A Coinbase-shaped row as Binance's array (its fields as they are, tampered or not)."""
    try:
        opened = int(c["start"]) * 1000
    except (TypeError, ValueError):
        opened = c["start"]
    return [opened, c["open"], c["high"], c["low"], c["close"], c["volume"],
            opened + 299_999 if isinstance(opened, int) else 0, "0", 1, "0", "0", "0"]  # fmt: skip


# The workers' settings against the hostile exchange: short limits, no key, JSON logs.
WORKER_ENV = {
    "BACKFILL_VISIBILITY_TIMEOUT_S": "8",
    "BACKFILL_MAX_RETRIES": "1",
    "BACKFILL_REQUEST_DEADLINE_S": "2",
    "BACKFILL_MAX_RESET_S": "2",
    "BACKFILL_FLEET_RATE": "50",
    "BACKFILL_WORKER_RATE_LIMIT": "",
    "BACKFILL_LOG_JSON": "1",
    "COINBASE_API_KEY_FILE": "",
    "COINBASE_API_KEY_NAME": "",
    "COINBASE_API_PRIVATE_KEY": "",
    "PYTHONUNBUFFERED": "1",
}


@contextlib.contextmanager
def hostile_workers(url: str, logs, handler: type[BaseHTTPRequestHandler] | None = None,
                    workers: int = 1, env: dict | None = None, name: str = "h"):  # fmt: skip
    """A hostile exchange and `workers` real worker processes on the Redis at `url`
    (flushed first); yields (server, the workers' env, the worker processes)."""
    import os

    import redis

    from backfill.app import app, use_redis
    from backfill.local import WorkerProcess, stop_all, wait_for_workers

    redis.Redis.from_url(url).flushall()
    use_redis(url)
    with HostileServer() as server:
        if handler is not None:
            server.RequestHandlerClass = handler
        wenv = {**WORKER_ENV, **(env or {}), "REDIS_URL": url, "COINBASE_API_BASE_URL": server.url,
                "BINANCE_API_BASE_URL": server.url}  # fmt: skip
        procs = [
            WorkerProcess(
                wenv, name=f"{name}{i}-{os.getpid()}@%h", concurrency=1, log_path=logs / f"w{i}.log"
            ).start()
            for i in range(workers)
        ]
        try:
            wait_for_workers(app, workers, timeout=60)
            yield server, wenv, procs
        finally:
            stop_all(procs, timeout=10)
