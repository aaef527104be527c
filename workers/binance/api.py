"""Binance spot behind the exchange seam: what differs from any other exchange.

Public klines on `GET /api/v3/klines` (no key), `startTime`/`endTime` in ms and the
interval by name, up to 1,000 a request, each an array keyed by its open time in ms; the
in-progress kline comes back too (the common row checks drop it). Limits are a request
weight per IP per minute (klines: 2), counted by the exchange in `X-MBX-USED-WEIGHT-1M`
on every answer; over it a 429 with `Retry-After`, and an IP that goes on is banned: 418
with `Retry-After`, from two minutes to three days. A ban stops the whole Binance fleet
(`Budget.banned`): nothing is sent into it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from core.errors import (
    BadRequest,
    Banned,
    ExchangeError,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from core.jsnum import MAX_SAFE_INTEGER, js_json_loads_fast
from core.text import clean_text
from core.timeframe import Timeframe
from workers.exchange import clock
from workers.exchange.api import Budget, Request
from workers.exchange.rows import BadRows

KLINES_PATH = "/api/v3/klines"
KLINES_WEIGHT = 2  # per request, whatever the limit (spot; checked 2026-12)
MAX_LIMIT = 1000
BAN_DEFAULT_S = 120.0  # a 418 without a readable Retry-After: the shortest ban Binance gives
NEAR_LIMIT = 0.9  # the exchange counts this share of the IP's limit used: step down


class BinanceApi:
    name = "binance"
    signed_by = ""  # public market data: the budget is per IP
    dense = True  # an interval without trades comes back as a zero-volume kline

    def __init__(self, weight_limit: int, planned_weight_per_min: float) -> None:
        self.cap = MAX_LIMIT
        self.weight_limit = weight_limit
        self.planned = planned_weight_per_min

    def __repr__(self) -> str:
        return f"BinanceApi(weight_limit={self.weight_limit})"

    def request(self, product_id: str, tf: Timeframe, start: int, end: int) -> Request:
        limit = min(MAX_LIMIT, (end - start) // tf.seconds + 1)
        params = {
            "symbol": product_id,
            "interval": tf.name,
            "startTime": str(start * 1000),
            "endTime": str(end * 1000),
            "limit": str(limit),
        }
        return Request(KLINES_PATH, params)

    def rows(self, body: bytes, tf: Timeframe) -> list[Mapping[str, object]]:
        """Kline arrays as the common rows (`start` in seconds; text as sent)."""
        try:
            doc = js_json_loads_fast(body)
        except RecursionError:
            raise BadRows("JSON nested too deeply") from None
        except ValueError as e:
            raise BadRows(f"body is not JSON ({type(e).__name__})") from None
        if not isinstance(doc, list):
            raise BadRows(f"body is a JSON {type(doc).__name__}, not a list of klines")
        out = []
        for i, k in enumerate(doc):
            if not isinstance(k, list) or len(k) < 6:
                raise BadRows(f"kline #{i} is not an array of at least 6 fields")
            opened = k[0]
            if (
                not isinstance(opened, int)
                or isinstance(opened, bool)
                or opened % 1000
                or abs(opened) > MAX_SAFE_INTEGER  # JSON.parse: a double, not a whole ms
            ):
                raise BadRows(f"kline #{i}: open time {str(opened)[:40]!r} is not whole seconds")
            for j, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
                if not isinstance(k[j], str | int | float) or isinstance(k[j], bool):
                    raise BadRows(f"kline #{i}: {name} is a JSON {type(k[j]).__name__}")
            out.append({"start": str(opened // 1000), "open": k[1], "high": k[2],
                        "low": k[3], "close": k[4], "volume": k[5]})  # fmt: skip
        return out

    def feedback(self, headers: Mapping[str, str], budget: Budget) -> None:
        """More weight used in this minute than our plan allows (another client on the
        IP, or sends bunched), or near the IP's limit: one step down before a 429."""
        count = clock.window_count(str(self.weight_limit), _remaining(headers, self.weight_limit))
        if count is None:
            return
        used = count[0]
        if used > self.planned + KLINES_WEIGHT or used >= NEAR_LIMIT * self.weight_limit:
            budget.crowded()

    def error(
        self, status: int, text: str, headers: Mapping[str, str], budget: Budget | None,
        max_reset_s: float, where: dict,
    ) -> ExchangeError:  # fmt: skip
        code, msg = _code_msg(text)
        detail = clean_text(f"{code} {msg}" if code is not None else text, 200)
        if status == 418:
            seconds = clock.reset_after(headers.get("Retry-After"), time.time(), 3 * 86400.0)
            seconds = seconds if seconds else BAN_DEFAULT_S
            if budget is not None:
                budget.banned(seconds)
            until = time.time() + seconds
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
            return Banned(f"IP banned until {stamp} (418)", until=until, status=status, **where)
        if status == 429:
            reset = clock.reset_after(headers.get("Retry-After"), time.time(), max_reset_s)
            if budget is not None:
                budget.throttled(reset)
            return RateLimited(f"rate limited (429 {detail})", reset_after=reset, status=status,
                               **where)  # fmt: skip
        if status == 400 and code == -1121:
            return NotFound(f"unknown symbol ({detail})", status=status, **where)
        if status == 400:
            return BadRequest(f"bad request ({detail})", detail=detail, status=status, **where)
        if status == 403:
            return PermanentError(f"refused by the exchange's firewall ({detail})", status=status,
                                  **where)  # fmt: skip
        return TransientError(f"exchange error ({clean_text(text, 80)})", status=status, **where)


def _remaining(headers: Mapping[str, str], limit: int) -> str | None:
    """`X-MBX-USED-WEIGHT-1M` as the 'remaining' the common window check reads."""
    used = headers.get("X-MBX-USED-WEIGHT-1M") or headers.get("x-mbx-used-weight-1m")
    if used is None:
        return None
    try:
        n = int(clock.plain_number(used.strip()[:12]))
    except ValueError:
        return None
    return str(limit - min(n, limit))


def _code_msg(text: str) -> tuple[int | None, str]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None, ""
    if isinstance(body, dict) and isinstance(body.get("code"), int):
        return body["code"], str(body.get("msg", ""))
    return None, ""
