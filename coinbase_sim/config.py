"""Run-time settings of the simulator, changeable at start (CLI) or live (POST /_sim/config)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

MAX_CAP = 350
TIMEOUT_MODES = ("hold", "close")
EXCHANGES = ("coinbase", "binance")


class ConfigError(ValueError):
    """A setting name or value was refused."""


@dataclass
class Settings:
    """Everything that shapes the simulator's behaviour (seed and keys fixed at start)."""

    seed: int = 1
    key_files: list[str] = field(default_factory=list)
    latency_ms: tuple[float, float] = (0.0, 0.0)
    p429: float = 0.0
    p500: float = 0.0
    p503: float = 0.0
    ptimeout: float = 0.0
    ptruncated: float = 0.0
    pnonjson: float = 0.0
    timeout_hold_s: float = 30.0
    timeout_mode: str = "hold"
    four_hour: bool = True
    cap: int = 300
    rate_limits: bool = True
    key_rate: int = 30
    ip_rate: int = 10
    clock_offset_s: float = 0.0
    synthetic_products: int = 0  # extra products SYN0001-USD ... (fixed at start)
    processes: int = 1  # serving processes on one port (fixed at start)
    render_cache_mb: int = 64  # per process budget of rendered closed pages, 0 = off (fixed)
    # Binance personality (coinbase_sim.binance); ignored by the Coinbase one.
    exchange: str = "coinbase"  # which API the simulator speaks (fixed at start)
    weight_limit: int = 6000  # REQUEST_WEIGHT per calendar minute per IP
    ban_after: int = 10  # requests tolerated after the first 429 of a minute before a 418 ban
    ban_duration_s: float = 120.0  # how long an IP ban lasts
    zero_volume_klines: bool = True  # empty intervals as zero-volume klines (else omitted)

    def public(self) -> dict[str, Any]:
        """JSON-friendly view of all settings."""
        data = asdict(self)
        data["latency_ms"] = list(self.latency_ms)
        return data


FIXED = frozenset(
    {"seed", "key_files", "synthetic_products", "processes", "render_cache_mb", "exchange"}
)
MAX_PROCESSES = 256
_PROBABILITIES = ("p429", "p500", "p503", "ptimeout", "ptruncated", "pnonjson")


def _coerce(name: str, value: Any) -> Any:
    """Validate one setting and convert it to its stored type."""
    if name == "latency_ms":
        if isinstance(value, int | float):
            value = (value, value)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
            if len(value) == 1:
                value = value * 2
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ConfigError("latency_ms must be [min, max]")
        low, high = float(value[0]), float(value[1])
        if low < 0 or high < low:
            raise ConfigError("latency_ms needs 0 <= min <= max")
        return (low, high)
    if name in _PROBABILITIES:
        p = float(value)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{name} must be within [0, 1]")
        return p
    if name in ("four_hour", "rate_limits", "zero_volume_klines"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if name == "cap":
        cap = int(value)
        if not 1 <= cap <= MAX_CAP:
            raise ConfigError(f"cap must be within [1, {MAX_CAP}]")
        return cap
    if name in ("key_rate", "ip_rate", "weight_limit"):
        rate = int(value)
        if rate < 1:
            raise ConfigError(f"{name} must be >= 1")
        return rate
    if name == "ban_after":
        count = int(value)
        if count < 0:
            raise ConfigError("ban_after must be >= 0")
        return count
    if name == "ban_duration_s":
        seconds = float(value)
        if not 0 <= seconds <= 3 * 86400:
            raise ConfigError("ban_duration_s must be within [0, 259200]")
        return seconds
    if name == "timeout_hold_s":
        hold = float(value)
        if hold < 0:
            raise ConfigError("timeout_hold_s must be >= 0")
        return hold
    if name == "timeout_mode":
        if value not in TIMEOUT_MODES:
            raise ConfigError(f"timeout_mode must be one of {TIMEOUT_MODES}")
        return value
    if name == "clock_offset_s":
        return float(value)
    raise ConfigError(f"unknown setting {name!r}")


class SettingsStore:
    """Thread-safe holder of the live settings; readers get a consistent snapshot."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._check_faults(settings)

    @property
    def current(self) -> Settings:
        """The settings object in force (replaced, never mutated, on update)."""
        return self._settings

    def update(self, changes: dict[str, Any]) -> Settings:
        """Apply a partial update atomically; raise ConfigError on any bad entry."""
        with self._lock:
            self._settings = apply_changes(self._settings, changes)
            return self._settings

    @staticmethod
    def _check_faults(settings: Settings) -> None:
        _check_faults(settings)


def apply_changes(settings: Settings, changes: dict[str, Any]) -> Settings:
    """A new Settings with `changes` applied; raise ConfigError on any bad entry."""
    data = asdict(settings)
    for name, value in changes.items():
        if name in FIXED:
            if value == data.get(name):
                continue  # restating a fixed setting unchanged is harmless
            raise ConfigError(f"{name} is fixed at start")
        try:
            data[name] = _coerce(name, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: {exc}") from exc
    new = Settings(**data)
    _check_faults(new)
    return new


def settings_of(public: dict[str, Any]) -> Settings:
    """Rebuild Settings from its public() view (as shared between processes)."""
    return Settings(**{**public, "latency_ms": tuple(public["latency_ms"])})


def _check_faults(settings: Settings) -> None:
    if sum(getattr(settings, p) for p in _PROBABILITIES) > 1.0 + 1e-9:
        raise ConfigError("fault probabilities add up to more than 1")


def _bounded(fixed: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = fixed.get(name)
    value = default if raw is None else int(raw)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be within [{low}, {high}]")
    return value


def _exchange(value: Any) -> str:
    if value not in EXCHANGES:
        raise ConfigError(f"exchange must be one of {EXCHANGES}")
    return str(value)


def settings_from(**values: Any) -> Settings:
    """Build Settings from loosely typed values (as given to SimProcess or make_server)."""
    names = {f.name for f in fields(Settings)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown settings: {sorted(unknown)}")
    fixed = {k: values.pop(k) for k in list(values) if k in FIXED}
    base = Settings(
        seed=int(fixed.get("seed", 1)), key_files=[str(f) for f in fixed.get("key_files") or []],
        synthetic_products=_bounded(fixed, "synthetic_products", 0, 0, 9999),
        processes=_bounded(fixed, "processes", 1, 1, MAX_PROCESSES),
        render_cache_mb=_bounded(fixed, "render_cache_mb", 64, 0, 1 << 20),
        exchange=_exchange(fixed.get("exchange", "coinbase")),
    )
    store = SettingsStore(base)
    return store.update(values)
