"""Helpers shared by the simulator tests (a client view of a running simulator)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from coinbase_sim.keys import ApiKey
from coinbase_sim.server import SimServer

PRIVATE = "/api/v3/brokerage/products/{}/candles"
PUBLIC = "/api/v3/brokerage/market/products/{}/candles"


@dataclass
class Sim:
    """A running in-thread simulator plus the keys it trusts."""

    server: SimServer
    ec: ApiKey
    ed: ApiKey
    session: requests.Session

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def configure(self, **settings: Any) -> dict[str, Any]:
        response = self.session.post(self.url + "/_sim/config", json=settings, timeout=5)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.session.get(self.url + "/_sim/stats", timeout=5).json()

    def truth(self, product: str, granularity: str, start: int, end: int) -> list[dict[str, str]]:
        params = {"granularity": granularity, "start": start, "end": end}
        response = self.session.get(f"{self.url}/_sim/truth/{product}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()["candles"]

    def public(self, product: str, **params: Any) -> requests.Response:
        return self.session.get(self.url + PUBLIC.format(product), params=params, timeout=10)

    def private(
        self, product: str, key: ApiKey | None = None, token: str | None = None, **params: Any
    ) -> requests.Response:
        path = PRIVATE.format(product)
        if token is None:
            token = make_token(key or self.ec, f"GET {self.host}{path}")
        headers = {"Authorization": f"Bearer {token}"}
        return self.session.get(self.url + path, params=params, headers=headers, timeout=10)


def make_token(key: ApiKey, uri: str, **claims: Any) -> str:
    """A CDP JWT built per the reference: kid/nonce header, sub/iss/nbf/exp/uri claims."""
    now = int(time.time())
    payload = {"sub": key.name, "iss": "cdp", "nbf": now, "exp": now + 120, "uri": uri}
    payload.update(claims)
    headers = {"kid": key.name, "nonce": secrets.token_hex()}
    return jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers=headers)
