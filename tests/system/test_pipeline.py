"""The pipeline end to end: real redis-server, real `celery worker` processes, real HTTP."""

from __future__ import annotations

import time

import pytest
import redis
from helpers import assert_matches_truth, cached, clear_of_close, cli, wait_until

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from core import keys
from core.config import BackfillConfig
from core.jobs import SeriesJob
from core.run import RunStore
from core.series import Series

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD")


def test_full_run_matches_exchange_and_gate_opens_once(rclient, redis_url, sim, start_workers):
    start_workers(2)
    config = BackfillConfig(symbols=SYMBOLS)
    t0 = time.time()
    d = dispatch(config, redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.summary is not None and result.exit_code == 0, result.summary
    s = result.summary
    assert s["status"] == "ready" and len(s["ready"]) == 20 and s["completed"] == 20
    assert not s["failed"] and not s["not_ready"]
    for symbol in SYMBOLS:
        for tf in config.timeframes:
            assert_matches_truth(rclient, sim, Series.of(symbol, tf), 100, t0)
    assert int(rclient.get(keys.run(d.run_id, "callbacks"))) == 1
    stats = sim.stats()
    assert stats["responses_by_status"].get("429", 0) == 0


def test_priority_order_with_one_worker(rclient, redis_url, sim, start_workers):
    start_workers(1)
    clear_of_close(300, 60)  # a 5m close inside the run would re-record the 5m series last
    d = dispatch(
        BackfillConfig(symbols=SYMBOLS, timeframes=("1d", "1h", "15m", "5m")), redis_url=redis_url
    )
    assert wait_ready(rclient, d.run_id, timeout=120).exit_code == 0
    outcomes = sorted(RunStore(rclient).outcomes(d.run_id).values(), key=lambda o: o.finished_at)
    order = [o.timeframe for o in outcomes]
    assert order == ["5m"] * 4 + ["15m"] * 4 + ["1h"] * 4 + ["1d"] * 4, order


def test_unknown_product_fails_alone_and_wait_ready_exit_codes(
    rclient, redis_url, sim, start_workers
):
    start_workers(1)
    d = dispatch(
        BackfillConfig(symbols=("BTC-USD", "NOPE-USD"), timeframes=("5m", "1h")),
        redis_url=redis_url,
    )
    result = wait_ready(rclient, d.run_id, timeout=120)
    s = result.summary
    assert result.exit_code == 3 and s["status"] == "partial"
    assert sorted(s["ready"]) == ["BTC-USD:1h", "BTC-USD:5m"]
    assert sorted(f["series"] for f in s["failed"]) == ["NOPE-USD:1h", "NOPE-USD:5m"]
    assert all(f["reason"] == "NotFound" and f["retries"] == 0 for f in s["failed"])
    env = {"REDIS_URL": redis_url}
    r = cli("wait-ready", "--run", d.run_id, "--timeout", "5", env=env)
    assert r.returncode == 3 and "NOPE-USD:5m" in r.stdout
    ok = dispatch(BackfillConfig(symbols=("BTC-USD",), timeframes=("5m",)), redis_url=redis_url)
    assert cli("wait-ready", "--run", ok.run_id, "--timeout", "60", env=env).returncode == 0


def test_wait_ready_times_out_with_exit_1(redis_url, sim):
    d = dispatch(BackfillConfig(symbols=("BTC-USD",), timeframes=("5m",)), redis_url=redis_url)
    t0 = time.monotonic()
    r = cli("wait-ready", "--run", d.run_id, "--timeout", "1", env={"REDIS_URL": redis_url})
    assert r.returncode == 1 and time.monotonic() - t0 < 30
    # `dispatch --wait` ends with the same code when no worker runs the job
    args = ["dispatch", "--symbols", "ETH-USD", "--timeframes", "5m", "--wait", "--timeout", "1"]
    r = cli(*args, env={"REDIS_URL": redis_url})
    assert r.returncode == 1, r.stderr
    runs = RunStore(redis.Redis.from_url(redis_url))
    latest = runs.latest()
    assert latest != d.run_id and runs.gate(latest) is None  # dispatched; the gate never opened
    assert f"run {latest}: gate not open (timeout)" in r.stderr


def test_wait_ready_exit_2_on_bad_input_or_unreachable_redis(redis_url):
    r = cli("wait-ready", "--timeout", "5", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert r.returncode == 2 and "cannot reach Redis at redis://127.0.0.1:1/0" in r.stderr
    assert r.stderr.count("error:") == 1
    r = cli("wait-ready", "--timeout", "5", env={"REDIS_URL": redis_url})  # nothing dispatched
    assert r.returncode == 2 and "no backfill run found" in r.stderr
    r = cli("wait-ready", "--timeout", "soon", env={"REDIS_URL": redis_url})
    assert r.returncode == 2 and "--timeout" in r.stderr


def test_failing_series_gives_up_after_max_retries(redis_url, sim, start_workers, tmp_path):
    """BACKFILL_MAX_RETRIES retries of a series that keeps failing, then it is recorded as
    failed and the run goes on: `dispatch --wait` exits 3 and names it."""
    sim.configure(p500=1.0)  # the exchange answers 500 to every request
    start_workers(1, env={"BACKFILL_MAX_RETRIES": "2"})
    args = ["dispatch", "--symbols", "BTC-USD", "--timeframes", "5m", "--wait", "--timeout", "40"]
    r = cli(*args, env={"REDIS_URL": redis_url})
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "failed BTC-USD:5m: retries_exhausted" in r.stdout
    # the exchange's count: the first try and exactly two retries, then no more
    assert sim.stats()["requests_by_series"] == {"BTC-USD:FIVE_MINUTE": 3}
    assert sim.stats()["responses_by_status"] == {"500": 3}


def test_callback_needs_a_consumed_control_queue(rclient, redis_url, sim, start_workers):
    start_workers(1, queues=["backfill.5m"])
    d = dispatch(
        BackfillConfig(symbols=("BTC-USD", "ETH-USD"), timeframes=("5m",)), redis_url=redis_url
    )
    runs = RunStore(rclient)
    wait_until(lambda: runs.completed(d.run_id) == 2, 60, "both series done")
    # every header task is done, yet no worker consumes backfill.control: the gate stays shut
    assert wait_ready(rclient, d.run_id, timeout=3).summary is None
    assert rclient.llen("backfill.control") == 1
    start_workers(1, queues=["backfill.control"])
    assert wait_ready(rclient, d.run_id, timeout=60).exit_code == 0


def test_redispatch_one_member_per_timestamp_and_no_requests(
    rclient, redis_url, sim, start_workers
):
    """Also the cache settings: CACHE_REDIS_URL (here another database) holds every candle
    key, with BACKFILL_CACHE_TTL_S, and the dispatcher's warm check reads it there."""
    from core.settings import load_settings

    cache_url = redis_url.removesuffix("/0") + "/3"
    cache = redis.Redis.from_url(cache_url)
    settings = load_settings(cache_redis_url=cache_url)
    start_workers(2, env={"CACHE_REDIS_URL": cache_url, "BACKFILL_CACHE_TTL_S": "5000"})
    clear_of_close(300, 90)  # the warm re-dispatch must find the 5m series still fresh
    config = BackfillConfig(symbols=SYMBOLS[:2])
    t0 = time.time()
    first = dispatch(config, redis_url=redis_url, settings=settings)
    assert wait_ready(rclient, first.run_id, timeout=120).exit_code == 0
    assert not list(rclient.scan_iter("candles:*"))  # nothing in the broker's database
    for symbol in SYMBOLS[:2]:
        for tf in config.timeframes:
            series = Series.of(symbol, tf)
            assert_matches_truth(cache, sim, series, 100, t0)
            assert 4900 < cache.ttl(series.cache_key()) <= 5000
    before = sim.stats()["requests_total"]
    second = dispatch(config, redis_url=redis_url, settings=settings)
    assert wait_ready(rclient, second.run_id, timeout=60).exit_code == 0
    assert sim.stats()["requests_total"] == before  # warm restart: nothing to fetch
    assert second.fresh == second.total  # ... and nothing enqueued but the callback
    third = dispatch(BackfillConfig(symbols=SYMBOLS[:2], full=True), redis_url=redis_url)
    assert wait_ready(rclient, third.run_id, timeout=120).exit_code == 0
    assert sim.stats()["requests_total"] >= before + 10  # --full refetches every series
    for symbol in SYMBOLS[:2]:
        for tf in config.timeframes:
            members = cached(cache, Series.of(symbol, tf))
            stamps = [m["timestamp"] for m in members]
            assert len(stamps) == len(set(stamps)) and len(stamps) >= 100


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--timeframes", "5m,3m"], "'3m'"),
        (["--symbols", "BTC-USD,BTC-USD/../accounts"], "BTC-USD/../accounts"),
        (["--symbols", "btc usd"], "btc usd"),
        (["--symbols", ","], "empty"),
        (["--candle-count", "0"], "candle_count 0"),
        (["--candle-count", "10000"], "candle_count 10000"),
    ],
)
def test_bad_input_enqueues_nothing(rclient, redis_url, args, needle):
    r = cli("dispatch", *args, env={"REDIS_URL": redis_url})
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and r.stderr.count("error:") == 1
    assert rclient.dbsize() == 0  # nothing enqueued, nothing written


