"""The Celery tasks: one per series, and the chord callback that opens the gate.

A series task never raises into the chord: after its retries it returns a failed
outcome, so one bad symbol never stops the run. Credentials come from the worker's
environment or key file, never from task arguments.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time

import redis
from celery import Task

from backfill.app import app
from backfill.errors import (
    AuthError,
    BackfillError,
    InvalidInput,
    PermanentError,
    RateLimited,
    RetryableError,
)
from backfill.gate import open_gate, summarize
from backfill.logs import log_event
from backfill.run import RunStore
from backfill.series import Series
from backfill.settings import Settings, load_settings
from workers.budget import FleetBudget, budget_name
from workers.cache import CandleCache
from workers.coinbase.client import CoinbaseClient
from workers.fetch import FetchOptions, FourHourMemory, fill_series
from workers.outcome import Outcome

log = logging.getLogger("backfill.worker")
_settings = load_settings()
RETRY_BASE_S = 1.0
# A countdown is an ETA message held unacked by the worker: keep it well under the
# broker's visibility timeout or the message is redelivered and runs twice.
RETRY_MAX_S = max(2.0, min(60.0, _settings.backfill_visibility_timeout_s / 3))
# Likewise a task waiting for a budget slot holds its message: give up (and retry) first.
BUDGET_MAX_WAIT_S = max(2.0, min(30.0, _settings.backfill_visibility_timeout_s / 3))


class WorkerResources:
    """Per-process clients, built lazily after the pool forks (sockets must not be shared)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._lock = threading.Lock()

    def get(self) -> WorkerResources:
        with self._lock:
            if self._pid != os.getpid():
                self._build()
        return self

    def _build(self) -> None:
        s = self.settings
        self.broker = redis.Redis.from_url(s.redis_url, socket_timeout=10)
        self.runs = RunStore(self.broker)
        self.config_error: InvalidInput | None = None
        try:
            creds = s.credentials()
        except InvalidInput as e:  # every task fails with this reason; nothing is fetched
            log.error("worker configuration is invalid: %s", e)
            self.config_error, creds = e, None
        cache_redis = redis.Redis.from_url(s.cache_url, socket_timeout=10)
        self.budget = FleetBudget(
            self.broker,
            budget_name(creds.name if creds else None),
            s.fleet_rate(),
            max_wait_s=BUDGET_MAX_WAIT_S,
        )
        timeout = s.backfill_request_timeout_s
        self.client = CoinbaseClient(
            s.coinbase_api_base_url,
            creds,
            cap=s.backfill_request_cap,
            budget=self.budget,
            timeout=(min(3.05, timeout), timeout),
        )
        self.cache_redis = cache_redis
        self._caches: dict[tuple[int, int], CandleCache] = {}
        self._pid = os.getpid()

    def cache(self, user_id: int, exchange_id: int) -> CandleCache:
        """One writer (and its registered Lua script) per cache namespace, not per task."""
        key = (user_id, exchange_id)
        if key not in self._caches:
            self._caches[key] = CandleCache(
                self.cache_redis,
                user_id=user_id,
                exchange_id=exchange_id,
                ttl_s=self.settings.backfill_cache_ttl_s,
            )
        return self._caches[key]


resources = WorkerResources(_settings)


class RunFourHourMemory(FourHourMemory):
    def __init__(self, runs: RunStore, run_id: str) -> None:
        self.runs, self.run_id = runs, run_id

    def rejected(self) -> bool:
        return self.runs.has_flag(self.run_id, "four_hour_rejected")

    def remember(self) -> None:
        self.runs.set_flag(self.run_id, "four_hour_rejected")


def retry_countdown(retries: int, error: BackfillError) -> float:
    """Exponential backoff with full jitter, at least the exchange's reset time."""
    backoff = random.uniform(0, min(RETRY_MAX_S, RETRY_BASE_S * 2**retries))
    if isinstance(error, RateLimited) and error.reset_after:
        backoff = max(backoff, min(RETRY_MAX_S, error.reset_after))
    return max(0.2, backoff)


