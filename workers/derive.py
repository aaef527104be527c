"""After the finest timeframe's refresh at a bucket close: the longer timeframes, derived.

The keeper (workers/keeper.py) sends one refresh per symbol for the finest configured
timeframe, carrying the longer timeframes that closed at the same instant (`derive`). Once
that refresh wrote its candle, `derive_after` builds each longer one in order from what
the cache holds (core/derive.py: 15m and 1h from 5m, 4h and 1d from 1h ...), writes it
with the cache writer (one atomic call: the member, the `checked` mark up to the derived
bucket, the close announcement for a new candle, once) and records its lag like any
refresh. Where the data is not complete (or a member breaks the contract) the series is
refreshed natively right there (one request, `mode: native_fallback` with the reason);
where that fails, or where the finest refresh itself failed, a native refresh of the
series goes to its live queue with its own retries.

`audit` is the check: one native request for a derived bucket, compared byte for byte
with the cache, in the lowest-priority queue. A divergence is counted per exchange, the
series is switched back to native refreshes (and the whole exchange after
`EXCHANGE_NATIVE_AFTER` diverging series), and the exchange's candle replaces the
derived one (announced: the platform recomputes).
"""

from __future__ import annotations

import logging
import time

import redis
from celery import current_app

from core import jobs, keys
from core.claims import claim
from core.derive import Derived, SourceView, TargetView, derive, sources
from core.jobs import RefreshJob
from core.logs import log_event
from core.outcome import Outcome
from core.series import Series
from core.text import clean_text
from core.timeframe import Timeframe, timeframe
from workers.cache import ANNOUNCE_NEW, CandleCache
from workers.fetch import FetchOptions, fill_series

log = logging.getLogger("backfill.worker")
EXCHANGE_NATIVE_AFTER = 3  # diverging series after which a whole exchange goes native
COUNTS_TTL_S = 7 * 86400


