"""Candle backfill: control plane (settings, Celery app, dispatch, gate, CLI).

The names of the original TypeScript service are kept for people porting from it.
"""

from backfill.app import app
from core.config import DEFAULT_BACKFILL_CONFIG, BackfillConfig
from core.timeframe import TIMEFRAME_PRIORITY

__all__ = [
    "DEFAULT_BACKFILL_CONFIG",
    "TIMEFRAME_PRIORITY",
    "BackfillConfig",
    "StartupBackfillService",
    "app",
]


def __getattr__(name: str):
    if name == "StartupBackfillService":  # imported lazily: it pulls in the gate and dispatch
        from backfill.service import StartupBackfillService

        return StartupBackfillService
    raise AttributeError(name)
