"""Reading an exchange answer within limits: one total deadline, one size cap.

A per-read timeout restarts with every byte, so a server that trickles its answer (or its
headers) can hold a worker forever; `Deadline` instead shuts the request's socket down when
its total time is up, whatever phase the request is in. `read_body` streams the body and
stops at `max_bytes` both before and after decompression, so neither a huge answer nor a
compression bomb can take the worker's memory.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable

import certifi
import urllib3
from requests.utils import get_environ_proxies, select_proxy
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CHUNK = 64 * 1024
_current = threading.local()  # the Deadline of the request this thread is making


class BodyError(Exception):
    """The body broke a limit (size, encoding, deadline); the message says which."""


class SendCancelled(Exception):
    """`before_send` said no at the last moment: nothing of the request was written (the
    caller takes a new send slot and tries again, outside this request's deadline)."""


class Deadline:
    """A total time budget for one request (connect + headers + body), enforced by a timer
    that shuts the connection's socket down when it is spent."""

    def __init__(self, seconds: float, before_send: Callable[[], bool] | None = None) -> None:
        self.seconds = seconds
        self.before_send = before_send  # asked once the connection is ready to write
        self.end = time.monotonic() + seconds
        self.expired = False
        self._conn: object | None = None
        self._sock: socket.socket | None = None
        self._done = threading.Event()

    def __enter__(self) -> Deadline:
        _current.deadline = self
        _watchdog.watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        _current.deadline = None

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def attach(self, conn: object) -> None:
        self._conn = conn

    def attach_response(self, resp: urllib3.BaseHTTPResponse) -> None:
        """The body's socket: a connection that will close hands it to the response."""
        fp = getattr(getattr(resp, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
        if isinstance(sock, socket.socket):
            self._sock = sock

    def check(self) -> None:
        if self.expired or time.monotonic() >= self.end:
            self.expired = True
            raise BodyError(f"no complete answer within the {self.seconds:g}s deadline")

    def _cut(self) -> None:
        self.expired = True
        # Until the request returns: the socket may not exist yet (still connecting).
        while True:
            for sock in (getattr(self._conn, "sock", None), self._sock):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            if self._done.wait(0.05):
                return


class _Watchdog:
    """One thread per process that cuts the requests past their deadline (a timer thread
    per request cost more of a worker's CPU than the rest of its bookkeeping): a heap of
    deadlines, finished ones dropped as they come up; a rare expired one is cut on a thread
    of its own, so that it cannot hold up the others' cuts."""

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # no lock held over from the parent

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._pid: int | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use here, or a forked pool process
                self._pid, self._heap = os.getpid(), []
                threading.Thread(target=self._run, name="request-deadlines", daemon=True).start()
            heapq.heappush(self._heap, (deadline.end, next(self._seq), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].finished:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        expired = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(wait)
            threading.Thread(target=expired._cut, name="request-cut", daemon=True).start()


_watchdog = _Watchdog()


class _Watched:
    """The hook both pool classes share (a mixin: `super()` then finds each one's own
    `_make_request`, HTTP or HTTPS)."""

    def _make_request(self, conn, *args, **kwargs):
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(conn)
            if deadline.before_send is not None and not deadline.before_send():
                # the last moment before the request's bytes go out: the fleet budget
                # checks here that its slot is still on time (see FleetBudget.confirm)
                raise SendCancelled("send slot went stale before the write")
        return super()._make_request(conn, *args, **kwargs)


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    pass


class Http:
    """One thread's HTTP for the clients: urllib3's pools, the deadline hook on each,
    configured as requests would configure them from the environment (`*_proxy`,
    `no_proxy`, `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`, else certifi's bundle), without
    requests' per-request machinery (cookies, hooks, the environment read again on every
    request: about a third of the request's CPU on a worker, measured)."""

    def __init__(self) -> None:
        # per origin (`scheme://host:port`): the pool to ask and whether it takes the whole
        # URL (a proxy) or the path; looked up by string, not parsed again per request
        self._routes: dict[str, tuple[urllib3.PoolManager | HTTPConnectionPool, bool]] = {}
        self._timeouts: dict[tuple[float, float], urllib3.Timeout] = {}

    def get(
        self, url: str, headers: dict[str, str], timeout: tuple[float, float]
    ) -> urllib3.BaseHTTPResponse:
        """A GET that follows no redirect, retries nothing and leaves the body unread."""
        cut = url.find("/", url.find("//") + 2)
        origin, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        route = self._routes.get(origin)
        if route is None:
            route = self._routes[origin] = self._route(url)
        opener, whole_url = route
        limits = self._timeouts.get(timeout)
        if limits is None:
            limits = self._timeouts[timeout] = urllib3.Timeout(
                connect=timeout[0], read=timeout[1]
            )
        return opener.urlopen(
            "GET",
            url if whole_url else target,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            decode_content=False,
            timeout=limits,
        )

    def _route(self, url: str) -> tuple[urllib3.PoolManager | HTTPConnectionPool, bool]:
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        ca = ca or certifi.where()
        tls = {"ca_cert_dir": ca} if os.path.isdir(ca) else {"ca_certs": ca}
        proxy = select_proxy(url, get_environ_proxies(url))
        if proxy:
            manager = urllib3.ProxyManager(proxy, cert_reqs="CERT_REQUIRED", **tls)
        else:
            manager = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", **tls)
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        if proxy:
            return manager, True  # the proxy manager words the request for the proxy
        return manager.connection_from_url(url), False


def read_body(resp: urllib3.BaseHTTPResponse, max_bytes: int, deadline: Deadline) -> bytes:
    """The decoded body of a streamed response, or `BodyError` past a limit."""
    declared = resp.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > max_bytes:
        raise BodyError(f"body of {int(declared)} bytes is over the {max_bytes}-byte cap")
    deadline.attach_response(resp)
    decoder = _decoder(resp.headers.get("Content-Encoding", ""))
    parts: list[bytes] = []
    raw = decoded = 0
    try:
        while True:
            deadline.check()
            chunk = resp.read(CHUNK, decode_content=False)
            if not chunk:
                break
            raw += len(chunk)
            if raw > max_bytes:
                raise BodyError(f"body over the {max_bytes}-byte cap")
            if decoder is None:
                parts.append(chunk)
                continue
            data = chunk
            while data:  # never more than the cap's worth of output at once
                piece = decoder.decompress(data, max_length=max_bytes - decoded + 1)
                decoded += len(piece)
                if decoded > max_bytes:
                    raise BodyError(f"decompressed body over the {max_bytes}-byte cap")
                parts.append(piece)
                data = decoder.unconsumed_tail
    except (zlib.error, EOFError) as e:
        raise BodyError(f"corrupt compressed body ({type(e).__name__})") from None
    except Exception as e:  # the socket was shut down under a read, or the peer hung up
        if isinstance(e, BodyError):
            raise
        deadline.check()
        raise BodyError(f"body cut short ({type(e).__name__})") from None
    deadline.check()  # a shut-down socket reads as a clean end of a close-delimited body
    return b"".join(parts)


def _decoder(encoding: str):
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    raise BodyError(f"unsupported Content-Encoding {encoding[:40]!r}")