@app.task(
    bind=True,
    name="backfill.series",
    rate_limit=_settings.backfill_worker_rate_limit or None,
    max_retries=_settings.backfill_max_retries,
    acks_late=True,
)
def backfill_series(
    self: Task, run_id: str, symbol: str, timeframe: str, options: dict, auth_retried: bool = False
) -> dict:
    """Fill one series and return its outcome (never raises once retries are spent)."""
    t0 = time.monotonic()
    series = Series.of(symbol, timeframe)
    res = resources.get()
    opts = FetchOptions(
        candle_count=options["candle_count"],
        min_candles=options["min_candles"],
        full=options.get("full", False),
    )
    retries = self.request.retries
    try:
        if res.config_error is not None:
            raise res.config_error
        with res.budget.first_in_line(options.get("first", False)):
            outcome = fill_series(
                series,
                res.client,
                res.cache(options["user_id"], options["exchange_id"]),
                opts,
                RunFourHourMemory(res.runs, run_id),
            )
    except AuthError as e:
        # Under load Coinbase has answered 401 where it meant 429: retry once.
        if not auth_retried and res.budget.recently_throttled():
            raise self.retry(
                exc=e,
                countdown=retry_countdown(retries, e),
                kwargs={**self.request.kwargs, "auth_retried": True},
            ) from None
        outcome = _failed(series, e, "auth", retries)
    except (RetryableError, redis.RedisError) as e:
        if retries < self.max_retries:
            countdown = retry_countdown(retries, e) if isinstance(e, BackfillError) else 1.0
            log_event(
                log,
                "backfill_retry",
                run_id=run_id,
                series=series.name,
                symbol=symbol,
                timeframe=timeframe,
                retry=retries + 1,
                countdown=round(countdown, 2),
                error=str(e),
                level=logging.WARNING,
            )
            raise self.retry(exc=e, countdown=countdown) from None
        outcome = _failed(series, e, "retries_exhausted", retries)
    except PermanentError as e:
        outcome = _failed(series, e, type(e).__name__, retries)
    except InvalidInput as e:
        outcome = _failed(series, e, "config", retries)
    except Exception as e:  # a bug must not stop the chord either; it is logged in full
        log.exception("unexpected error in %s", series.name)
        outcome = _failed(series, e, "unexpected", retries)
    outcome.retries = retries
    outcome.elapsed_s = round(time.monotonic() - t0, 4)
    outcome.finished_at = round(time.time(), 4)
    record = outcome.to_dict()
    try:
        res.runs.record(run_id, record)
    except redis.RedisError:
        log.warning("could not record progress for %s", series.name)
    log_event(
        log,
        "backfill_symbol_complete",
        run_id=run_id,
        series=series.name,
        symbol=symbol,
        timeframe=timeframe,
        status=outcome.status,
        mode=outcome.mode,
        candles=outcome.candles_cached,
        requests=outcome.requests,
        retries=retries,
        error=outcome.error,
    )
    return record


def _failed(series: Series | str, error: Exception, reason: str, retries: int) -> Outcome:
    name = series if isinstance(series, str) else series.name
    symbol, timeframe = name.rsplit(":", 1)
    return Outcome(
        series=name,
        symbol=symbol,
        timeframe=timeframe,
        status="failed",
        error=f"{type(error).__name__}: {error}",
        reason=reason,
        retries=retries,
    )


@app.task(name="backfill.finish", acks_late=True)
def finish(outcomes: list[dict], run_id: str) -> dict:
    """Chord callback: summarise the run, open the gate, log `backfill_complete`."""
    res = resources.get()
    res.broker.incr(RunStore.key(run_id, "callbacks"))
    meta = res.runs.meta(run_id) or {}
    # Series the dispatcher found fresh have no task: their outcomes are in the run store.
    merged = {o["series"]: o for o in outcomes}
    missing = [name for name in meta.get("series", []) if name not in merged]
    merged.update(res.runs.outcomes(run_id, missing))
    summary = summarize(run_id, list(merged.values()), started_at=meta.get("started_at"))
    open_gate(res.broker, summary)
    log_event(
        log,
        "backfill_complete",
        run_id=run_id,
        completed=summary["completed"],
        ready=len(summary["ready"]),
        failed=len(summary["failed"]),
        not_ready=len(summary["not_ready"]),
        elapsed_s=summary["elapsed_s"],
    )
    return {k: summary[k] for k in ("run_id", "status", "completed", "elapsed_s")}


@app.task(name="backfill.abort", acks_late=True)
def abort(request, exc, traceback, run_id: str) -> dict:
    """Chord error callback: the run cannot finish, so open the gate as failed (loudly)
    rather than leave waiters hanging; a new dispatch completes what is missing."""
    res = resources.get()
    meta = res.runs.meta(run_id) or {}
    outcomes = res.runs.outcomes(run_id)
    for name in meta.get("series", []):
        if name not in outcomes:
            outcomes[name] = _failed(name, exc, "aborted", 0).to_dict()
    summary = summarize(run_id, list(outcomes.values()), started_at=meta.get("started_at"))
    summary.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    open_gate(res.broker, summary)
    log_event(
        log,
        "backfill_complete",
        level=logging.ERROR,
        run_id=run_id,
        status="failed",
        error=summary["error"],
        completed=summary["completed"],
        elapsed_s=summary["elapsed_s"],
    )
    return {"run_id": run_id, "status": "failed"}
