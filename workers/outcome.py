"""The outcome record a task returns: small (the chord callback gets them all in one message)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Outcome:
    series: str  # "BTC-USD:5m"
    symbol: str
    timeframe: str
    status: str = "ok"  # ok | failed
    mode: str = "cold"  # cold | tail | fresh (see workers.fetch)
    derived: bool = False  # 4h built from 1h because the exchange rejected FOUR_HOUR
    candles_written: int = 0
    candles_cached: int = 0  # closed candles the series holds for readers (newest candle_count)
    newest_ts: int | None = None  # ms
    requests: int = 0
    retries: int = 0
    gaps: int = 0  # buckets with no trades inside the cached span
    ready: bool = False  # at least min_candles closed candles cached
    error: str | None = None
    reason: str | None = None  # why not ready: error class, or too few candles
    elapsed_s: float = 0.0
    finished_at: float = 0.0  # UNIX time the task finished (orders a run's tasks)

    def to_dict(self) -> dict:
        """Unset (None) fields left out: the chord callback receives every outcome at once."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
