"""Operator settings from the environment and `.env` (names as in the README).

Both planes read the same environment, so there is one model: the dispatcher takes the
run's defaults from it, a worker its exchange, budget and cache settings. Nothing reads
it at import: `load_settings()` is called when a process starts its work.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import defaults as d
from core.config import DEFAULT_BINANCE_SYMBOLS, DEFAULT_SYMBOLS, BackfillConfig
from core.credentials import Credentials, load_credentials
from core.errors import InvalidInput
from core.exchanges import EXCHANGES
from core.text import clean_text, split_names
from core.timeframe import TIMEFRAME_PRIORITY

COINBASE_URL = "https://api.coinbase.com"


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
    backfill_candle_count: int = d.CANDLE_COUNT
    backfill_min_candles: int = d.MIN_CANDLES
    backfill_user_id: int = d.USER_ID
    backfill_exchange_id: int = d.EXCHANGE_ID
    backfill_worker_rate_limit: str = d.WORKER_RATE_LIMIT
    backfill_fleet_rate: float | None = None  # default: FLEET_RATE_KEY or FLEET_RATE_PUBLIC
    backfill_request_cap: int = d.REQUEST_CAP
    backfill_max_retries: int = d.MAX_RETRIES
    backfill_request_timeout_s: float = d.REQUEST_TIMEOUT_S
    backfill_cache_ttl_s: int = d.CACHE_TTL_S
    backfill_visibility_timeout_s: int = d.VISIBILITY_TIMEOUT_S
    backfill_log_json: bool | None = None
    backfill_settle_s: float = d.SETTLE_S
    backfill_breaker_failures: int = d.BREAKER_FAILURES
    backfill_breaker_cooldown_s: float = d.BREAKER_COOLDOWN_S
    backfill_request_deadline_s: float = d.REQUEST_DEADLINE_S
    backfill_max_body_bytes: int = d.MAX_BODY_BYTES
    backfill_max_reset_s: float = d.MAX_RESET_S
    backfill_max_clock_skew_s: float = d.MAX_CLOCK_SKEW_S
    backfill_exhausted_recheck_s: int = d.EXHAUSTED_RECHECK_S
    backfill_audit_share: float = d.AUDIT_SHARE
    backfill_node_dead_after_s: float = d.NODE_DEAD_AFTER_S
    backfill_exchanges: str = "coinbase"  # the exchanges this deployment serves
    binance_api_base_url: str = EXCHANGES["binance"].base_url
    binance_symbols: str = ",".join(DEFAULT_BINANCE_SYMBOLS)
    binance_exchange_id: int = d.BINANCE_EXCHANGE_ID
    binance_weight_limit: int = d.BINANCE_WEIGHT_LIMIT
    binance_weight_share: float = d.BINANCE_WEIGHT_SHARE

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

    @field_validator("backfill_settle_s")
    @classmethod
    def _settle(cls, v: float) -> float:
        if not 0 <= v <= 50:
            raise ValueError(f"BACKFILL_SETTLE_S {v} must be between 0 and 50 seconds")
        return v

    @field_validator("backfill_audit_share")
    @classmethod
    def _audit_share(cls, v: float) -> float:
        if not 0 <= v <= 1:
            raise ValueError(f"BACKFILL_AUDIT_SHARE {v} must be between 0 (off) and 1")
        return v

    @field_validator("backfill_request_cap")
    @classmethod
    def _cap(cls, v: int) -> int:
        if not 2 <= v <= 350:
            raise ValueError(f"BACKFILL_REQUEST_CAP {v} must be between 2 and 350")
        return v

    @field_validator(
        "backfill_request_deadline_s",
        "backfill_max_body_bytes",
        "backfill_max_reset_s",
        "backfill_max_clock_skew_s",
        "backfill_breaker_failures",
        "backfill_breaker_cooldown_s",
        "backfill_request_timeout_s",
        "backfill_cache_ttl_s",
        "binance_weight_limit",
    )
    @classmethod
    def _positive(cls, v: float, info) -> float:
        if not v > 0:
            raise ValueError(f"{info.field_name.upper()} {v} must be > 0")
        return v

    @field_validator("backfill_candle_count", "backfill_min_candles")
    @classmethod
    def _candles(cls, v: int, info) -> int:
        # each alone here; min_candles <= candle_count once a run's overrides are applied
        # (BackfillConfig.validated: --candle-count may change the count)
        if not d.MIN_CANDLES <= v <= d.MAX_CACHED:
            raise ValueError(
                f"{info.field_name.upper()} {v} must be between {d.MIN_CANDLES} (what MACD-V "
                f"needs) and {d.MAX_CACHED} (what the cache keeps)"
            )
        return v

    @field_validator("backfill_node_dead_after_s")
    @classmethod
    def _dead_after(cls, v: float) -> float:
        if not v >= 3:
            raise ValueError(f"BACKFILL_NODE_DEAD_AFTER_S {v} must be at least 3 seconds")
        return v

    @field_validator("binance_weight_share")
    @classmethod
    def _share(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"BINANCE_WEIGHT_SHARE {v} must be above 0 and at most 1")
        return v

    @field_validator("backfill_exchanges")
    @classmethod
    def _exchanges(cls, v: str) -> str:
        bad = [n for n in split_names(v) if n not in EXCHANGES]
        if bad or not split_names(v):
            raise ValueError(
                f"BACKFILL_EXCHANGES {clean_text(v, 60)!r} must name some of "
                f"{', '.join(EXCHANGES)}"
            )
        return v

    @field_validator(
        "backfill_user_id", "backfill_exchange_id", "backfill_exhausted_recheck_s",
        "binance_exchange_id",
    )  # fmt: skip
    @classmethod
    def _non_negative(cls, v: int, info) -> int:
        if v < 0:
            raise ValueError(f"{info.field_name.upper()} {v} must be >= 0")
        return v

    @field_validator("backfill_max_retries")
    @classmethod
    def _retries(cls, v: int) -> int:
        if not 0 <= v <= 100:
            raise ValueError(f"BACKFILL_MAX_RETRIES {v} must be between 0 and 100")
        return v

    @field_validator("backfill_visibility_timeout_s")
    @classmethod
    def _visibility(cls, v: int) -> int:
        # retry countdowns and budget waits (at least 2 s) must stay below it
        if v < 3:
            raise ValueError(f"BACKFILL_VISIBILITY_TIMEOUT_S {v} must be at least 3 seconds")
        return v

    @field_validator("backfill_fleet_rate")
    @classmethod
    def _fleet_rate(cls, v: float | None) -> float | None:
        if v is not None and not v > 0:
            raise ValueError(f"BACKFILL_FLEET_RATE {v} must be > 0")
        return v

    def task_time_limits(self) -> tuple[float, float]:
        """(soft, hard) seconds for one task: both below the visibility timeout, so that a
        task stuck on the exchange fails (and retries) before its message is redelivered."""
        vt = self.backfill_visibility_timeout_s
        soft = min(120.0, vt * 0.6)
        return soft, min(soft + 10.0, vt * 0.9)

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
        return d.FLEET_RATE_KEY if self.has_key else d.FLEET_RATE_PUBLIC

    def credentials(self) -> Credentials | None:
        """The parsed API key, or None for the public endpoint; raises `InvalidInput`."""
        secret = self.coinbase_api_private_key
        return load_credentials(
            self.coinbase_api_key_file,
            self.coinbase_api_key_name,
            secret.get_secret_value() if secret else None,
        )

    def backfill_config(self, exchange_name: str | None = None) -> BackfillConfig:
        """One exchange's run (default: the first of BACKFILL_EXCHANGES)."""
        name = exchange_name or self.exchanges()[0]
        coinbase = name == "coinbase"
        return BackfillConfig(
            symbols=tuple(split_names(self.backfill_symbols if coinbase else self.binance_symbols)),
            timeframes=tuple(split_names(self.backfill_timeframes)),
            candle_count=self.backfill_candle_count,
            min_candles=self.backfill_min_candles,
            user_id=self.backfill_user_id,
            exchange_id=self.backfill_exchange_id if coinbase else self.binance_exchange_id,
            exchange=name,
        )

    def exchanges(self) -> list[str]:
        """BACKFILL_EXCHANGES, validated: known names, each once, in the given order."""
        names = list(dict.fromkeys(split_names(self.backfill_exchanges)))
        if not names:
            raise InvalidInput("BACKFILL_EXCHANGES is empty: name at least one exchange")
        for n in names:
            if n not in EXCHANGES:
                raise InvalidInput(
                    f"BACKFILL_EXCHANGES names an unknown exchange {clean_text(n, 40)!r}; "
                    f"expected some of {', '.join(EXCHANGES)}"
                )
        return names

    def backfill_configs(self) -> list[BackfillConfig]:
        """Every served exchange's run, in BACKFILL_EXCHANGES order."""
        return [self.backfill_config(n) for n in self.exchanges()]

    def binance_fleet_rate(self) -> float:
        """Klines per second the Binance fleet sends: its share of the IP's weight per
        minute, spread evenly (never the whole minute in a burst)."""
        ex = EXCHANGES["binance"]
        return self.binance_weight_limit * self.binance_weight_share / 60 / ex.request_weight


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


__all__ = ["Settings", "load_settings", "redact_url"]
