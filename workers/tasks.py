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
import time

import redis
from celery import Task, current_app, shared_task

from core import jobs, keys
from core.claims import claim
from core.errors import AuthError
from core.freshness import covers_last_close
from core.jobs import Job, RefreshJob, SeriesJob, series_of
from core.logs import log_event
from core.outcome import Outcome
from core.run import RunRecord, RunStore
from core.series import Series
from core.summary import summarize
from core.text import clean_text
from workers import derive
from workers.breaker import counts_against_exchange
from workers.cache import ANNOUNCE_NEW, ANNOUNCE_NEWEST
from workers.fetch import FetchOptions, FourHourMemory, fill_series
from workers.resources import resources
from workers.retry import Fail, RetryPolicy, decide, last_exchange_error, reported_error
from workers.trace import trace

log = logging.getLogger("backfill.worker")
MAX_TOPUPS = 3  # rounds of refreshing series that went stale during a run, before the gate


class RunFourHourMemory(FourHourMemory):
    def __init__(self, runs: RunStore, run_id: str) -> None:
        self.runs, self.run_id = runs, run_id

    def rejected(self) -> bool:
        return self.runs.has_flag(self.run_id, "four_hour_rejected")

    def remember(self) -> None:
        self.runs.set_flag(self.run_id, "four_hour_rejected")


@shared_task(bind=True, name=keys.SERIES_TASK, acks_late=True)
def backfill_series(self: Task, job: dict, auth_retried: bool = False, **_waits) -> dict:
    """Fill one series of a run and return its outcome (never raises once retries are
    spent; a message no dispatcher would build raises, and the chord's error callback
    opens the gate as failed)."""
    return _fill(self, SeriesJob.from_message(job), auth_retried).to_dict()


@shared_task(bind=True, name=keys.REFRESH_TASK, acks_late=True)
def refresh_series(self: Task, job: dict, auth_retried: bool = False, **_waits) -> dict:
    """After a bucket close: fetch the series' tail, write it, announce each new candle.

    A bucket close's refresh (`boundary_ms`) runs once per series per close: the first
    task to claim it runs, a duplicate (a second beat, a redelivered fan-out) returns at
    once, and a redelivery of this same task (its worker died) runs again. A run's top-up
    (`run_id`) records the outcome in that run.

    The finest timeframe's refresh then derives the longer timeframes of its close
    (`derive`, workers/derive.py): their rows are in the result's `derive`. A `check`
    compares one derived bucket with the exchange's own (the audit) and writes nothing
    unless they differ.
    """
    refresh = RefreshJob.from_message(job)
    series = series_of(refresh)
    res = resources.get()
    if refresh.check:
        return derive.audit(res, refresh)
    if refresh.boundary_ms is not None and not _claim(res, refresh, self.request.id):
        return {"series": series.name, "status": "duplicate"}
    outcome = _fill(self, refresh, auth_retried)
    if outcome.status == "ok" and outcome.newest_ts is not None:
        res.keeper_lag(series, refresh.boundary_ms, outcome.newest_ts)
    if refresh.boundary_ms is not None:
        derive.count_refresh(res.broker, refresh.boundary_ms, outcome.requests)
    result = outcome.to_dict()
    if refresh.derive:
        result["derive"] = derive.derive_after(res, refresh, outcome, self.request.id)
    return result


def _claim(res, job: RefreshJob, task_id: str | None) -> bool:
    o = job.options
    key = keys.refresh_claim(o.user_id, o.exchange_id, job.symbol, job.timeframe, job.boundary_ms)
    return claim(res.broker, key, task_id, 2 * series_of(job).timeframe.seconds + 60)


def _fill(task: Task, job: Job, auth_retried: bool) -> Outcome:
    """Fill under the budget and the breaker; retry what may pass later; an outcome always."""
    t0 = time.monotonic()
    res = resources.get()
    series, retries = series_of(job), task.request.retries
    trace.mark("task", f"{series.name}{'*' if job.live else ''}")
    refresh = isinstance(job, RefreshJob)
    client, budget, breaker = res.exchange(job.options.exchange)
    try:
        if res.config_error is not None and job.options.exchange == "coinbase":
            raise res.config_error  # the Coinbase key is unusable: nothing is fetched
        breaker.check(job.symbol, job.timeframe)
        with budget.using_reserve(job.live):
            outcome = fill_series(
                series,
                client,
                res.cache(job.options.user_id, job.options.exchange_id),
                FetchOptions(
                    candle_count=job.options.candle_count,
                    min_candles=job.options.min_candles,
                    full=not refresh and job.full,
                    announce=ANNOUNCE_NEW if refresh else ANNOUNCE_NEWEST,
                ),
                RunFourHourMemory(res.runs, job.run_id) if job.run_id else None,
            )
        breaker.success()
    except Exception as e:  # the decision (workers/retry.py) says what each error means
        outcome = _failed(task, job, series, e, auth_retried)
    outcome.retries = retries
    outcome.elapsed_s = round(time.monotonic() - t0, 4)
    outcome.finished_at = round(time.time(), 4)
    if job.run_id:
        try:
            res.runs.record(job.run_id, outcome)
        except redis.RedisError:
            log.warning("could not record progress for %s", series.name)
    trace.mark("done")
    log_event(
        log,
        "refresh_complete" if refresh else "backfill_symbol_complete",
        run_id=job.run_id,
        series=series.name,
        symbol=job.symbol,
        timeframe=job.timeframe,
        status=outcome.status,
        mode=outcome.mode,
        candles=outcome.candles_cached,
        requests=outcome.requests,
        retries=retries,
        announced=outcome.announced,
        error=outcome.error,
    )
    return outcome


