"""The Celery tasks: one per series, and the chord callback that opens the gate.

Shared tasks, registered on whichever app loads this module (`celery -A backfill` names
it in `include`): the data plane never imports the control plane. Per-node rate limit
and retries come from `task_annotations` in `celeryconfig.py`, read at worker start.

A series task never raises into the chord: after its retries it returns a failed
outcome, so one bad symbol never stops the run. Credentials come from the worker's
environment or key file, never from task arguments.
"""

from __future__ import annotations

import logging
import random
import time

import redis
from celery import Task, chord, current_app, group, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from core import keys
from core.claims import claim
from core.errors import (
    AuthError,
    BackfillError,
    InvalidCandle,
    InvalidInput,
    PermanentError,
    RateLimited,
    RetryableError,
)
from core.logs import log_event
from core.outcome import Outcome
from core.run import RunStore
from core.series import Series
from core.summary import summarize
from core.text import clean_text
from workers.breaker import counts_against_exchange
from workers.cache import ANNOUNCE_NEW
from workers.fetch import FetchOptions, FourHourMemory, fill_series
from workers.resources import resources

log = logging.getLogger("backfill.worker")
RETRY_BASE_S = 1.0
MAX_TOPUPS = 3  # rounds of refreshing series that went stale during a run, before the gate


class RunFourHourMemory(FourHourMemory):
    def __init__(self, runs: RunStore, run_id: str) -> None:
        self.runs, self.run_id = runs, run_id

    def rejected(self) -> bool:
        return self.runs.has_flag(self.run_id, "four_hour_rejected")

    def remember(self) -> None:
        self.runs.set_flag(self.run_id, "four_hour_rejected")


def retry_countdown(retries: int, error: BackfillError, retry_max_s: float = 60.0) -> float:
    """Exponential backoff with full jitter, at least the exchange's reset time, capped
    at `retry_max_s` (below the visibility timeout)."""
    backoff = random.uniform(0, min(retry_max_s, RETRY_BASE_S * 2**retries))
    if isinstance(error, RateLimited) and error.reset_after:
        backoff = max(backoff, min(retry_max_s, error.reset_after))
    return max(0.2, backoff)


@shared_task(bind=True, name=keys.SERIES_TASK, acks_late=True)
def backfill_series(
    self: Task, run_id: str, symbol: str, timeframe: str, options: dict, auth_retried: bool = False
) -> dict:
    """Fill one series and return its outcome (never raises once retries are spent)."""
    series = Series.of(symbol, timeframe)
    opts = FetchOptions(
        candle_count=options["candle_count"],
        min_candles=options["min_candles"],
        full=options.get("full", False),
    )
    outcome = _fill(self, run_id, series, options, opts, options.get("first", False), auth_retried)
    return outcome.to_dict()


@shared_task(bind=True, name=keys.REFRESH_TASK, acks_late=True)
def refresh_series(
    self: Task,
    symbol: str,
    timeframe: str,
    options: dict,
    boundary_ms: int | None = None,
    run_id: str | None = None,
    auth_retried: bool = False,
) -> dict:
    """After a bucket close: fetch the series' tail, write it, announce each new candle.

    `boundary_ms` (from the beat's fan-out) makes it once per series per bucket close:
    the first task to claim it runs, a duplicate (a second beat, a redelivered fan-out)
    returns at once, and a redelivery of this same task (its worker died) runs again.
    `run_id` (a startup run's top-up before its gate) records the outcome in that run.
    """
    series = Series.of(symbol, timeframe)
    res = resources.get()
    if boundary_ms is not None and not _claim(res, series, options, boundary_ms, self.request.id):
        return {"series": series.name, "status": "duplicate"}
    opts = FetchOptions(
        candle_count=options["candle_count"],
        min_candles=options["min_candles"],
        announce=ANNOUNCE_NEW,
    )
    outcome = _fill(self, run_id, series, options, opts, True, auth_retried)
    if outcome.status == "ok" and outcome.newest_ts is not None:
        res.keeper_lag(series, boundary_ms, outcome.newest_ts)
    return outcome.to_dict()