@pytest.mark.parametrize(
    "key_env",
    [
        {
            "COINBASE_API_KEY_NAME": "organizations/x/apiKeys/y",
            "COINBASE_API_PRIVATE_KEY": (
                "-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIBogusBogusBogus\\n"
                "-----END EC PRIVATE KEY-----"
            ),
        },
        {
            "COINBASE_API_KEY_NAME": "organizations/x/apiKeys/y",
            "COINBASE_API_PRIVATE_KEY": "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        },
        {"COINBASE_API_KEY_FILE": "/nonexistent/cdp_api_key.json"},
    ],
)
def test_corrupt_key_enqueues_nothing_and_hides_the_key(rclient, redis_url, key_env):
    r = cli("dispatch", "--symbols", "BTC-USD", env={"REDIS_URL": redis_url, **key_env})
    assert r.returncode == 2 and r.stderr.count("error:") == 1, r.stderr
    assert "key" in r.stderr.lower()
    assert "Bogus" not in r.stderr and "c2VjcmV0" not in r.stderr
    assert rclient.dbsize() == 0


def test_unreachable_redis_is_one_clear_error():
    r = cli("dispatch", "--symbols", "BTC-USD", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert r.returncode == 2 and "cannot reach Redis at redis://127.0.0.1:1/0" in r.stderr


def test_chord_error_opens_the_gate_as_failed(rclient, redis_url, sim, start_workers):
    """A header task that raises (here: a message no dispatcher would build) cannot stop the
    gate: the error callback opens it as failed instead of leaving waiters hanging."""
    from celery import chord

    from workers.tasks import abort, backfill_series, finish

    start_workers(1)
    run_id = "manual-run"
    RunStore(rclient).create(run_id, ["BTC-USD:5m", "bad id:5m"], BackfillConfig())
    good = SeriesJob(run_id, "BTC-USD", "5m").to_message()
    header = [
        backfill_series.si(good).set(queue="backfill.5m"),
        backfill_series.si({**good, "symbol": "bad id"}).set(queue="backfill.5m"),
    ]
    body = finish.s(run_id).set(queue="backfill.control")
    body.link_error(abort.s(run_id).set(queue="backfill.control"))
    chord(header)(body)
    result = wait_ready(rclient, run_id, timeout=60)
    assert result.exit_code == 3 and result.summary["status"] == "failed"
    assert [f["series"] for f in result.summary["failed"]] == ["bad id:5m"]
    assert result.summary["ready"] == ["BTC-USD:5m"]


@pytest.mark.parametrize("throttled", [False, True])
def test_auth_failure_retried_once_only_right_after_throttling(
    rclient, redis_url, sim, start_workers, tmp_path, throttled
):
    from coinbase_sim.keys import write_key_file
    from core.credentials import read_key_file
    from core.exchanges import budget_name
    from workers.budget import FleetBudget

    stranger = tmp_path / "stranger.json"
    write_key_file(stranger, "ec")  # the exchange does not know this key: every answer is 401
    start_workers(1, env={"COINBASE_API_KEY_FILE": str(stranger)})
    if throttled:  # a 429 just hit the fleet
        name = budget_name("coinbase", read_key_file(stranger).name)
        FleetBudget(rclient, name, 25).throttled(None)
    d = dispatch(BackfillConfig(symbols=("BTC-USD",), timeframes=("5m",)), redis_url=redis_url)
    s = wait_ready(rclient, d.run_id, timeout=60).summary
    [failed] = s["failed"]
    assert failed["reason"] == "auth" and "AuthError" in failed["error"]
    assert failed["retries"] == (1 if throttled else 0)
    assert sim.stats()["responses_by_status"] == {"401": 2 if throttled else 1}


def test_startup_backfill_service_dispatches_and_waits(redis_url, sim, start_workers):
    from backfill import DEFAULT_BACKFILL_CONFIG, StartupBackfillService

    start_workers(1)
    service = StartupBackfillService(DEFAULT_BACKFILL_CONFIG, redis_url=redis_url)
    summary = service.backfill(["BTC-USD", "ETH-USD"], ["5m", "1h"], timeout=60)
    assert summary["status"] == "ready" and sorted(summary["ready"]) == [
        "BTC-USD:1h",
        "BTC-USD:5m",
        "ETH-USD:1h",
        "ETH-USD:5m",
    ]
    with pytest.raises(ValueError, match="'7m'"):
        service.backfill(["BTC-USD"], ["7m"])
