"""The exchange seam: what the common client needs to know about one exchange."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import ExchangeError
from core.timeframe import Timeframe


@dataclass(frozen=True)
class Request:
    """One candle request: path and query on the exchange's base URL, extra headers."""

    path: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


class Budget(Protocol):
    """What an exchange module may tell the fleet budget (see `workers.budget`)."""

    def throttled(self, reset_after: float | None) -> None: ...

    def counted(self, used: int, limit: int) -> None: ...

    def crowded(self) -> None: ...

    def banned(self, seconds: float) -> None: ...


class ExchangeApi(Protocol):
    name: str
    cap: int  # most buckets one request may span
    signed_by: str  # "" on a public endpoint; else the key's name (budget names come from it)
    dense: bool  # answers every interval (empty ones as zero-volume rows), not only traded ones

    def request(self, product_id: str, tf: Timeframe, start: int, end: int) -> Request:
        """The request for buckets starting in [start, end] (UNIX s); the client below the
        seam has checked `product_id` against the exchange's symbol form."""
        ...

    def rows(self, body: bytes, tf: Timeframe) -> list[Mapping[str, object]]:
        """The answer's rows as `{"start", "open", "high", "low", "close", "volume"}`
        (text as sent), or `rows.BadRows` naming what is wrong."""
        ...

    def feedback(self, headers: Mapping[str, str], budget: Budget) -> None:
        """Read the exchange's own count of our requests on any answer."""
        ...

    def error(
        self, status: int, text: str, headers: Mapping[str, str], budget: Budget | None,
        max_reset_s: float, where: dict,
    ) -> ExchangeError:  # fmt: skip
        """The typed error of a non-200 answer (throttling tells the budget first)."""
        ...