def _claim(res, series: Series, options: dict, boundary_ms: int, task_id: str | None) -> bool:
    key = keys.refresh_claim(
        options["user_id"], options["exchange_id"], series.symbol, series.timeframe.name,
        boundary_ms,
    )  # fmt: skip
    return claim(res.broker, key, task_id, 2 * series.timeframe.seconds + 60)


def _fill(
    task: Task,
    run_id: str | None,
    series: Series,
    options: dict,
    opts: FetchOptions,
    first: bool,
    auth_retried: bool,
) -> Outcome:
    """Fill under the budget and the breaker; retry what may pass later; an outcome always."""
    t0 = time.monotonic()
    res = resources.get()
    retries = task.request.retries
    symbol, timeframe = series.symbol, series.timeframe.name
    try:
        if res.config_error is not None:
            raise res.config_error
        res.breaker.check(symbol, timeframe)
        with res.budget.first_in_line(first):
            outcome = fill_series(
                series,
                res.client,
                res.cache(options["user_id"], options["exchange_id"]),
                opts,
                RunFourHourMemory(res.runs, run_id) if run_id else None,
            )
        res.breaker.success()
    except AuthError as e:
        # Under load Coinbase has answered 401 where it meant 429: retry once.
        if not auth_retried and res.budget.recently_throttled():
            raise task.retry(
                exc=e,
                countdown=retry_countdown(retries, e, res.retry_max_s),
                kwargs={**task.request.kwargs, "auth_retried": True},
            ) from None
        outcome = Outcome.failed(series.name, e, "auth", retries)
    except (RetryableError, redis.RedisError, SoftTimeLimitExceeded) as e:
        if counts_against_exchange(e):
            res.breaker.failure(series.name)
        if retries < task.max_retries:
            countdown = (
                retry_countdown(retries, e, res.retry_max_s)
                if isinstance(e, BackfillError)
                else 1.0
            )
            log_event(
                log,
                "backfill_retry",
                run_id=run_id,
                series=series.name,
                symbol=symbol,
                timeframe=timeframe,
                retry=retries + 1,
                countdown=round(countdown, 2),
                error=clean_text(f"{type(e).__name__}: {e}"),
                level=logging.WARNING,
            )
            raise task.retry(exc=e, countdown=countdown) from None
        outcome = Outcome.failed(series.name, e, "retries_exhausted", retries)
    except PermanentError as e:
        outcome = Outcome.failed(series.name, e, type(e).__name__, retries)
    except InvalidInput as e:
        outcome = Outcome.failed(series.name, e, "config", retries)
    except InvalidCandle as e:
        outcome = Outcome.failed(series.name, e, "invalid_candle", retries)
    except Exception as e:  # a bug must not stop the chord either; it is logged in full
        log.exception("unexpected error in %s", series.name)
        outcome = Outcome.failed(series.name, e, "unexpected", retries)
    outcome.retries = retries
    outcome.elapsed_s = round(time.monotonic() - t0, 4)
    outcome.finished_at = round(time.time(), 4)
    if run_id:
        try:
            res.runs.record(run_id, outcome)
        except redis.RedisError:
            log.warning("could not record progress for %s", series.name)
    log_event(
        log,
        "backfill_symbol_complete" if opts.announce != ANNOUNCE_NEW else "refresh_complete",
        run_id=run_id,
        series=series.name,
        symbol=symbol,
        timeframe=timeframe,
        status=outcome.status,
        mode=outcome.mode,
        candles=outcome.candles_cached,
        requests=outcome.requests,
        retries=retries,
        announced=outcome.announced,
        error=outcome.error,
    )
    return outcome


