"""The official SDK (coinbase-advanced-py) talks to the simulator unchanged but for the scheme."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from coinbase.jwt_generator import build_rest_jwt
from coinbase.rest import RESTClient
from sim_support import PRIVATE, Sim

from coinbase_sim.keys import ApiKey

HOUR = 3600


def _client(sim: Sim, key: ApiKey | None, monkeypatch: pytest.MonkeyPatch) -> RESTClient:
    """An SDK client whose base_url is the simulator; only https:// is rewritten to http://.

    The SDK builds `f"https://{base_url}{path}"` in RESTBase.send_request and
    signs `f"GET {base_url}{path}"`, so the token names the local host.
    """
    if key is None:
        client = RESTClient(base_url=sim.host)
    else:
        client = RESTClient(api_key=key.name, api_secret=key.secret, base_url=sim.host)
    send = client.session.request

    def plain_http(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        return send(method, url.replace("https://", "http://", 1), *args, **kwargs)

    monkeypatch.setattr(client.session, "request", plain_http)
    return client


@pytest.mark.parametrize("which", ["ec", "ed"])
def test_sdk_get_candles(sim: Sim, which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(sim, getattr(sim, which), monkeypatch)
    end = int(time.time()) // HOUR * HOUR - 10 * HOUR
    response = client.get_candles("SOL-USD", str(end - 9 * HOUR), str(end), "ONE_HOUR")
    candles = response.candles
    assert len(candles) == 10
    assert candles[0].start == str(end)
    assert float(candles[0].high) >= float(candles[0].low)
    truth = sim.truth("SOL-USD", "ONE_HOUR", end - 9 * HOUR, end)
    assert response.to_dict()["candles"] == truth


def test_sdk_get_public_candles(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(sim, None, monkeypatch)
    end = int(time.time()) // 300 * 300 - 3000
    response = client.get_public_candles(
        "BTC-USD", str(end - 20 * 300), str(end), "FIVE_MINUTE", limit=10
    )
    assert [c.start for c in response.candles] == [str(end - i * 300) for i in range(10)]


def test_sdk_errors_surface_as_http_errors(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(sim, sim.ec, monkeypatch)
    end = int(time.time())
    with pytest.raises(requests.HTTPError) as error:
        client.get_candles("BTC-USD", str(end - 301 * HOUR), str(end), "ONE_HOUR")
    assert error.value.response.status_code == 400


def test_sdk_built_jwt_for_public_host_is_accepted(sim: Sim) -> None:
    path = PRIVATE.format("ETH-USD")
    for key in (sim.ec, sim.ed):
        token = build_rest_jwt(f"GET api.coinbase.com{path}", key.name, key.secret)
        end = int(time.time()) // HOUR * HOUR - 5 * HOUR
        response = sim.private(
            "ETH-USD", token=token, granularity="ONE_HOUR", start=end - HOUR, end=end
        )
        assert response.status_code == 200, response.text
