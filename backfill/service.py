"""`StartupBackfillService`: the seed's API, for embedding in a Python server's startup.

    service = StartupBackfillService()
    summary = service.backfill(["BTC-USD", "ETH-USD"], ["5m", "1h"])  # dispatch, then wait
    if summary["status"] != "ready": ...

It only dispatches and waits: the work runs on the Celery workers.
"""

from __future__ import annotations

from dataclasses import replace

from backfill.dispatch import check_redis, dispatch
from backfill.gate import GateResult
from backfill.progress import watch
from core.config import DEFAULT_BACKFILL_CONFIG, BackfillConfig
from core.errors import BackfillTimeout


class StartupBackfillService:
    def __init__(
        self, config: BackfillConfig = DEFAULT_BACKFILL_CONFIG, *, redis_url: str | None = None
    ) -> None:
        self.config = config
        self.redis_url = redis_url

    def backfill(
        self,
        symbols: list[str] | None = None,
        timeframes: list[str] | None = None,
        *,
        timeout: float = 600.0,
    ) -> dict:
        """Backfill and wait for the gate; returns the gate summary (status ready|partial)."""
        config = replace(
            self.config,
            symbols=tuple(symbols) if symbols is not None else self.config.symbols,
            timeframes=tuple(timeframes) if timeframes is not None else self.config.timeframes,
        )
        d = dispatch(config, redis_url=self.redis_url)
        result = self.wait(d.run_id, timeout)
        if result.summary is None:
            raise BackfillTimeout(f"run {d.run_id}: gate not open after {timeout:.0f}s")
        return result.summary

    def wait(self, run_id: str, timeout: float) -> GateResult:
        from backfill.app import app

        return watch(check_redis(self.redis_url or app.conf.broker_url), run_id, timeout)