def derive_after(res, job: RefreshJob, outcome: Outcome, task_id: str | None) -> list[dict]:
    """Every timeframe of `job.derive`, after the finest refresh ended with `outcome`."""
    o = job.options
    finest = timeframe(job.timeframe)
    close_s = job.boundary_ms // 1000
    results: list[dict] = []
    if outcome.status != "ok":
        for name in job.derive:
            results.append(
                _queue_native(res, job, timeframe(name), f"{job.timeframe} refresh failed")
            )
        return results
    cache = res.cache(o.user_id, o.exchange_id)
    current = [finest]  # timeframes up to date at this close, in this task
    for name in job.derive:
        into = timeframe(name)
        series = Series(job.symbol, into)
        boundary_ms = into.floor(close_s) * 1000
        t0 = time.monotonic()
        if not claim(
            res.broker, _claim_key(job, into, boundary_ms), task_id, 2 * into.seconds + 60
        ):
            results.append({"series": series.name, "status": "duplicate"})
            continue
        got = _derive_one(cache, series, boundary_ms // 1000 - into.seconds, current, o)
        if isinstance(got, tuple):
            derived, written = got
            row = {
                "series": series.name,
                "status": "ok",
                "mode": "derived",
                "source": derived.source,
                "announced": written,
                "newest_ts": derived.candle.timestamp_ms if derived.candle else None,
            }
            _count(res.broker, boundary_ms, derived=1)
            current.append(into)
        else:
            row = _native_inline(res, job, series, boundary_ms, got)
            if row["status"] == "ok":
                current.append(into)
        row["elapsed_s"] = round(time.monotonic() - t0, 4)
        if row["status"] == "ok":
            res.keeper_lag(series, boundary_ms, boundary_ms - into.ms)
        log_event(
            log,
            "refresh_complete",
            series=series.name,
            symbol=job.symbol,
            timeframe=name,
            **{k: v for k, v in row.items() if k != "series"},
        )
        results.append(row)
    for name in job.audit:
        if any(r.get("mode") == "derived" and r["series"].endswith(f":{name}") for r in results):
            check = RefreshJob(
                job.symbol, name, o, boundary_ms=timeframe(name).floor(close_s) * 1000, check=True
            )
            current_app.signature(jobs.signature(check)).apply_async()
    return results


def _derive_one(
    cache: CandleCache, series: Series, bucket: int, current: list[Timeframe], o
) -> tuple[Derived, int] | str:
    """Derive and write the bucket from the first complete source; else why not."""
    reasons = []
    for src in sources(series.timeframe, current):
        source, target, exhausted_at = read_views(cache, series, bucket, src)
        got = derive(series, bucket, source, target, o.candle_count)
        if isinstance(got, Derived):
            written = cache.write(
                series,
                [got.candle] if got.candle else [],
                checked_upto=bucket,
                exhausted=target.exhausted,
                exhausted_at=exhausted_at,
                announce=ANNOUNCE_NEW,
            )
            return got, written.announced
        reasons.append(f"from {src.name}: {got.reason}")
    return "; ".join(reasons) or "no finer timeframe current at this close"


def read_views(
    cache: CandleCache, series: Series, bucket: int, src: Timeframe
) -> tuple[SourceView, TargetView, float | None]:
    """What `derive` needs of the finer and the longer series: one round trip."""
    child = Series(series.symbol, src)
    end = bucket + series.timeframe.seconds
    pipe = cache.redis.pipeline(transaction=False)
    pipe.zrangebyscore(cache.key(child), bucket * 1000, (end - src.seconds) * 1000, withscores=True)
    pipe.zrange(cache.key(child), 0, 0, withscores=True)
    pipe.hget(cache.checked_key(child), "upto")
    pipe.zrevrangebyscore(
        cache.key(series), f"({bucket * 1000}", "-inf", start=0, num=1, withscores=True
    )
    pipe.hmget(cache.checked_key(series), "upto", "exhausted")
    pipe.zcard(cache.key(series))
    members, oldest, src_upto, before, (upto, exhausted), count = pipe.execute()
    at = _float(exhausted)
    trusted = at is not None and time.time() - at < cache.exhausted_recheck_s
    return (
        SourceView(
            src,
            members,
            _ms_to_s(src_upto),
            int(oldest[0][1]) // 1000 if oldest else None,
        ),
        TargetView(
            int(before[0][1]) // 1000 if before else None, _ms_to_s(upto), int(count), trusted
        ),
        at,
    )


def _native_inline(res, job: RefreshJob, series: Series, boundary_ms: int, why: str) -> dict:
    """One native refresh of the series now (its reason in the row); if that fails, a
    native refresh in its live queue with its own retries."""
    o = job.options
    client, budget, breaker = res.exchange(o.exchange)
    out = {"series": series.name, "mode": "native_fallback", "reason": clean_text(why, 200)}
    try:
        breaker.check(job.symbol, series.timeframe.name)
        with budget.using_reserve(True):
            done = fill_series(
                series,
                client,
                res.cache(o.user_id, o.exchange_id),
                FetchOptions(
                    candle_count=o.candle_count, min_candles=o.min_candles, announce=ANNOUNCE_NEW
                ),
            )
        breaker.success()
    except Exception as e:  # its own task decides retries (workers/retry.py)
        res.broker.delete(_claim_key(job, series.timeframe, boundary_ms))
        queued = _queue_native(res, job, series.timeframe, f"{why}; then {type(e).__name__}")
        return {**out, "status": "queued", "error": clean_text(f"{type(e).__name__}: {e}")} | {
            "queued": queued["status"] == "queued"
        }
    _count(res.broker, boundary_ms, refresh=done.requests, fallback=1)
    return {
        **out,
        "status": done.status,
        "announced": done.announced,
        "requests": done.requests,
        "newest_ts": done.newest_ts,
    }


def _queue_native(res, job: RefreshJob, tf: Timeframe, why: str) -> dict:
    """A native refresh of the series for this close, in its live queue."""
    boundary_ms = tf.floor(job.boundary_ms // 1000) * 1000
    native = RefreshJob(job.symbol, tf.name, job.options, boundary_ms=boundary_ms)
    current_app.signature(jobs.signature(native, expires=max(tf.seconds, 5))).apply_async()
    _count(res.broker, boundary_ms, fallback=1)
    log_event(log, "derive_fallback", series=f"{job.symbol}:{tf.name}", reason=clean_text(why))
    return {
        "series": f"{job.symbol}:{tf.name}",
        "status": "queued",
        "mode": "native_fallback",
        "reason": clean_text(why, 200),
    }


def audit(res, job: RefreshJob) -> dict:
    """Compare the derived bucket of `job`'s close with the exchange's own candle."""
    o = job.options
    series = Series(job.symbol, timeframe(job.timeframe))
    tf = series.timeframe
    bucket = job.boundary_ms // 1000 - tf.seconds
    cache = res.cache(o.user_id, o.exchange_id)
    stats = keys.derive_audit(o.exchange)
    client = res.exchange(o.exchange)[0]
    before = client.requests_made
    try:
        native = client.get_candles(job.symbol, tf, bucket, bucket + tf.seconds)
    except Exception as e:  # best effort: the next close samples again
        res.broker.hincrby(stats, "errors", 1)
        log_event(
            log,
            "derive_audit",
            level=logging.WARNING,
            series=series.name,
            status="error",
            error=clean_text(f"{type(e).__name__}: {e}"),
        )
        return {"series": series.name, "status": "error", "mode": "audit"}
    finally:
        _count(res.broker, job.boundary_ms, audit=client.requests_made - before)
    closed = [c for c in native if c.closed and c.start == bucket]
    want = [closed[0].member(series.symbol, tf.name).encode()] if closed else []
    got = cache.redis.zrangebyscore(cache.key(series), bucket * 1000, bucket * 1000)
    pipe = res.broker.pipeline(transaction=False)
    pipe.hincrby(stats, "audits", 1)
    pipe.expire(stats, 30 * 86400)
    if got == want:
        pipe.execute()
        return {"series": series.name, "status": "ok", "mode": "audit", "diverged": False}
    native_key = keys.derive_native(o.user_id, o.exchange_id)
    pipe.hincrby(stats, "divergences", 1)
    pipe.hset(stats, "last_divergence", f"{series.name}@{bucket}")
    pipe.sadd(native_key, series.name)
    pipe.scard(native_key)
    *_, diverging = pipe.execute()
    if diverging >= EXCHANGE_NATIVE_AFTER:
        res.broker.hset(stats, "native", 1)
    # the exchange's candle replaces the derived one, announced as the close it is
    cache.write(series, closed, junk=tuple(got), announce=ANNOUNCE_NEW)
    log_event(
        log,
        "derive_divergence",
        level=logging.WARNING,
        series=series.name,
        bucket=bucket,
        cached=_text(got),
        native=_text(want),
        exchange_native=diverging >= EXCHANGE_NATIVE_AFTER,
    )
    return {"series": series.name, "status": "ok", "mode": "audit", "diverged": True}


def native_marks(broker: redis.Redis, user_id: int, exchange_id: int, exchange: str):
    """(series switched back to native, whether the whole exchange is), one round trip."""
    pipe = broker.pipeline(transaction=False)
    pipe.smembers(keys.derive_native(user_id, exchange_id))
    pipe.hget(keys.derive_audit(exchange), "native")
    members, off = pipe.execute()
    return {m.decode() for m in members}, off == b"1"


def _claim_key(job: RefreshJob, tf: Timeframe, boundary_ms: int) -> str:
    o = job.options
    return keys.refresh_claim(o.user_id, o.exchange_id, job.symbol, tf.name, boundary_ms)


def _count(broker: redis.Redis, boundary_ms: int, **fields: int) -> None:
    key = keys.keeper_requests(boundary_ms)
    pipe = broker.pipeline(transaction=False)
    for name, n in fields.items():
        if n:
            pipe.hincrby(key, name, n)
    pipe.expire(key, COUNTS_TTL_S)
    pipe.execute()


def count_refresh(broker: redis.Redis, boundary_ms: int, requests: int) -> None:
    """A bucket close's refresh spent `requests` (what `python -m bench --large` reads)."""
    _count(broker, boundary_ms, refresh=requests)


def _ms_to_s(raw: bytes | None) -> int | None:
    return int(raw) // 1000 if raw and raw.isdigit() and int(raw) else None


def _float(raw: bytes | None) -> float | None:
    try:
        at = float(raw) if raw else 0.0
    except ValueError:
        return None
    return at if at > 1 else None


def _text(members: list[bytes]) -> str:
    return clean_text(members[0].decode(errors="replace"), 200) if members else "absent"
