"""A series is one symbol at one timeframe: the unit of work, of caching and of readiness."""

from __future__ import annotations

from dataclasses import dataclass

from core import keys
from core.errors import InvalidInput
from core.exchanges import ANY_SYMBOL, validate_symbol
from core.text import split_names
from core.timeframe import Timeframe, timeframe


def validate_product_id(product_id: object, exchange: str | None = "coinbase") -> str:
    """Refuse anything but the exchange's symbol form (Coinbase: BASE-QUOTE) before it can
    reach a URL path; `exchange=None` takes any served exchange's form."""
    if exchange is not None:
        return validate_symbol(product_id, exchange)
    if not isinstance(product_id, str) or not ANY_SYMBOL.fullmatch(product_id):
        raise InvalidInput(
            f"invalid symbol {product_id!r}: expected upper-case letters and digits "
            "like BTC-USD or BTCUSDT"
        )
    return product_id


def parse_symbols(symbols: list[str] | str, exchange: str = "coinbase") -> list[str]:
    if isinstance(symbols, str):
        symbols = split_names(symbols)
    if not symbols:
        raise InvalidInput("no symbols given: the symbol list is empty")
    return list(dict.fromkeys(validate_product_id(s, exchange) for s in symbols))


@dataclass(frozen=True)
class Series:
    symbol: str
    timeframe: Timeframe

    @classmethod
    def of(cls, symbol: str, timeframe_name: str) -> Series:
        return cls(validate_product_id(symbol, None), timeframe(timeframe_name))

    @property
    def name(self) -> str:
        return f"{self.symbol}:{self.timeframe.name}"

    def cache_key(self, user_id: int = 1, exchange_id: int = 1) -> str:
        return keys.candles(user_id, exchange_id, self.symbol, self.timeframe.name)

    def close_channel(self, user_id: int = 1, exchange_id: int = 1) -> str:
        return keys.candle_close_channel(user_id, exchange_id, self.symbol, self.timeframe.name)

    def __str__(self) -> str:
        return self.name
