"""The exception tree: callers act on the branch (retry or give up), never on message text."""

from __future__ import annotations


class BackfillError(Exception):
    """Base of every error the backfill raises on purpose."""


class InvalidInput(BackfillError, ValueError):
    """Raised for bad user input (timeframe, product id, count, key): nothing is enqueued."""


class ExchangeError(BackfillError):
    """Raised for a failed exchange request; names product, timeframe and HTTP status."""

    retryable = False

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

    retryable = True


class RateLimited(RetryableError):
    """Raised on HTTP 429; `reset_after` is seconds until the exchange's window resets, if sent."""

    def __init__(self, message: str, *, reset_after: float | None = None, **kw) -> None:
        self.reset_after = reset_after
        super().__init__(message, **kw)


class TransientError(RetryableError):
    """Raised on 5xx, timeouts, dropped connections and bodies that are not the expected JSON."""


class BudgetTimeout(RetryableError):
    """Raised when the fleet budget cannot grant a request before the task's deadline."""


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
