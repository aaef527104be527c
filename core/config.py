"""One run's parameters (the seed's `BackfillConfig`), with the original service's defaults.

Validated before anything is enqueued; its `job_options` are what every job of the run
carries (core/jobs.py), so nothing secret is ever in here.

The rule for the counts: MIN_CANDLES (60, what MACD-V needs to be trusted) <= min_candles
<= candle_count <= MAX_CACHED (1000, what the cache keeps). "Ready" means the platform's
indicator can be computed, so a series is never called ready on fewer candles than that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core import defaults as d
from core.errors import InvalidInput
from core.exchanges import EXCHANGES, exchange
from core.jobs import JobOptions
from core.series import parse_symbols, validate_product_id
from core.text import clean_text
from core.timeframe import TIMEFRAME_PRIORITY, parse_timeframes

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD",
    "DOGE-USD", "AVAX-USD", "LINK-USD", "DOT-USD", "LTC-USD",
    "BCH-USD", "POL-USD", "UNI-USD", "ATOM-USD", "XLM-USD",
    "ETC-USD", "FIL-USD", "AAVE-USD", "ALGO-USD", "NEAR-USD",
    "APT-USD", "ARB-USD", "OP-USD", "SHIB-USD", "ICP-USD",
)  # fmt: skip
DEFAULT_BINANCE_SYMBOLS: tuple[str, ...] = tuple(s.replace("-USD", "USDT") for s in DEFAULT_SYMBOLS)
MAX_CACHED, MIN_CANDLES = d.MAX_CACHED, d.MIN_CANDLES


@dataclass(frozen=True)
class BackfillConfig:
    """One run's parameters (the seed's `BackfillConfig`)."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY
    candle_count: int = d.CANDLE_COUNT
    min_candles: int = d.MIN_CANDLES
    user_id: int = d.USER_ID
    exchange_id: int | None = None  # the cache keys' id; None: the exchange's (coinbase 1)
    full: bool = False  # ignore what the cache holds and refetch every series
    exchange: str = "coinbase"  # which exchange (core/exchanges.py)

    def __post_init__(self) -> None:
        """No exchange id given: the exchange's own (a bad exchange is `validated`'s to say)."""
        known = EXCHANGES.get(self.exchange) if isinstance(self.exchange, str) else None
        if self.exchange_id is None and known is not None:
            object.__setattr__(self, "exchange_id", known.default_id)

    def validated(self) -> BackfillConfig:
        """Check everything a user can get wrong, before anything is enqueued."""
        ex = exchange(self.exchange)
        symbols = tuple(parse_symbols(list(self.symbols), ex.name))
        timeframes = tuple(tf.name for tf in parse_timeframes(list(self.timeframes)))
        count, least = self.candle_count, self.min_candles
        if not _is_int(count) or not MIN_CANDLES <= count <= MAX_CACHED:
            raise InvalidInput(
                f"candle_count {count!r} (BACKFILL_CANDLE_COUNT / --candle-count) is out of "
                f"range: it must be an integer between {MIN_CANDLES} (what MACD-V needs) and "
                f"{MAX_CACHED} (what the cache keeps)"
            )
        if not _is_int(least) or not MIN_CANDLES <= least <= count:
            raise InvalidInput(
                f"min_candles {least!r} (BACKFILL_MIN_CANDLES) is out of range: it must be an "
                f"integer between {MIN_CANDLES} (what MACD-V needs) and candle_count {count} "
                "(a series cannot hold more than it fetches)"
            )
        ex_id = ex.default_id if self.exchange_id is None else self.exchange_id
        for name, value in (("user_id", self.user_id), ("exchange_id", ex_id)):
            if not _is_int(value) or value < 0:
                raise InvalidInput(
                    f"{name} {value!r} (BACKFILL_{name.upper()}) must be a non-negative integer"
                )
        return replace(self, symbols=symbols, timeframes=timeframes, exchange_id=ex_id)

    def job_options(self) -> JobOptions:
        """What every job of the run carries; never anything secret."""
        ex_id = exchange(self.exchange).default_id if self.exchange_id is None else self.exchange_id
        return JobOptions(
            self.candle_count, self.min_candles, self.user_id, ex_id, exchange=self.exchange
        )


DEFAULT_BACKFILL_CONFIG = BackfillConfig()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def split_symbols(
    symbols: list[str] | tuple[str, ...], exchange_name: str = "coinbase"
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the valid product ids, deduplicated, in order; the entries that are not).

    For the processes that go on with what is valid (the keeper at a bucket close, beat at
    start, `backfill status`); a run (`validated`) refuses a bad entry instead."""
    valid: dict[str, None] = {}
    bad: dict[str, None] = {}
    for entry in symbols:
        try:
            valid[validate_product_id(entry, exchange_name)] = None
        except InvalidInput:
            bad[entry] = None
    return tuple(valid), tuple(bad)


def bad_symbols_message(
    bad: tuple[str, ...], limit: int = 10, exchange_name: str = "coinbase"
) -> str:
    """One line naming the bad entries, cleaned of control characters and cut short."""
    shown = ", ".join(repr(clean_text(b, 40)) for b in bad[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return (
        f"BACKFILL_SYMBOLS has {len(bad)} invalid entr{'y' if len(bad) == 1 else 'ies'} "
        f"({shown}{more}): skipped; expected upper-case letters and digits like "
        f"{exchange(exchange_name).symbol_example}"
    )
