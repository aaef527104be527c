"""The exchanges the pipeline serves: what both planes must know of each, by name.

Adding an exchange is one entry here (its public facts), one module behind the seam
(`workers/<name>/api.py`) and a simulator personality. Symbols are checked here before
anything is enqueued or reaches a URL path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from core.errors import InvalidInput


@dataclass(frozen=True)
class Exchange:
    name: str
    default_id: int  # the cache keys' `candles:{user}:{exchange_id}:...`
    symbol_pattern: re.Pattern[str]
    symbol_example: str
    page_cap: int  # most buckets one request may span
    base_url: str
    request_weight: int = 1  # what one candle request costs in the exchange's count


EXCHANGES: dict[str, Exchange] = {
    "coinbase": Exchange(
        "coinbase", 1, re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}"), "BTC-USD", 300,
        "https://api.coinbase.com",
    ),
    "binance": Exchange(
        "binance", 2, re.compile(r"[A-Z0-9]{2,20}"), "BTCUSDT", 1000, "https://api.binance.com",
        request_weight=2,
    ),
}  # fmt: skip
ANY_SYMBOL = re.compile("|".join(f"(?:{e.symbol_pattern.pattern})" for e in EXCHANGES.values()))


def exchange(name: object) -> Exchange:
    """The exchange named `name`, or `InvalidInput` naming it and the known ones."""
    if isinstance(name, str) and name in EXCHANGES:
        return EXCHANGES[name]
    raise InvalidInput(f"unknown exchange {name!r}; expected one of {', '.join(EXCHANGES)}")


def budget_name(exchange_name: str, key_name: str | None = None) -> str:
    """The fleet budget an exchange's requests share: Coinbase counts per API key (hashed:
    key names stay out of Redis) or per IP on its public endpoint; Binance per IP."""
    if exchange(exchange_name).name == "binance":
        return "binance"
    if not key_name:
        return "public"
    return "key:" + hashlib.sha256(key_name.encode()).hexdigest()[:16]


def validate_symbol(symbol: object, exchange_name: str) -> str:
    """Refuse anything but the exchange's own symbol form before it can reach a URL."""
    ex = exchange(exchange_name)
    if not isinstance(symbol, str) or not ex.symbol_pattern.fullmatch(symbol):
        raise InvalidInput(
            f"invalid {ex.name} symbol {symbol!r}: expected upper-case letters and digits "
            f"like {ex.symbol_example}"
        )
    return symbol
