"""The Binance spot personality: klines, weights, 429 -> 418 bans, control routes."""

from __future__ import annotations

import math
import time
from decimal import Decimal

import pytest
import requests
from binance_support import KLINES, BinanceSim
from sim_support import Sim

from coinbase_sim.binance import INTERVALS, Interval, symbol_of
from coinbase_sim.binance_limits import WeightLimiter
from coinbase_sim.cli import build_parser, settings_args
from coinbase_sim.config import ConfigError, settings_from
from coinbase_sim.process import SimProcess

MINUTE_MS = 60_000
HOUR = 3600


def _past_hour_ms(hours_back: int = 5) -> int:
    return (int(time.time()) // HOUR * HOUR - hours_back * HOUR) * 1000


def _error(response: requests.Response) -> tuple[int, int]:
    return response.status_code, response.json()["code"]


# ---------------------------------------------------------------- weights
def test_weights_and_used_weight_header(binance_sim: BinanceSim) -> None:
    binance_sim.at_second(5)
    expected = 0
    for path, weight in [
        ("/api/v3/ping", 1),
        ("/api/v3/time", 1),
        ("/api/v3/exchangeInfo", 20),
        (KLINES + "?symbol=BTCUSDT&interval=5m&limit=1000", 2),
        (KLINES + "?symbol=BTCUSDT&interval=1h&limit=1", 2),
        (KLINES + "?symbol=NOPE&interval=1h", 2),  # refused requests still weigh
    ]:
        response = binance_sim.session.get(binance_sim.url + path, timeout=10)
        expected += weight
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == str(expected), path
        assert "X-MBX-USED-WEIGHT" not in response.headers
    stats = binance_sim.stats()
    assert stats["exchange"] == "binance"
    assert stats["weight_total"] == expected == 28
    assert stats["requests_by_endpoint"] == {"ping": 1, "time": 1, "exchangeInfo": 1, "klines": 3}
    assert stats["requests_by_series"]["BTCUSDT:5m"] == 1
    assert stats["max_weight_in_any_60s"] == {"ip:127.0.0.1": 28}
    assert stats["max_weight_in_any_minute"] == {"ip:127.0.0.1": 28}
    assert stats["responses_by_status"] == {"200": 5, "400": 1}
    assert stats["klines_served"] == 1001
    # Control routes weigh nothing.
    assert binance_sim.get("/api/v3/ping").headers["X-MBX-USED-WEIGHT-1M"] == "29"


def test_429_then_418_ban_escalation(binance_sim: BinanceSim) -> None:
    binance_sim.configure(weight_limit=10, ban_after=3, ban_duration_s=90)
    binance_sim.at_second(5)
    ok = [binance_sim.klines(interval="1h", limit=1) for _ in range(5)]
    assert [r.status_code for r in ok] == [200] * 5
    assert [r.headers["X-MBX-USED-WEIGHT-1M"] for r in ok] == ["2", "4", "6", "8", "10"]

    throttled = [binance_sim.klines(interval="1h", limit=1) for _ in range(4)]
    for n, response in enumerate(throttled):
        assert _error(response) == (429, -1003)
        assert response.json()["msg"].startswith("Too much request weight used;")
        assert "current limit is 10 request weight per 1 MINUTE" in response.json()["msg"]
        assert 50 <= int(response.headers["Retry-After"]) <= 56  # to the end of the minute
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == str(12 + 2 * n)

    before = time.time()
    banned = binance_sim.klines(interval="1h", limit=1)  # the 4th request after the first 429
    assert _error(banned) == (418, -1003)
    assert int(banned.headers["Retry-After"]) == 90
    msg = banned.json()["msg"]
    assert msg.startswith("Way too much request weight used; IP banned until ")
    until = int(msg.split("until ")[1].split(".")[0])
    offset = binance_sim.configure()["clock_offset_s"]
    assert abs(until - (before + offset + 90) * 1000) < 2000
    # Every request during the ban answers 418 and adds no weight.
    for path in ("/api/v3/ping", "/api/v3/time", "/api/v3/exchangeInfo", KLINES):
        response = binance_sim.get(path)
        assert response.status_code == 418
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == "20"
        assert int(response.headers["Retry-After"]) in (89, 90)
    stats = binance_sim.stats()
    assert stats["responses_429"] == 4
    assert stats["responses_418"] == 5
    assert stats["bans"] == 1
    assert stats["weight_total"] == 20
    assert stats["max_weight_in_any_minute"]["ip:127.0.0.1"] == 20


def test_ban_expires(binance_sim: BinanceSim) -> None:
    binance_sim.at_second(5)
    binance_sim.configure(ban_s=1)  # ban the caller now
    response = binance_sim.get("/api/v3/ping")
    assert response.status_code == 418 and response.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert binance_sim.get("/api/v3/ping").status_code == 200
    binance_sim.configure(ban_s=60)
    assert binance_sim.get("/api/v3/time").status_code == 418
    binance_sim.configure(ban_s=0)  # lifts it
    assert binance_sim.get("/api/v3/time").status_code == 200


def test_escalation_ban_expires_into_429_within_the_minute(binance_sim: BinanceSim) -> None:
    binance_sim.configure(weight_limit=2, ban_after=0, ban_duration_s=1)
    binance_sim.at_second(5)
    statuses = [binance_sim.klines(interval="1d", limit=1).status_code for _ in range(3)]
    assert statuses == [200, 429, 418]
    assert binance_sim.klines(interval="1d", limit=1).status_code == 418
    time.sleep(1.1)
    # The ban is over but the minute's weight is still spent: 429 again, then a new ban.
    assert [binance_sim.get("/api/v3/ping").status_code for _ in range(2)] == [429, 418]
    assert binance_sim.stats()["bans"] == 2


def test_weight_resets_at_the_calendar_minute(binance_sim: BinanceSim) -> None:
    binance_sim.configure(weight_limit=4)
    binance_sim.at_second(59.2)
    statuses = [binance_sim.klines(interval="1h", limit=1) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].headers["Retry-After"] == "1"
    time.sleep(max(0.0, 60.15 - binance_sim.sim_now() % 60))
    after = binance_sim.klines(interval="1h", limit=1)
    assert after.status_code == 200
    assert after.headers["X-MBX-USED-WEIGHT-1M"] == "2"
    stats = binance_sim.stats()
    # The calendar minute held 6 (429s weigh too); any sliding 60 s saw all 8.
    assert stats["max_weight_in_any_minute"]["ip:127.0.0.1"] == 6
    assert stats["max_weight_in_any_60s"]["ip:127.0.0.1"] == 8


def test_rate_limits_off_still_count(binance_sim: BinanceSim) -> None:
    binance_sim.configure(weight_limit=2, rate_limits=False)
    binance_sim.at_second(5)
    responses = [binance_sim.get("/api/v3/exchangeInfo") for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert responses[-1].headers["X-MBX-USED-WEIGHT-1M"] == "60"


def test_exchange_info(binance_sim: BinanceSim) -> None:
    binance_sim.configure(weight_limit=1234)
    info = binance_sim.get("/api/v3/exchangeInfo").json()
    limits = {
        (r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"]
        for r in info["rateLimits"]
    }
    assert limits[("REQUEST_WEIGHT", "MINUTE", 1)] == 1234
    assert limits[("RAW_REQUESTS", "MINUTE", 5)] == 61000
    symbols = {s["symbol"]: s for s in info["symbols"]}
    assert symbols["BTCUSDT"]["baseAsset"] == "BTC" and symbols["BTCUSDT"]["quoteAsset"] == "USDT"
    assert symbols["ETHBTC"]["quoteAsset"] == "BTC"
    assert "USDTUSDT" not in symbols
    assert all(s["status"] == "TRADING" for s in symbols.values())
    one = binance_sim.get("/api/v3/exchangeInfo", symbol="SOLUSDT").json()
    assert [s["symbol"] for s in one["symbols"]] == ["SOLUSDT"]
    some = binance_sim.get("/api/v3/exchangeInfo", symbols='["SOLUSDT","BTCEUR"]').json()
    assert [s["symbol"] for s in some["symbols"]] == ["SOLUSDT", "BTCEUR"]
    assert _error(binance_sim.get("/api/v3/exchangeInfo", symbol="NOPE")) == (400, -1121)
    mapping = binance_sim.get("/_sim/symbols").json()["symbols"]
    assert mapping["BTCUSDT"] == "BTC-USD" and mapping["BTCUSDC"] == "BTC-USDC"


def test_ping_and_time(binance_sim: BinanceSim) -> None:
    assert binance_sim.get("/api/v3/ping").json() == {}
    binance_sim.configure(clock_offset_s=-3600)
    server_time = binance_sim.get("/api/v3/time").json()["serverTime"]
    assert abs(server_time - (time.time() - 3600) * 1000) < 2000


# ---------------------------------------------------------------- klines
def test_kline_shape_and_close_time(binance_sim: BinanceSim) -> None:
    start = _past_hour_ms(10)
    for name, seconds in INTERVALS.items():
        if seconds == 0:
            continue
        rows = binance_sim.klines(interval=name, endTime=start, limit=5).json()
        assert len(rows) == 5, name
        for row in rows:
            assert len(row) == 12
            assert isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
            assert all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
            assert row[6] == row[0] + seconds * 1000 - 1
            assert Decimal(row[3]) <= min(Decimal(row[1]), Decimal(row[4]))
            assert Decimal(row[2]) >= max(Decimal(row[1]), Decimal(row[4]))
            assert len(row[1].split(".")[1]) == 8
            assert Decimal(row[9]) <= Decimal(row[5])
        assert [r[0] for r in rows] == [rows[0][0] + i * seconds * 1000 for i in range(5)]
        assert rows[-1][0] <= start < rows[-1][6] + 1
    weekly = binance_sim.klines(interval="1w", limit=3).json()
    assert all(time.gmtime(r[0] / 1000).tm_wday == 0 for r in weekly)  # Mondays
    monthly = binance_sim.klines(interval="1M", limit=3).json()
    for row in monthly:
        opened, closed = time.gmtime(row[0] / 1000), time.gmtime((row[6] + 1) / 1000)
        assert opened.tm_mday == 1 and closed.tm_mday == 1 and opened.tm_hour == 0


def test_start_end_limit_semantics(binance_sim: BinanceSim) -> None:
    base = _past_hour_ms(100)
    # startTime inside a kline: the first kline opens at or after it.
    rows = binance_sim.klines(interval="1h", startTime=base + 1, limit=3).json()
    assert [r[0] for r in rows] == [base + i * 3_600_000 for i in (1, 2, 3)]
    # Both ends inclusive on the open time.
    rows = binance_sim.klines(interval="1h", startTime=base, endTime=base + 7_200_000).json()
    assert [r[0] for r in rows] == [base, base + 3_600_000, base + 7_200_000]
    # Only endTime: the newest `limit` up to it.
    rows = binance_sim.klines(interval="1h", endTime=base + 1, limit=2).json()
    assert [r[0] for r in rows] == [base - 3_600_000, base]
    # Defaults: 500, max 1000.
    assert len(binance_sim.klines(interval="1m", endTime=base).json()) == 500
    assert len(binance_sim.klines(interval="1m", endTime=base, limit=1000).json()) == 1000
    # Before the listing: from the first kline on (python-binance relies on it).
    first = binance_sim.klines(interval="1d", startTime=0, limit=1).json()
    assert first[0][0] == 1451692800000  # 2016-01-02, the model's first traded day
    # In the future: nothing.
    future = (int(time.time()) + 10 * HOUR) * 1000
    assert binance_sim.klines(interval="1m", startTime=future).json() == []


def test_in_progress_kline_is_newest(binance_sim: BinanceSim) -> None:
    if time.time() % 300 > 298:  # stay inside one 5m kline
        time.sleep(3)
    now_ms = time.time() * 1000
    rows = binance_sim.klines(interval="5m", limit=3).json()
    assert len(rows) == 3
    newest = rows[-1]
    assert newest[0] == int(now_ms // 300_000 * 300_000)
    assert newest[6] > now_ms  # closes in the future: still in progress
    again = binance_sim.klines(interval="5m", limit=1).json()
    assert again[0][0] == newest[0]
    assert rows[0] == binance_sim.klines(interval="5m", startTime=rows[0][0], limit=1).json()[0]
    truth = binance_sim.truth("BTCUSDT", "5m", rows[0][0], newest[0])
    assert truth == rows[:2]  # the truth holds closed klines only


def _dust_window() -> tuple[int, int]:
    end = (int(time.time()) // 60 * 60 - 2 * HOUR) * 1000
    return end - 999 * MINUTE_MS, end


def test_zero_volume_klines(binance_sim: BinanceSim, sim: Sim) -> None:
    start, end = _dust_window()
    rows = binance_sim.klines("DUSTUSDT", interval="1m", startTime=start, endTime=end, limit=1000)
    rows = rows.json()
    assert [r[0] for r in rows] == list(range(start, end + 1, MINUTE_MS))
    truth = sim.truth("DUST-USD", "ONE_MINUTE", start // 1000, end // 1000)
    traded = {int(c["start"]) * 1000: c for c in truth}
    assert 0 < len(traded) < 900  # a sparse product: most minutes empty
    previous_close = None
    empty = 0
    for row in rows:
        if row[0] in traded:
            assert Decimal(row[5]) == Decimal(traded[row[0]]["volume"]) > 0
        else:
            empty += 1
            assert row[5] == row[7] == row[9] == row[10] == "0.00000000" and row[8] == 0
            assert row[1] == row[2] == row[3] == row[4]
            if previous_close is not None:
                assert row[1] == previous_close
        previous_close = row[4]
    assert empty == 1000 - len(traded)
    # The first kline may be empty too: it carries the close of the last trade before it.
    assert Decimal(rows[0][1]) > 0


def test_empty_klines_can_be_omitted(binance_sim: BinanceSim, sim: Sim) -> None:
    binance_sim.configure(zero_volume_klines=False)
    start, end = _dust_window()
    rows = binance_sim.klines("DUSTUSDT", interval="1m", startTime=start, endTime=end, limit=1000)
    truth = sim.truth("DUST-USD", "ONE_MINUTE", start // 1000, end // 1000)
    assert [r[0] for r in rows.json()] == sorted(int(c["start"]) * 1000 for c in truth)


@pytest.mark.parametrize(
    ("interval", "granularity", "count"),
    [("1m", "ONE_MINUTE", 300), ("5m", "FIVE_MINUTE", 200), ("1h", "ONE_HOUR", 100),
     ("4h", "FOUR_HOUR", 50), ("6h", "SIX_HOUR", 40), ("1d", "ONE_DAY", 30)],
)  # fmt: skip
def test_same_prices_as_coinbase_for_the_same_seed(
    binance_sim: BinanceSim, sim: Sim, interval: str, granularity: str, count: int
) -> None:
    seconds = INTERVALS[interval]
    end = (int(time.time()) // seconds - 2) * seconds
    start = end - (count - 1) * seconds
    klines = binance_sim.truth("BTCUSDT", interval, start * 1000, end * 1000)
    candles = sorted(sim.truth("BTC-USD", granularity, start, end), key=lambda c: int(c["start"]))
    assert len(klines) == len(candles) == count
    for kline, candle in zip(klines, candles, strict=True):
        assert kline[0] == int(candle["start"]) * 1000
        fields = ("open", "high", "low", "close", "volume")
        assert [Decimal(v) for v in kline[1:6]] == [Decimal(candle[f]) for f in fields]


def test_non_native_intervals_aggregate_finer_ones(binance_sim: BinanceSim) -> None:
    end = _past_hour_ms(24 * 10)  # every kline closed
    pairs = [("3m", "1m", 3), ("8h", "1h", 8), ("12h", "4h", 3), ("3d", "1d", 3)]
    for coarse, fine, ratio in pairs:
        big = binance_sim.klines(interval=coarse, endTime=end, limit=2).json()
        small = binance_sim.klines(interval=fine, startTime=big[0][0], limit=2 * ratio).json()
        for i, row in enumerate(big):
            part = small[i * ratio : (i + 1) * ratio]
            assert row[1] == part[0][1] and row[4] == part[-1][4]
            assert Decimal(row[2]) == max(Decimal(p[2]) for p in part)
            assert Decimal(row[3]) == min(Decimal(p[3]) for p in part)
            assert Decimal(row[5]) == sum(Decimal(p[5]) for p in part)


@pytest.mark.parametrize(
    ("params", "code"),
    [({"interval": "5m"}, -1102), ({"symbol": "BTCUSDT"}, -1102),
     ({"symbol": "BTC-USD", "interval": "5m"}, -1121),
     ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
     ({"symbol": "BTCUSDT", "interval": "5m", "limit": "0"}, -1100),
     ({"symbol": "BTCUSDT", "interval": "5m", "limit": "1001"}, -1100),
     ({"symbol": "BTCUSDT", "interval": "5m", "limit": "ten"}, -1100),
     ({"symbol": "BTCUSDT", "interval": "5m", "startTime": "-5"}, -1100),
     ({"symbol": "BTCUSDT", "interval": "5m", "startTime": 2, "endTime": 1}, -1023)],
)  # fmt: skip
def test_errors(binance_sim: BinanceSim, params: dict[str, object], code: int) -> None:
    response = binance_sim.get(KLINES, **params)
    assert _error(response) == (400, code)
    assert set(response.json()) == {"code", "msg"}
    assert response.headers["X-MBX-USED-WEIGHT-1M"] == "2"


def test_invalid_symbol_message_and_unknown_paths(binance_sim: BinanceSim) -> None:
    response = binance_sim.klines("NOPE", interval="5m")
    assert response.text == '{"code":-1121,"msg":"Invalid symbol."}'
    assert binance_sim.get("/api/v3/depth").status_code == 404
    # The Coinbase routes are not served by this personality.
    assert binance_sim.get("/api/v3/brokerage/market/products/BTC-USD/candles").status_code == 404


def test_faults_apply_to_klines(binance_sim: BinanceSim) -> None:
    binance_sim.configure(p500=1.0)
    response = binance_sim.klines(interval="1h", limit=1)
    assert _error(response) == (500, -1000)
    assert response.headers["X-MBX-USED-WEIGHT-1M"] == "2"
    assert binance_sim.get("/api/v3/ping").status_code == 200  # only klines draw faults
    binance_sim.configure(p500=0.0, p429=1.0)
    response = binance_sim.klines(interval="1h", limit=1)
    assert _error(response) == (429, -1003) and "Retry-After" in response.headers
    assert binance_sim.stats()["faults_injected"] == {"p500": 1, "p429": 1}


def test_config_validation(binance_sim: BinanceSim) -> None:
    for bad in ({"weight_limit": 0}, {"ban_after": -1}, {"ban_s": -1}, {"exchange": "coinbase"}):
        response = binance_sim.session.post(binance_sim.url + "/_sim/config", json=bad, timeout=5)
        assert response.status_code == 400, bad
    config = binance_sim.configure(exchange="binance", weight_limit=100)
    assert config["weight_limit"] == 100 and config["exchange"] == "binance"


def test_coinbase_personality_refuses_ban_s(sim: Sim) -> None:
    response = sim.session.post(sim.url + "/_sim/config", json={"ban_s": 5}, timeout=5)
    assert response.status_code == 400


# ---------------------------------------------------------------- units
def test_symbols_and_intervals() -> None:
    assert symbol_of("BTC-USD") == "BTCUSDT"
    assert symbol_of("ETH-BTC") == "ETHBTC"
    assert symbol_of("USDT-USD") is None
    month = Interval("1M", 0)
    feb = 1_738_368_000  # 2025-02-01
    assert month.floor(feb + 5 * 86400) == feb
    assert month.next(feb) == feb + 28 * 86400
    assert month.previous(feb) == feb - 31 * 86400
    assert month.next(1_733_011_200) == 1_735_689_600  # December -> January
    week = Interval("1w", 7 * 86400)
    assert time.gmtime(week.floor(feb)).tm_wday == 0


def test_limiter_minute_and_ban_rules() -> None:
    limiter = WeightLimiter()
    args = {"limit": 4, "enforce": True, "ban_after": 1, "ban_duration_s": 30}
    decisions = [limiter.admit("ip", 2, 120.0 + i, **args) for i in range(5)]
    assert [d.status for d in decisions] == [200, 200, 429, 429, 418]
    assert decisions[2].retry_after_s == 58
    assert decisions[4].banned_until_ms == 154_000 and decisions[4].new_ban
    assert limiter.admit("ip", 2, 150.0, **args).status == 418
    assert limiter.admit("other", 2, 150.0, **args).status == 200  # per IP
    after = limiter.admit("ip", 2, 184.5, **args)  # ban over, a new minute
    assert (after.status, after.used) == (200, 2)
    assert math.isclose(limiter.used("ip", 185.0), 2)


def test_cli_flags() -> None:
    args = build_parser().parse_args(
        ["--exchange", "binance", "--weight-limit", "1200", "--ban-after", "3",
         "--ban-duration-s", "30", "--omit-empty-klines"]
    )  # fmt: skip
    settings = settings_from(**settings_args(args))
    assert settings.exchange == "binance"
    assert (settings.weight_limit, settings.ban_after, settings.ban_duration_s) == (1200, 3, 30)
    assert settings.zero_volume_klines is False
    defaults = settings_from(**settings_args(build_parser().parse_args([])))
    assert defaults.exchange == "coinbase" and defaults.weight_limit == 6000
    assert defaults.zero_volume_klines and defaults.ban_after == 10
    assert defaults.ban_duration_s == 120
    with pytest.raises(ConfigError):
        settings_from(exchange="kraken")


def test_subprocess_with_shared_weights_across_processes() -> None:
    """`python -m coinbase_sim --exchange binance`, two processes: one weight count per IP."""
    with SimProcess(seed=7, processes=2, exchange="binance", weight_limit=40) as proc:
        assert proc.config()["exchange"] == "binance"
        now = time.time()
        if now % 60 > 50:  # keep the burst inside one calendar minute
            time.sleep(61 - now % 60)
        used = []
        statuses = []
        for _ in range(25):  # a new connection each: spread over both workers
            response = requests.get(
                proc.url + KLINES, params={"symbol": "BTCUSDT", "interval": "1m", "limit": 2},
                headers={"Connection": "close"}, timeout=10,
            )  # fmt: skip
            used.append(int(response.headers["X-MBX-USED-WEIGHT-1M"]))
            statuses.append(response.status_code)
        assert used[:21] == list(range(2, 43, 2))
        assert statuses[:20] == [200] * 20 and statuses[20] == 429
        stats = proc.stats()
        assert stats["requests_by_endpoint"] == {"klines": 25}
        assert stats["responses_by_status"]["200"] == 20
        assert stats["max_weight_in_any_60s"]["ip:127.0.0.1"] == max(used)
        proc.reset()
        assert proc.stats()["requests_total"] == 0