def _failed(task: Task, job: Job, series: Series, e: Exception, auth_retried: bool) -> Outcome:
    """Carry out the retry policy's decision: raise Celery's Retry, or a failed outcome.
    Waits on the open breaker (`circuit_waits`) and the series' own last exchange error
    (`last_error`) travel in the retry's kwargs (`**_waits` of the tasks)."""
    res = resources.get()
    _, budget, breaker = res.exchange(job.options.exchange)
    retries = task.request.retries
    carried = task.request.kwargs or {}
    waits = int(carried.get("circuit_waits") or 0)
    last_error = last_exchange_error(e, carried.get("last_error"))
    if counts_against_exchange(e):
        breaker.failure(series.name)
    decision = decide(
        e,
        retries - waits,  # waits on the breaker are not the series' retries
        RetryPolicy(task.max_retries, res.retry_max_s),
        # asked of Redis only for a 401: during a Redis outage every other error (the
        # outage's own ConnectionError included) must reach the decision, not raise here
        throttled=isinstance(e, AuthError) and budget.recently_throttled(),
        auth_retried=auth_retried,
        circuit_waits=waits,
    )
    if isinstance(decision, Fail):
        if decision.reason == "unexpected":  # a bug must not stop the chord: logged in full
            log.error("unexpected error in %s", series.name, exc_info=e)
        outcome = Outcome.failed(series.name, e, decision.reason, retries)
        outcome.error = reported_error(e, last_error)
        return outcome
    log_event(
        log,
        "backfill_retry",
        run_id=job.run_id,
        series=series.name,
        symbol=job.symbol,
        timeframe=job.timeframe,
        retry=retries + 1,
        countdown=round(decision.countdown, 2),
        error=clean_text(f"{type(e).__name__}: {e}"),
        level=logging.WARNING,
    )
    raise task.retry(
        args=(job.to_message(),),
        kwargs={
            "auth_retried": auth_retried or decision.auth_retried,
            "circuit_waits": waits + decision.circuit_wait,
            "last_error": last_error,
        },
        exc=e,
        countdown=decision.countdown,
        max_retries=retries + 1,  # the decision above is the limit (waits apart)
    ) from None


@shared_task(name=keys.FINISH_TASK, acks_late=True)
def finish(outcomes: list[dict], run_id: str, topup: int = 0) -> dict:
    """Chord callback: top up series that went stale while the run ran (a bucket closed
    meanwhile), then summarise the run, open the gate, log `backfill_complete`."""
    res = resources.get()
    run = res.runs.meta(run_id)
    # Series the dispatcher found fresh have no task, and a top-up refreshed only some:
    # the run store holds every series' latest outcome.
    merged = {o["series"]: Outcome.from_dict(o) for o in outcomes if "status" in o}
    missing = [name for name in (run.series if run else []) if name not in merged]
    merged.update(res.runs.outcomes(run_id, missing))
    checked_at = time.time()
    stale = stale_series(res, merged.values(), run, checked_at) if run else []
    if stale and topup < MAX_TOPUPS:
        log_event(log, "backfill_topup", run_id=run_id, stale=len(stale), round=topup + 1)
        refreshes = [
            RefreshJob(s.symbol, s.timeframe.name, run.config_for(s.symbol).job_options(),
                       run_id=run_id)
            for s in stale
        ]  # fmt: skip
        current_app.signature(jobs.run_chord(run_id, refreshes, topup + 1)).apply_async()
        return {"run_id": run_id, "status": "topping_up", "stale": len(stale)}
    res.runs.count_callback(run_id)
    summary = summarize(run_id, merged.values(), started_at=run.started_at if run else None)
    if run is not None:
        summary["exchanges"] = per_exchange(run, merged.values())
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


def stale_series(res, outcomes, run: RunRecord, now: float) -> list[Series]:
    """Ready series whose newest closed bucket is no longer in the cache at `now`."""
    ready = [Series.of(o.symbol, o.timeframe) for o in outcomes if o.status == "ok" and o.ready]
    stale = []
    for config in run.configs:
        mine = [s for s in ready if run.config_for(s.symbol) is config]
        if not mine:
            continue
        cache = res.cache(config.user_id, config.exchange_id)
        states = cache.states([(s, s.timeframe.last_closed_start(now)) for s in mine], 1)
        stale += [
            s
            for s, st in zip(mine, states, strict=True)
            if not covers_last_close(st, s.timeframe, now)
        ]
    return stale


def per_exchange(run: RunRecord, outcomes) -> dict[str, dict]:
    """The gate's counts by exchange: series, ready, failed."""
    out = {c.exchange: {"series": 0, "ready": 0, "failed": 0} for c in run.configs}
    for o in outcomes:
        row = out[run.config_for(o.symbol).exchange]
        row["series"] += 1
        row["ready"] += o.status == "ok" and bool(o.ready)
        row["failed"] += o.status != "ok"
    return out


@shared_task(name=keys.ABORT_TASK, acks_late=True)
def abort(request, exc, traceback, run_id: str) -> dict:
    """Chord error callback: the run cannot finish, so open the gate as failed (loudly)
    rather than leave waiters hanging; a new dispatch completes what is missing."""
    res = resources.get()
    run = res.runs.meta(run_id)
    outcomes = res.runs.outcomes(run_id)
    for name in run.series if run else []:
        if name not in outcomes:
            outcomes[name] = Outcome.failed(name, exc, "aborted")
    summary = summarize(run_id, outcomes.values(), started_at=run.started_at if run else None)
    if run is not None:
        summary["exchanges"] = per_exchange(run, outcomes.values())
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
