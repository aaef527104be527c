"""Coinbase Advanced Trade behind the exchange seam: what differs from any other exchange.

Candles on `.../products/{id}/candles` (private, JWT-signed, or the public market path),
`start`/`end` in UNIX seconds and a granularity name, at most 350 buckets (300 in
practice); rows `{"candles": [{"start", "low", "high", "open", "close", "volume"}]}`;
every private answer counts the key's window in `x-ratelimit-limit`/`-remaining`; a 429
may say when the window resets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from core import defaults
from core.credentials import Credentials
from core.errors import (
    AuthError,
    BadRequest,
    ExchangeError,
    NotFound,
    RateLimited,
    TransientError,
)
from core.text import clean_text
from core.timeframe import Timeframe
from workers.coinbase.auth import build_jwt
from workers.coinbase.rows import candle_rows
from workers.exchange import clock
from workers.exchange.api import Budget, Request

PRIVATE_PATH = "/api/v3/brokerage/products/{product_id}/candles"
PUBLIC_PATH = "/api/v3/brokerage/market/products/{product_id}/candles"
SIGNED_HOST = "api.coinbase.com"


class CoinbaseApi:
    name = "coinbase"
    dense = False  # a bucket without trades is absent

    def __init__(
        self, base_url: str, credentials: Credentials | None = None, cap: int = defaults.REQUEST_CAP
    ) -> None:
        if not 2 <= cap <= 350:
            raise ValueError(f"request cap {cap} must be between 2 and 350")
        self.credentials = credentials
        self.cap = cap
        self.signed_by = credentials.name if credentials else ""
        host = urlsplit(base_url).netloc
        # Real Coinbase signs the canonical host; a simulator accepts either.
        self._signed_host = SIGNED_HOST if host.endswith("coinbase.com") else host

    def __repr__(self) -> str:
        return f"CoinbaseApi({self.credentials!r}, cap={self.cap})"

    def request(self, product_id: str, tf: Timeframe, start: int, end: int) -> Request:
        path = (PUBLIC_PATH if self.credentials is None else PRIVATE_PATH).format(
            product_id=product_id
        )
        headers = {}
        if self.credentials is not None:
            token = build_jwt(self.credentials, "GET", self._signed_host, path)
            headers["Authorization"] = f"Bearer {token}"
        params = {"start": str(start), "end": str(end), "granularity": tf.granularity}
        return Request(path, params, headers)

    def rows(self, body: bytes, tf: Timeframe) -> list[Mapping[str, object]]:
        return candle_rows(body)

    def feedback(self, headers: Mapping[str, str], budget: Budget) -> None:
        limit, remaining = headers.get("x-ratelimit-limit"), headers.get("x-ratelimit-remaining")
        count = clock.window_count(limit, remaining)
        if count is not None:
            budget.counted(*count)

    def error(
        self, status: int, text: str, headers: Mapping[str, str], budget: Budget | None,
        max_reset_s: float, where: dict,
    ) -> ExchangeError:  # fmt: skip
        detail = text
        try:
            body = json.loads(text)
            if isinstance(body, dict):
                detail = str(body.get("error_details") or body.get("message") or text)
        except (ValueError, RecursionError):
            pass
        detail = clean_text(detail, 200)
        if status == 429:
            reset = clock.reset_after(
                headers.get("x-ratelimit-reset") or headers.get("Retry-After"),
                time.time(),
                max_reset_s,
            )
            if budget is not None:
                budget.throttled(reset)
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
        return TransientError(f"exchange error ({clean_text(text, 80)})", status=status, **where)