@shared_task(name=keys.FINISH_TASK, acks_late=True)
def finish(outcomes: list[dict], run_id: str, topup: int = 0) -> dict:
    """Chord callback: top up series that went stale while the run ran (a bucket closed
    meanwhile), then summarise the run, open the gate, log `backfill_complete`."""
    res = resources.get()
    meta = res.runs.meta(run_id) or {}
    # Series the dispatcher found fresh have no task, and a top-up refreshed only some:
    # the run store holds every series' latest outcome.
    merged = {o["series"]: Outcome.from_dict(o) for o in outcomes if "status" in o}
    missing = [name for name in meta.get("series", []) if name not in merged]
    merged.update(res.runs.outcomes(run_id, missing))
    checked_at = time.time()
    stale = stale_series(res, merged.values(), meta, checked_at)
    if stale and topup < MAX_TOPUPS:
        log_event(log, "backfill_topup", run_id=run_id, stale=len(stale), round=topup + 1)
        _top_up(run_id, stale, meta, topup + 1)
        return {"run_id": run_id, "status": "topping_up", "stale": len(stale)}
    res.runs.count_callback(run_id)
    summary = summarize(run_id, merged.values(), started_at=meta.get("started_at"))
    summary["fresh_as_of"] = round(checked_at, 3)
    summary["stale_at_gate"] = [s.name for s in stale]
    res.runs.open_gate(summary)
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


def stale_series(res, outcomes, meta: dict, now: float) -> list[Series]:
    """Ready series whose newest closed bucket is no longer in the cache at `now`."""
    ready = [Series.of(o.symbol, o.timeframe) for o in outcomes if o.status == "ok" and o.ready]
    if not ready:
        return []
    cache = res.cache(int(meta.get("user_id", 1)), int(meta.get("exchange_id", 1)))
    states = cache.states([(s, s.timeframe.last_closed_start(now)) for s in ready], 1)
    return [
        s
        for s, st in zip(ready, states, strict=True)
        if max(st.newest_start or 0, st.checked_upto or 0) < s.timeframe.last_closed_start(now)
    ]


def _top_up(run_id: str, stale: list[Series], meta: dict, round_: int) -> None:
    """One chord of refreshes (live queues: ahead of any backfill), then `finish` again."""
    app = current_app
    options = {
        "candle_count": int(meta.get("candle_count", 100)),
        "min_candles": int(meta.get("min_candles", 60)),
        "user_id": int(meta.get("user_id", 1)),
        "exchange_id": int(meta.get("exchange_id", 1)),
    }
    header = group(
        app.signature(
            keys.REFRESH_TASK,
            args=(s.symbol, s.timeframe.name, options),
            kwargs={"run_id": run_id},
            queue=keys.live_queue(s.timeframe.name),
            immutable=True,
        )
        for s in stale
    )
    callback = app.signature(
        keys.FINISH_TASK, args=(run_id,), kwargs={"topup": round_}, queue=keys.CONTROL_QUEUE
    )
    callback.link_error(app.signature(keys.ABORT_TASK, args=(run_id,), queue=keys.CONTROL_QUEUE))
    chord(header, app=app)(callback)


@shared_task(name=keys.ABORT_TASK, acks_late=True)
def abort(request, exc, traceback, run_id: str) -> dict:
    """Chord error callback: the run cannot finish, so open the gate as failed (loudly)
    rather than leave waiters hanging; a new dispatch completes what is missing."""
    res = resources.get()
    meta = res.runs.meta(run_id) or {}
    outcomes = res.runs.outcomes(run_id)
    for name in meta.get("series", []):
        if name not in outcomes:
            outcomes[name] = Outcome.failed(name, exc, "aborted")
    summary = summarize(run_id, outcomes.values(), started_at=meta.get("started_at"))
    summary.update(status="failed", error=clean_text(f"{type(exc).__name__}: {exc}"))
    res.runs.open_gate(summary)
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
