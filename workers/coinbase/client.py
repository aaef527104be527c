"""The Coinbase candle client: the common client (workers/exchange/client.py) with
Coinbase's API behind the seam."""

from __future__ import annotations

from typing import Any

from core import defaults
from core.credentials import Credentials
from workers.coinbase.api import CoinbaseApi
from workers.exchange.client import CandleClient


class CoinbaseClient(CandleClient):
    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        cap: int = defaults.REQUEST_CAP,
        **options: Any,
    ) -> None:
        super().__init__(CoinbaseApi(base_url, credentials, cap), base_url, **options)
        self.credentials = credentials

    def __repr__(self) -> str:
        return f"CoinbaseClient({self.base_url!r}, {self.credentials!r}, cap={self.cap})"
