"""Helpers for the Binance personality tests (a client view of a running simulator)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from coinbase_sim.server import SimServer

KLINES = "/api/v3/klines"


@dataclass
class BinanceSim:
    """A running in-thread simulator speaking Binance spot."""

    server: SimServer
    session: requests.Session

    @property
    def url(self) -> str:
        return self.server.url

    def configure(self, **settings: Any) -> dict[str, Any]:
        response = self.session.post(self.url + "/_sim/config", json=settings, timeout=5)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.session.post(self.url + "/_sim/reset", timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return self.session.get(self.url + "/_sim/stats", timeout=5).json()

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url + path, params=params, timeout=10)

    def klines(self, symbol: str = "BTCUSDT", **params: Any) -> requests.Response:
        return self.get(KLINES, symbol=symbol, **params)

    def truth(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list[Any]]:
        """Closed klines with start_ms <= openTime <= end_ms, oldest first, without limits."""
        params = {"interval": interval, "startTime": start_ms, "endTime": end_ms}
        response = self.get(f"/_sim/klines/{symbol}", **params)
        response.raise_for_status()
        return response.json()

    def at_second(self, second: float) -> None:
        """Shift the simulated clock (by under a minute) so that it reads `second` past a minute."""
        self.configure(clock_offset_s=(second - time.time() % 60))

    def sim_now(self) -> float:
        """The simulator's clock as the test sees it."""
        return time.time() + self.configure()["clock_offset_s"]
