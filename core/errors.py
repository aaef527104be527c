"""The exception tree: callers act on the branch (retry or give up), never on message text.

    BackfillError                       everything raised on purpose
    +-- InvalidInput (ValueError)       bad user input or settings: nothing is enqueued
    +-- BrokerUnavailable               Redis cannot be reached: nothing was enqueued
    +-- GateError                       no run to wait for
    +-- BackfillTimeout (TimeoutError)  the gate did not open in time (the run goes on)
    +-- CacheContractError (ValueError) a cached member breaks the contract (reader side)
    +-- InvalidCandle (ValueError)      a candle breaks the cache contract: nothing written
    +-- ExchangeError                   a failed exchange request (product, timeframe, status)
        +-- RetryableError              the same request may succeed later
        |   +-- RateLimited             HTTP 429 (reset_after: seconds, clamped)
        |   +-- TransientError          5xx, timeouts, dropped connections
        |   |   +-- InvalidResponse     a body that is not what was asked for
        |   +-- BudgetTimeout           no fleet-budget slot before the task's deadline
        |   +-- CircuitOpen             the fleet's breaker is open: not asked, try later
        +-- PermanentError              retrying cannot help
            +-- AuthError               HTTP 401/403
            +-- NotFound                HTTP 404
            +-- BadRequest              HTTP 400 (detail: the exchange's reason)

A series task retries `RetryableError` and records every other branch as its outcome's
`reason`; nothing but a bug is "unexpected". The exchange client's internal errors (body
limits, bad rows) become `InvalidResponse` at its boundary.
"""

from __future__ import annotations


class BackfillError(Exception):
    """Base of every error the backfill raises on purpose."""


class InvalidInput(BackfillError, ValueError):
    """Raised for bad user input (timeframe, product id, count, key): nothing is enqueued."""


class BrokerUnavailable(BackfillError):
    """Raised when Redis cannot be reached: nothing was enqueued."""


class GateError(BackfillError):
    """Raised when there is no run to wait for."""


class BackfillTimeout(BackfillError, TimeoutError):
    """Raised by `StartupBackfillService.backfill` when the gate did not open in time."""


class CacheContractError(BackfillError, ValueError):
    """Raised when a cached member breaks the contract; names the key and the member."""


class InvalidCandle(BackfillError, ValueError):
    """Raised before any write when a candle breaks the cache contract: nothing is written."""


class ExchangeError(BackfillError):
    """Raised for a failed exchange request; names product, timeframe and HTTP status."""

    def __init__(
        self, message: str, *, product: str = "", timeframe: str = "", status: int | None = None
    ) -> None:
        self.product = product
        self.timeframe = timeframe
        self.status = status
        where = (
            f"{product or '?'} {timeframe or '?'} status={status if status is not None else '-'}"
        )
        super().__init__(f"{where}: {message}")


class RetryableError(ExchangeError):
    """The same request may succeed later."""


class RateLimited(RetryableError):
    """Raised on HTTP 429; `reset_after` is seconds until the exchange's window resets, if sent."""

    def __init__(self, message: str, *, reset_after: float | None = None, **kw) -> None:
        self.reset_after = reset_after
        super().__init__(message, **kw)


class TransientError(RetryableError):
    """Raised on 5xx, timeouts, dropped connections and bodies that are not the expected JSON."""


class InvalidResponse(TransientError):
    """Raised when a 200 answer is not what was asked for (shape, values, rows, size)."""


class BudgetTimeout(RetryableError):
    """Raised when the fleet budget cannot grant a request before the task's deadline."""


class CircuitOpen(RetryableError):
    """Raised without a request while the fleet's circuit breaker is open (exchange down);
    `retry_after`: seconds until the breaker lets this caller ask again, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class PermanentError(ExchangeError):
    """Retrying cannot help."""


class AuthError(PermanentError):
    """Raised on HTTP 401/403: the key or its token was refused."""


class NotFound(PermanentError):
    """Raised on HTTP 404: the exchange does not know the product."""


class BadRequest(PermanentError):
    """Raised on HTTP 400: the exchange rejected an argument (e.g. a granularity)."""

    def __init__(self, message: str, *, detail: str = "", **kw) -> None:
        self.detail = detail
        super().__init__(message, **kw)


class Banned(PermanentError):
    """Raised on HTTP 418 (an IP ban), and without a request while the ban lasts: nothing
    is sent into a ban; `until` is when it ends (UNIX s)."""

    def __init__(self, message: str, *, until: float, **kw) -> None:
        self.until = until
        self.message = message
        super().__init__(message, **kw)
