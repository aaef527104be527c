"""The candle client: paginated, validated, budgeted requests to Coinbase Advanced Trade.

Every HTTP request takes a token from the fleet budget first, so adding workers never
adds load on the exchange. Responses become `Candle`s or one exception of the tree in
`backfill.errors`, each naming product, timeframe and status.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from typing import Protocol
from urllib.parse import urlsplit

import requests

from backfill.errors import (
    AuthError,
    BadRequest,
    ExchangeError,
    NotFound,
    RateLimited,
    TransientError,
)
from backfill.series import validate_product_id
from backfill.timeframe import Timeframe
from workers.candle import Candle, merge, parse_candle
from workers.coinbase.auth import Credentials, build_jwt

PRIVATE_PATH = "/api/v3/brokerage/products/{product_id}/candles"
PUBLIC_PATH = "/api/v3/brokerage/market/products/{product_id}/candles"
SIGNED_HOST = "api.coinbase.com"


class RequestBudget(Protocol):
    """What the client needs from a rate budget (see `workers.budget`)."""

    def acquire(self) -> None: ...

    def throttled(self, reset_after: float | None) -> None: ...


class CoinbaseClient:
    """Fetches candles for any span; one instance per worker process, reused across tasks."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        cap: int = 300,
        budget: RequestBudget | None = None,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
    ) -> None:
        if not 2 <= cap <= 350:
            raise ValueError(f"request cap {cap} must be between 2 and 350")
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.cap = cap
        self.budget = budget
        self.timeout = timeout
        self._session = session
        self._local = threading.local()  # one session and counters per thread (threads pool)
        host = urlsplit(self.base_url).netloc
        # Real Coinbase signs the canonical host; a simulator accepts either.
        self._signed_host = SIGNED_HOST if host.endswith("coinbase.com") else host

    @property
    def session(self) -> requests.Session:
        if getattr(self._local, "session", None) is None:
            self._local.session = self._session or requests.Session()
        return self._local.session

    @property
    def requests_made(self) -> int:
        """Requests this thread has made (a task diffs it: threads share the client)."""
        return getattr(self._local, "requests", 0)

    @property
    def last_server_time(self) -> float | None:
        """The exchange's clock at this thread's last response."""
        return getattr(self._local, "server_time", None)

    @property
    def public(self) -> bool:
        return self.credentials is None

    def __repr__(self) -> str:
        return f"CoinbaseClient({self.base_url!r}, {self.credentials!r}, cap={self.cap})"

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
        validate_product_id(product_id)
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
        validate_product_id(product_id)
        if (end - start) // timeframe.seconds >= self.cap:
            raise ValueError(f"span {start}..{end} exceeds {self.cap} {timeframe.name} buckets")
        template = PUBLIC_PATH if self.public else PRIVATE_PATH
        path = template.format(product_id=product_id)
        headers = {"Accept": "application/json", "User-Agent": "candle-backfill/0.1"}
        if self.credentials is not None:
            token = build_jwt(self.credentials, "GET", self._signed_host, path)
            headers["Authorization"] = f"Bearer {token}"
        params = {"start": str(start), "end": str(end), "granularity": timeframe.granularity}
        where = {"product": product_id, "timeframe": timeframe.name}
        if self.budget is not None:
            self.budget.acquire()
        self._local.requests = self.requests_made + 1
        try:
            resp = self.session.get(
                self.base_url + path, params=params, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            raise TransientError("request timed out", **where) from None
        except requests.RequestException as e:
            raise TransientError(f"connection failed ({type(e).__name__})", **where) from None
        server_time = _server_time(resp)
        self._local.server_time = server_time
        if resp.status_code != 200:
            raise self._error(resp, where)
        try:
            body = resp.json()
            raw = body["candles"]
            if not isinstance(raw, list):
                raise TypeError("candles is not a list")
        except (ValueError, KeyError, TypeError) as e:
            kind = "HTML" if "html" in resp.headers.get("Content-Type", "") else "unexpected"
            raise TransientError(
                f"{kind} body instead of candles JSON ({type(e).__name__})", status=200, **where
            ) from None
        try:
            if newest is not None and len(raw) > newest:
                # Coinbase sends newest first; sorting makes that a fact, not an assumption
                # (the original backfill kept the oldest 100 of a newest-first page).
                raw = sorted(raw, key=_start_of, reverse=True)[:newest]
            return [parse_candle(c, timeframe, server_time) for c in raw]
        except ExchangeError as e:
            raise TransientError(str(e).split(": ", 1)[-1], status=200, **where) from None

    def _error(self, resp: requests.Response, where: dict) -> ExchangeError:
        status = resp.status_code
        text = resp.text[:300]
        detail = text
        try:
            body = json.loads(text)
            if isinstance(body, dict):
                detail = str(body.get("error_details") or body.get("message") or text)
        except ValueError:
            pass
        if status == 429:
            reset = _float(resp.headers.get("x-ratelimit-reset"))
            if self.budget is not None:
                self.budget.throttled(reset)
            html = "HTML " if text.lstrip().startswith("<") else ""
            return RateLimited(
                f"rate limited ({html}429)", reset_after=reset, status=status, **where
            )
        if status in (401, 403):
            return AuthError("the exchange refused the API key or token", status=status, **where)
        if status == 404:
            return NotFound(f"unknown product ({detail})", status=status, **where)
        if status == 400:
            return BadRequest(f"bad request ({detail})", detail=detail, status=status, **where)
        return TransientError(f"exchange error ({text[:80]!r})", status=status, **where)


def _start_of(raw: object) -> int:
    try:
        return int(str(raw["start"]))  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        raise TransientError(f"malformed candle {raw!r}") from None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _server_time(resp: requests.Response) -> float:
    """The exchange's clock (from `Date`), so 'closed' means closed on the exchange.

    `Date` has whole seconds and rounds down, so a bucket judged closed really is.
    """
    date = resp.headers.get("Date")
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()
