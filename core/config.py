"""One run's parameters (the seed's `BackfillConfig`), with the original service's defaults.

Validated before anything is enqueued; its `job_options` are what every job of the run
carries (core/jobs.py), so nothing secret is ever in here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core import defaults as d
from core.errors import InvalidInput
from core.jobs import JobOptions
from core.series import parse_symbols
from core.timeframe import TIMEFRAME_PRIORITY, parse_timeframes

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD",
    "DOGE-USD", "AVAX-USD", "LINK-USD", "DOT-USD", "LTC-USD",
    "BCH-USD", "POL-USD", "UNI-USD", "ATOM-USD", "XLM-USD",
    "ETC-USD", "FIL-USD", "AAVE-USD", "ALGO-USD", "NEAR-USD",
    "APT-USD", "ARB-USD", "OP-USD", "SHIB-USD", "ICP-USD",
)  # fmt: skip
MAX_CACHED, MIN_CANDLES = d.MAX_CACHED, d.MIN_CANDLES


@dataclass(frozen=True)
class BackfillConfig:
    """One run's parameters (the seed's `BackfillConfig`)."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY
    candle_count: int = d.CANDLE_COUNT
    min_candles: int = d.MIN_CANDLES
    user_id: int = d.USER_ID
    exchange_id: int = d.EXCHANGE_ID
    full: bool = False  # ignore what the cache holds and refetch every series

    def validated(self) -> BackfillConfig:
        """Check everything a user can get wrong, before anything is enqueued."""
        symbols = tuple(parse_symbols(list(self.symbols)))
        timeframes = tuple(tf.name for tf in parse_timeframes(list(self.timeframes)))
        if not isinstance(self.candle_count, int) or not (
            self.min_candles <= self.candle_count <= MAX_CACHED
        ):
            raise InvalidInput(
                f"candle count {self.candle_count!r} is out of range: it must be between "
                f"{self.min_candles} (the minimum a series needs to be ready) and {MAX_CACHED} "
                "(what the cache keeps)"
            )
        for name in ("user_id", "exchange_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} {value!r} must be a non-negative integer")
        return replace(self, symbols=symbols, timeframes=timeframes)

    def job_options(self) -> JobOptions:
        """What every job of the run carries; never anything secret."""
        return JobOptions(self.candle_count, self.min_candles, self.user_id, self.exchange_id)


DEFAULT_BACKFILL_CONFIG = BackfillConfig()
