"""python-binance (binance.client.Client) talks to the Binance personality unchanged.

The client builds every spot URL as `API_URL + "/v3/" + path` (BaseClient._create_api_uri),
with API_URL formatted from a class attribute in __init__; a subclass whose API_URL is the
simulator's `/api` therefore reaches it from the first request on, including the ping the
constructor sends.  Nothing leaves the machine.
"""

from __future__ import annotations

import time

import pytest
from binance.client import Client
from binance.exceptions import BinanceAPIException
from binance_support import BinanceSim

HOUR_MS = 3_600_000


def _client(binance_sim: BinanceSim) -> Client:
    class SimClient(Client):
        API_URL = f"{binance_sim.url}/api"

    return SimClient(api_key=None, api_secret=None, requests_params={"timeout": 10})


def test_construction_pings_the_simulator(binance_sim: BinanceSim) -> None:
    client = _client(binance_sim)
    api_url = client.API_URL
    assert api_url == f"{binance_sim.url}/api"
    assert binance_sim.stats()["requests_by_endpoint"] == {"ping": 1}


def test_api_url_set_after_construction_without_ping(binance_sim: BinanceSim) -> None:
    client = Client(api_key=None, api_secret=None, ping=False)
    client.API_URL = f"{binance_sim.url}/api"
    assert client.ping() == {}
    assert abs(client.get_server_time()["serverTime"] - time.time() * 1000) < 5000


def test_get_klines(binance_sim: BinanceSim) -> None:
    client = _client(binance_sim)
    end = (int(time.time() * 1000) // HOUR_MS - 5) * HOUR_MS
    start = end - 9 * HOUR_MS
    klines = client.get_klines(
        symbol="BTCUSDT", interval=Client.KLINE_INTERVAL_5MINUTE, startTime=start, endTime=end,
        limit=50,
    )  # fmt: skip
    assert len(klines) == 50
    assert [k[0] for k in klines] == [start + i * 300_000 for i in range(50)]
    assert all(k[6] == k[0] + 299_999 for k in klines)
    assert klines == binance_sim.truth("BTCUSDT", "5m", start, start + 49 * 300_000)
    latest = client.get_klines(symbol="BTCUSDT", interval="1m", limit=2)
    assert latest[-1][6] > time.time() * 1000  # the in-progress kline comes last


def test_get_historical_klines(binance_sim: BinanceSim) -> None:
    """The client's paging helper (earliest-timestamp probe, then startTime pages) agrees."""
    client = _client(binance_sim)
    end = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS
    start = end - 99 * HOUR_MS
    klines = client.get_historical_klines("ETHUSDT", "1h", start, end)
    assert klines == binance_sim.truth("ETHUSDT", "1h", start, end)
    assert len(klines) == 100


def test_get_exchange_info(binance_sim: BinanceSim) -> None:
    binance_sim.at_second(5)  # one calendar minute for the weight count below
    client = _client(binance_sim)
    info = client.get_exchange_info()
    weight = next(r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT")
    assert (weight["interval"], weight["intervalNum"], weight["limit"]) == ("MINUTE", 1, 6000)
    assert client.get_symbol_info("BTCUSDT")["quoteAsset"] == "USDT"
    assert client.get_symbol_info("NOPE") is None
    used = int(client.response.headers["X-MBX-USED-WEIGHT-1M"])
    assert used == 1 + 3 * 20  # the construction ping, then exchangeInfo for each call


def test_bad_symbol_raises(binance_sim: BinanceSim) -> None:
    client = _client(binance_sim)
    with pytest.raises(BinanceAPIException) as error:
        client.get_klines(symbol="NOPE", interval="5m")
    assert (error.value.status_code, error.value.code) == (400, -1121)
    assert error.value.message == "Invalid symbol."
    with pytest.raises(BinanceAPIException) as error:
        client.get_klines(symbol="BTCUSDT", interval="7m")
    assert error.value.code == -1120


def test_429_and_418_raise(binance_sim: BinanceSim) -> None:
    binance_sim.configure(weight_limit=10, ban_after=1)
    binance_sim.at_second(5)
    client = _client(binance_sim)  # ping: weight 1
    for _ in range(4):
        client.get_klines(symbol="BTCUSDT", interval="1h", limit=1)  # 9
    with pytest.raises(BinanceAPIException) as error:
        for _ in range(2):
            client.get_klines(symbol="BTCUSDT", interval="1h", limit=1)
    assert (error.value.status_code, error.value.code) == (429, -1003)
    assert error.value.message.startswith("Too much request weight used")
    assert int(error.value.response.headers["Retry-After"]) > 0
    with pytest.raises(BinanceAPIException):
        client.get_klines(symbol="BTCUSDT", interval="1h", limit=1)  # 429, tolerated
    with pytest.raises(BinanceAPIException) as error:
        client.get_klines(symbol="BTCUSDT", interval="1h", limit=1)  # one too many: ban
    assert (error.value.status_code, error.value.code) == (418, -1003)
    assert "IP banned until" in error.value.message
    with pytest.raises(BinanceAPIException) as error:
        client.ping()
    assert error.value.status_code == 418
