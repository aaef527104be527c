"""The candle client: paginated, validated, budgeted requests to any exchange.

Every HTTP request takes a slot of the fleet budget first, so adding workers never adds
load on the exchange. Responses become `Candle`s or one exception of the tree in
`core.errors`, each naming product, timeframe and status. What differs between exchanges
(paths, row shape, throttling answers) is the `ExchangeApi` given (workers/exchange/api.py).
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import urllib3

from core import defaults
from core.candle import Candle, merge
from core.errors import Banned, ExchangeError, InvalidResponse, TransientError
from core.exchanges import validate_symbol
from core.text import clean_text
from core.timeframe import Timeframe
from workers.exchange import clock, rows
from workers.exchange.api import Budget, ExchangeApi
from workers.exchange.body import (
    BodyError,
    Deadline,
    Http,
    SendCancelled,
    read_body,
)
from workers.trace import trace

STALE_SLOTS_MAX = 3  # send slots a request may let go stale before it sends regardless
ERROR_BODY_BYTES = 16 * 1024  # of an error answer: enough for its message, which is cut anyway


class RequestBudget(Budget, Protocol):
    """What the client needs from a rate budget (see `workers.budget`): a slot before each
    request, confirmed as the bytes go out, besides what an exchange module tells it."""

    def acquire(self) -> None: ...

    def confirm(self, final: bool = False) -> bool: ...


class CandleClient:
    """Fetches candles for any span; one instance per worker process and exchange, reused
    across tasks."""

    def __init__(
        self,
        api: ExchangeApi,
        base_url: str,
        *,
        budget: RequestBudget | None = None,
        timeout: tuple[float, float] = (3.05, defaults.REQUEST_TIMEOUT_S),
        deadline_s: float = defaults.REQUEST_DEADLINE_S,
        max_body_bytes: int = defaults.MAX_BODY_BYTES,
        max_reset_s: float = defaults.MAX_RESET_S,
        max_skew_s: float = defaults.MAX_CLOCK_SKEW_S,
    ) -> None:
        self.api = api
        self.base_url = base_url.rstrip("/")
        self._host = urlsplit(self.base_url).netloc  # named in a clock complaint
        self.budget = budget
        self.timeout = timeout
        self.deadline_s = deadline_s
        self.max_body_bytes = max_body_bytes
        self.max_reset_s = max_reset_s
        self.max_skew_s = max_skew_s
        self._local = threading.local()  # one Http and counters per thread (threads pool)

    @property
    def cap(self) -> int:
        return self.api.cap

    @property
    def dense(self) -> bool:
        """The exchange answers empty intervals too (see `ExchangeApi.dense`)."""
        return self.api.dense

    @property
    def http(self) -> Http:
        if getattr(self._local, "http", None) is None:
            self._local.http = Http()
        return self._local.http

    @property
    def requests_made(self) -> int:
        """Requests this thread has made (a task diffs it: threads share the client)."""
        return getattr(self._local, "requests", 0)

    @property
    def last_server_time(self) -> float | None:
        """The time this thread's last response was judged by: the earlier of our clock and
        the exchange's `Date` (never ahead of ours)."""
        return getattr(self._local, "server_time", None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, {self.api!r})"

    def get_candles(
        self,
        product_id: str,
        timeframe: Timeframe,
        start: int,
        end: int,
        *,
        newest: int | None = None,
    ) -> list[Candle]:
        """Every bucket whose start lies in [start, end], oldest first, one per bucket.

        Pages hold at most `cap` buckets of span and overlap by one bucket, so the result
        is the same whether the exchange treats `end` as inclusive or exclusive. With
        `newest`, a one-page span keeps (and parses) only its newest `newest` candles.
        """
        validate_symbol(product_id, self.api.name)
        g = timeframe.seconds
        first, last = timeframe.floor(int(start)), timeframe.floor(int(end))
        if last < first:
            return []
        pages = []
        page_start = first
        while True:
            page_end = min(last, page_start + (self.cap - 1) * g)
            one_page = page_start == first and page_end >= last
            pages.append(
                self.get_page(
                    product_id, timeframe, page_start, page_end, newest=newest if one_page else None
                )
            )
            if page_end >= last:
                break
            page_start = page_end
        return [c for c in merge(*pages) if first <= c.start <= last]

    def get_page(
        self,
        product_id: str,
        timeframe: Timeframe,
        start: int,
        end: int,
        *,
        newest: int | None = None,
    ) -> list[Candle]:
        """One request: at most `cap` buckets of span (only the `newest` candles parsed)."""
        validate_symbol(product_id, self.api.name)
        if (end - start) // timeframe.seconds >= self.cap:
            raise ValueError(f"span {start}..{end} exceeds {self.cap} {timeframe.name} buckets")
        req = self.api.request(product_id, timeframe, start, end)
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": "candle-backfill/0.1",
            **req.headers,
        }
        where = {"product": product_id, "timeframe": timeframe.name}
        query = (req.path, req.params, headers, where)
        stale_slots = 0
        while True:
            if self.budget is not None:
                try:
                    self.budget.acquire()
                except Banned as e:  # the fleet's ban: this request is never sent
                    raise Banned(e.message, until=e.until, **where) from None
            self._local.requests = self.requests_made + 1
            # a thread late every time (a starved host) sends on its last slot anyway
            final = stale_slots == STALE_SLOTS_MAX
            try:
                return self._exchange(query, timeframe, start, end, newest, final)
            except SendCancelled:  # its slot went stale before a byte was sent: nothing was
                self._local.requests = self.requests_made - 1  # made; take a new slot
                stale_slots += 1

    def _exchange(
        self,
        query: tuple,
        timeframe: Timeframe,
        start: int,
        end: int,
        newest: int | None,
        final: bool,
    ) -> list[Candle]:
        """One HTTP request within the total deadline, its answer checked and selected."""
        path, params, headers, where = query
        confirm = None
        if self.budget is not None:
            confirm = functools.partial(self.budget.confirm, final=final)
        with Deadline(self.deadline_s, before_send=confirm) as deadline:
            resp = self._send(path, params, headers, deadline, where)
            trace.mark("answered")
            try:
                now = time.time()
                closed_before = clock.closed_before(
                    resp.headers.get("Date"), now, self.max_skew_s, self._host
                )
                self._local.server_time = closed_before
                self._feedback(resp)
                if resp.status != 200:
                    raise self._error(resp, deadline, where)
                try:
                    body = read_body(resp, self.max_body_bytes, deadline)
                    found = rows.select(
                        self.api.rows(body, timeframe), timeframe, start, end,
                        now=now, closed_before=closed_before, newest=newest,
                    )  # fmt: skip
                except (BodyError, rows.BadRows) as e:
                    raise InvalidResponse(clean_text(e), status=200, **where) from None
            except BaseException:
                resp.close()  # never back into the pool: it may be half read or shut down
                raise
        resp.release_conn()
        return found

    def _feedback(self, resp: urllib3.BaseHTTPResponse) -> None:
        """The exchange's own count of our requests: the budget slows the fleet when the
        exchange sees more than the budget planned (sends bunched on the way, or another
        client on the same key or IP), before that turns into 429s."""
        if self.budget is None or resp.status == 429:
            return  # a 429 slows the fleet on its own (`_error`)
        self.api.feedback(resp.headers, self.budget)

    def _send(
        self, path: str, params: dict, headers: dict, deadline: Deadline, where: dict
    ) -> urllib3.BaseHTTPResponse:
        url = f"{self.base_url}{path}?{urlencode(params)}"
        try:
            return self.http.get(url, headers, self.timeout)
        except urllib3.exceptions.HTTPError as e:
            if deadline.expired:
                raise TransientError(
                    f"no answer within the {self.deadline_s:g}s deadline", **where
                ) from None
            # urllib3 files a refused connection under its connect timeout: not a timeout
            if isinstance(e, urllib3.exceptions.TimeoutError) and not isinstance(
                e, urllib3.exceptions.NewConnectionError
            ):
                raise TransientError("request timed out", **where) from None
            raise TransientError(f"connection failed ({type(e).__name__})", **where) from None

    def _error(
        self, resp: urllib3.BaseHTTPResponse, deadline: Deadline, where: dict
    ) -> ExchangeError:
        status = resp.status
        if 300 <= status < 400:
            return InvalidResponse(f"redirect {status} not followed", status=status, **where)
        try:
            raw = read_body(resp, ERROR_BODY_BYTES, deadline)
        except BodyError as e:
            raw = clean_text(e).encode()
        text = raw[:4096].decode("utf-8", "replace")
        return self.api.error(status, text, resp.headers, self.budget, self.max_reset_s, where)
