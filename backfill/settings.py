"""Settings from the environment and `.env`, and the seed's `BackfillConfig`.

`Settings` is what an operator sets (names as in the README); `BackfillConfig` is
what one run needs, with the original TypeScript service's defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backfill.errors import InvalidInput
from backfill.names import split_names
from backfill.series import parse_symbols
from backfill.timeframe import TIMEFRAME_PRIORITY, parse_timeframes

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD",
    "DOGE-USD", "AVAX-USD", "LINK-USD", "DOT-USD", "LTC-USD",
    "BCH-USD", "POL-USD", "UNI-USD", "ATOM-USD", "XLM-USD",
    "ETC-USD", "FIL-USD", "AAVE-USD", "ALGO-USD", "NEAR-USD",
    "APT-USD", "ARB-USD", "OP-USD", "SHIB-USD", "ICP-USD",
)  # fmt: skip
COINBASE_URL = "https://api.coinbase.com"
MAX_CACHED = 1000  # the cache contract trims every series to its newest 1000 members
MIN_CANDLES = 60  # MACD-V needs 60 closed candles to be trusted


@dataclass(frozen=True)
class BackfillConfig:
    """One run's parameters (the seed's `BackfillConfig`)."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timeframes: tuple[str, ...] = TIMEFRAME_PRIORITY
    candle_count: int = 100
    min_candles: int = MIN_CANDLES
    user_id: int = 1
    exchange_id: int = 1
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

    def task_options(self) -> dict:
        """What every task of the run needs; never anything secret."""
        return {
            "candle_count": self.candle_count,
            "min_candles": self.min_candles,
            "user_id": self.user_id,
            "exchange_id": self.exchange_id,
            "full": self.full,
        }


DEFAULT_BACKFILL_CONFIG = BackfillConfig()


class Settings(BaseSettings):
    """Operator settings; every field is read from the same-named env var or `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    redis_url: str = "redis://127.0.0.1:6379/0"
    cache_redis_url: str | None = None
    coinbase_api_base_url: str = COINBASE_URL
    coinbase_api_key_file: Path | None = None
    coinbase_api_key_name: str | None = None
    coinbase_api_private_key: SecretStr | None = None
    backfill_symbols: str = ",".join(DEFAULT_SYMBOLS)
    backfill_timeframes: str = ",".join(TIMEFRAME_PRIORITY)
    backfill_candle_count: int = 100
    backfill_min_candles: int = MIN_CANDLES
    backfill_user_id: int = 1
    backfill_exchange_id: int = 1
    backfill_worker_rate_limit: str = "5/s"
    backfill_fleet_rate: float | None = None  # default: 25/s with a key, 8/s public
    backfill_request_cap: int = 300
    backfill_max_retries: int = 10
    backfill_request_timeout_s: float = 10.0
    backfill_cache_ttl_s: int = 86400
    backfill_visibility_timeout_s: int = 900
    backfill_log_json: bool | None = None

    @field_validator(
        "cache_redis_url",
        "coinbase_api_key_file",
        "coinbase_api_key_name",
        "coinbase_api_private_key",
        "backfill_fleet_rate",
        "backfill_log_json",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        """`VAR=` in an env file or compose means 'not set', not an empty path or key."""
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("backfill_worker_rate_limit")
    @classmethod
    def _rate_limit(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"\d+(\.\d+)?(/[smh])?", v):
            raise ValueError(
                f"BACKFILL_WORKER_RATE_LIMIT {v!r} must look like 5/s, 300/m or 100/h (or be empty)"
            )
        return v

    @field_validator("backfill_request_cap")
    @classmethod
    def _cap(cls, v: int) -> int:
        if not 2 <= v <= 350:
            raise ValueError(f"BACKFILL_REQUEST_CAP {v} must be between 2 and 350")
        return v

    @property
    def cache_url(self) -> str:
        return self.cache_redis_url or self.redis_url

    @property
    def has_key(self) -> bool:
        return bool(self.coinbase_api_key_file or self.coinbase_api_key_name)

    def fleet_rate(self) -> float:
        if self.backfill_fleet_rate is not None:
            if self.backfill_fleet_rate <= 0:
                raise InvalidInput(f"BACKFILL_FLEET_RATE {self.backfill_fleet_rate} must be > 0")
            return self.backfill_fleet_rate
        return 25.0 if self.has_key else 8.0

    def credentials(self):
        """The parsed API key, or None for the public endpoint; raises `InvalidInput`."""
        from workers.coinbase.auth import load_credentials

        secret = self.coinbase_api_private_key
        return load_credentials(
            self.coinbase_api_key_file,
            self.coinbase_api_key_name,
            secret.get_secret_value() if secret else None,
        )

    def backfill_config(self) -> BackfillConfig:
        return BackfillConfig(
            symbols=tuple(split_names(self.backfill_symbols)),
            timeframes=tuple(split_names(self.backfill_timeframes)),
            candle_count=self.backfill_candle_count,
            min_candles=self.backfill_min_candles,
            user_id=self.backfill_user_id,
            exchange_id=self.backfill_exchange_id,
        )


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)


def redact_url(url: str) -> str:
    """A Redis URL safe to print: the password replaced."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


__all__ = [
    "DEFAULT_BACKFILL_CONFIG",
    "DEFAULT_SYMBOLS",
    "TIMEFRAME_PRIORITY",
    "BackfillConfig",
    "Settings",
]
