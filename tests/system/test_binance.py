"""Binance through the same pipeline, with real workers, a real Redis and both simulator
personalities over HTTP (issue 23): a two-exchange run is exact against each exchange's
truth; a ban (418) stops every Binance request until it ends while Coinbase completes;
the fleet's weight stays within its budget in every 60 s, by the simulator's own count."""

from __future__ import annotations

import json
import time

import pytest
from helpers import assert_matches_truth, cached, clear_of_close, cli, wait_until

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from core import keys
from core.config import BackfillConfig
from core.series import Series

pytestmark = pytest.mark.slow
CB = ("BTC-USD", "ETH-USD")
BN = ("BTCUSDT", "ETHUSDT")


def env_for(binance, **extra: str) -> dict[str, str]:
    return {"BINANCE_API_BASE_URL": binance.url, "BACKFILL_EXCHANGES": "coinbase,binance",
            "BINANCE_SYMBOLS": ",".join(BN), "BACKFILL_SYMBOLS": ",".join(CB),
            "BACKFILL_TIMEFRAMES": "5m,1h", **extra}  # fmt: skip


def configs(tfs=("5m", "1h"), binance_symbols=BN) -> list[BackfillConfig]:
    return [
        BackfillConfig(symbols=CB, timeframes=tfs),
        BackfillConfig(symbols=binance_symbols, timeframes=tfs, exchange="binance"),
    ]


def assert_binance_truth(rclient, binance, s: Series, n: int, not_before: float) -> None:
    """Exactly the exchange's newest n closed klines, values as sent (zero-volume ones too),
    under the Binance exchange id."""
    tf = s.timeframe
    end = tf.last_closed_start(time.time())
    truth = binance.klines(s.symbol, tf.name, (end - 2 * n * tf.seconds) * 1000, end * 1000)
    members = [json.loads(m) for m in rclient.zrange(keys.candles(1, 2, s.symbol, tf.name), 0, -1)]
    newest = members[-1]["timestamp"] // 1000
    assert newest >= tf.last_closed_start(not_before), f"{s}: old data"
    want = {k[0]: k for k in truth}
    assert len(members) == n, (s, len(members))
    for m in members:
        k = want[m["timestamp"]]
        got = [m["open"], m["high"], m["low"], m["close"], m["volume"]]
        assert got == [float(x) for x in k[1:6]], (s, m, k)
        assert m["symbol"] == s.symbol and m["timeframe"] == tf.name


def test_a_two_exchange_run_is_exact_against_each_truth(
    rclient, redis_url, sim, binance, start_workers
):
    start_workers(2, env=env_for(binance))
    t0 = time.time()
    d = dispatch(configs(), redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.exit_code == 0, result.summary.get("failed")
    by = result.summary["exchanges"]
    assert by == {"coinbase": {"series": 4, "ready": 4, "failed": 0},
                  "binance": {"series": 4, "ready": 4, "failed": 0}}, by  # fmt: skip
    for symbol in CB:
        for tf in ("5m", "1h"):
            assert_matches_truth(rclient, sim, Series.of(symbol, tf), 100, t0)
    for symbol in BN:
        for tf in ("5m", "1h"):
            assert_binance_truth(rclient, binance, Series.of(symbol, tf), 100, t0)
    stats = binance.stats()
    assert stats["requests_by_endpoint"].get("klines") == 4  # one request a series
    assert stats["responses_429"] == 0 and stats["responses_418"] == 0

    # the keeper serves both exchanges: a manual 5m close claims and refreshes each
    # exchange's 5m series once (fresh already: no request)
    from backfill.app import app

    app.send_task(keys.BOUNDARY_TASK, kwargs={"timeframes": ["5m"]}, queue=keys.CONTROL_QUEUE)
    close_ms = int(time.time()) // 300 * 300_000
    claims = [keys.refresh_claim(1, 1, s, "5m", close_ms) for s in CB]
    claims += [keys.refresh_claim(1, 2, s, "5m", close_ms) for s in BN]
    wait_until(lambda: all(rclient.exists(k) for k in claims), 30, "every 5m series refreshed")
    assert rclient.exists(keys.boundary_claim("5m", close_ms, "binance"))
    assert rclient.exists(keys.boundary_claim("5m", close_ms))


def test_a_ban_stops_binance_until_it_ends_while_coinbase_completes(
    rclient, redis_url, sim, binance, start_workers
):
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT")
    start_workers(2, env=env_for(binance, BINANCE_SYMBOLS=",".join(symbols)))
    binance.configure(ban_duration_s=30)
    binance.configure(ban_s=30)  # the IP is banned now: the next answer is a 418
    t0 = time.time()
    d = dispatch(configs(("5m", "15m", "1h"), symbols), redis_url=redis_url)
    result = wait_ready(rclient, d.run_id, timeout=60)
    took = time.time() - t0
    assert result.summary is not None and took < 25, took  # promptly, not after the ban
    by = result.summary["exchanges"]
    assert by["coinbase"] == {"series": 6, "ready": 6, "failed": 0}, by
    assert by["binance"]["failed"] == 18, by
    failed = [f for f in result.summary["failed"] if f["series"].split(":")[0] in symbols]
    assert all("banned until" in f["error"] and " ? " not in f["error"] for f in failed), failed
    stats = binance.stats()
    # nothing sent into the ban: at most one request a worker was in flight when it came
    assert stats["responses_418"] <= 2 and stats["requests_by_endpoint"].get("klines", 0) <= 2
    ban = rclient.get(keys.budget("binance").banned)
    assert ban is not None and int(ban) / 1000 > time.time()
    st = cli("status", "--json", env={"REDIS_URL": redis_url})
    assert "binance" in json.loads(st.stdout)["bans"], st.stdout
    binance.configure(ban_s=0)
    rclient.delete(keys.budget("binance").banned)  # as when the ban's time is up
    d = dispatch(configs(("5m",), symbols), redis_url=redis_url)
    again = wait_ready(rclient, d.run_id, timeout=60)
    assert again.summary["exchanges"]["binance"]["ready"] == 6, again.summary


def test_weight_never_exceeds_the_budget_in_any_60_s(rclient, redis_url, sim, binance,
                                                     start_workers):  # fmt: skip
    limit = 120  # weight per minute; the fleet plans 0.8 of it: 96, 48 klines
    binance.configure(weight_limit=limit)
    # slots come a 10-s window apart here: the budget wait (a third of the visibility
    # timeout) must cover one, which the tests' 8-s default does not (README: faults)
    start_workers(2, env=env_for(binance, BINANCE_WEIGHT_LIMIT=str(limit),
                                 BACKFILL_VISIBILITY_TIMEOUT_S="36"))  # fmt: skip
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT")
    clear_of_close(300, 45)  # ~25 s at 48 klines a minute: a 5m close inside would top up
    d = dispatch([BackfillConfig(symbols=symbols, timeframes=("5m", "15m", "1h", "4h"),
                                 exchange="binance")], redis_url=redis_url)  # fmt: skip
    result = wait_ready(rclient, d.run_id, timeout=120)
    assert result.exit_code == 0, result.summary.get("failed")
    stats = binance.stats()
    worst = max(stats["max_weight_in_any_60s"].values())
    assert stats["requests_by_endpoint"]["klines"] == 20
    assert worst <= 0.8 * limit, stats["max_weight_in_any_60s"]
    assert stats["responses_429"] == 0 and stats["responses_418"] == 0
    for symbol in symbols:
        assert len(cached(rclient, Series.of(symbol, "5m"), exchange_id=2)) == 100
