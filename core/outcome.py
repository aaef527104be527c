"""What one series task did: returned to the chord, recorded in the run, summarised at the gate.

Small on purpose: the chord callback receives every outcome in one message. It travels as
a dict (Celery's JSON) and is an `Outcome` everywhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from core.text import clean_text


@dataclass
class Outcome:
    series: str  # "BTC-USD:5m"
    symbol: str
    timeframe: str
    status: str = "ok"  # ok | failed
    mode: str = "cold"  # cold | tail | fresh (see workers.fetch)
    derived: bool = False  # 4h built from 1h because the exchange rejected FOUR_HOUR
    candles_written: int = 0
    announced: int = 0  # candle-close events published (new candles only)
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

    @classmethod
    def failed(cls, series: str, error: BaseException, reason: str, retries: int = 0) -> Outcome:
        symbol, timeframe = series.rsplit(":", 1)
        return cls(
            series=series,
            symbol=symbol,
            timeframe=timeframe,
            status="failed",
            error=clean_text(f"{type(error).__name__}: {error}"),
            reason=reason,
            retries=retries,
        )

    def to_dict(self) -> dict:
        """Unset (None) fields left out: the chord callback receives every outcome at once."""
        # every field is a plain value: no deep copy (`asdict`) needed
        return {k: v for k in _FIELDS if (v := getattr(self, k)) is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Outcome:
        return cls.from_dict(json.loads(raw))


_FIELDS = tuple(f.name for f in fields(Outcome))
