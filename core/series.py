"""A series is one symbol at one timeframe: the unit of work, of caching and of readiness."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core import keys
from core.errors import InvalidInput
from core.text import split_names
from core.timeframe import Timeframe, timeframe

_PRODUCT_ID = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")


def validate_product_id(product_id: object) -> str:
    """Refuse anything but BASE-QUOTE before it can reach a URL path."""
    if not isinstance(product_id, str) or not _PRODUCT_ID.fullmatch(product_id):
        raise InvalidInput(
            f"invalid product id {product_id!r}: expected BASE-QUOTE in upper-case "
            "letters and digits, e.g. BTC-USD"
        )
    return product_id


def parse_symbols(symbols: list[str] | str) -> list[str]:
    if isinstance(symbols, str):
        symbols = split_names(symbols)
    if not symbols:
        raise InvalidInput("no symbols given: the symbol list is empty")
    return list(dict.fromkeys(validate_product_id(s) for s in symbols))


@dataclass(frozen=True)
class Series:
    symbol: str
    timeframe: Timeframe

    @classmethod
    def of(cls, symbol: str, timeframe_name: str) -> Series:
        return cls(validate_product_id(symbol), timeframe(timeframe_name))

    @property
    def name(self) -> str:
        return f"{self.symbol}:{self.timeframe.name}"

    def cache_key(self, user_id: int = 1, exchange_id: int = 1) -> str:
        return keys.candles(user_id, exchange_id, self.symbol, self.timeframe.name)

    def close_channel(self, user_id: int = 1, exchange_id: int = 1) -> str:
        return keys.candle_close_channel(user_id, exchange_id, self.symbol, self.timeframe.name)

    def __str__(self) -> str:
        return self.name
