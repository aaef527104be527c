"""What a worker process holds: settings, Redis clients, the exchange client, the budget.

Built on first use in each process (after the pool forks: sockets must not be shared), so
settings are read when the worker starts working, never at import.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

from core import defaults, keys
from core.errors import InvalidInput
from core.exchanges import EXCHANGES, budget_name, exchange
from core.run import RunStore
from core.series import Series
from core.settings import Settings, load_settings
from workers.binance.api import BinanceApi
from workers.breaker import Breaker
from workers.budget import FleetBudget
from workers.cache import CandleCache
from workers.coinbase.api import CoinbaseApi
from workers.exchange.api import ExchangeApi
from workers.exchange.client import CandleClient

log = logging.getLogger("backfill.worker")


class WorkerResources:
    """Per-process clients; `get()` builds them once per process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._pid: int | None = None
        self._lock = threading.Lock()

    def get(self) -> WorkerResources:
        with self._lock:
            if self._pid != os.getpid():
                self._build()
        return self

    @property
    def retry_max_s(self) -> float:
        """A countdown is an ETA message held unacked by the worker: keep it well under the
        broker's visibility timeout or the message is redelivered and runs twice."""
        return max(2.0, min(60.0, self.settings.backfill_visibility_timeout_s / 3))

    def _build(self) -> None:
        s = self.settings = self._settings or load_settings()
        self.broker = redis.Redis.from_url(s.redis_url, socket_timeout=10)
        self.runs = RunStore(self.broker)
        self.config_error: InvalidInput | None = None
        try:
            creds = s.credentials()
        except InvalidInput as e:  # every task fails with this reason; nothing is fetched
            log.error("worker configuration is invalid: %s", e)
            self.config_error, creds = e, None
        coinbase = CoinbaseApi(s.coinbase_api_base_url, creds, s.backfill_request_cap)
        binance_rate = s.binance_fleet_rate()
        binance = BinanceApi(
            s.binance_weight_limit, binance_rate * 60 * EXCHANGES["binance"].request_weight
        )
        self._exchanges = {
            "coinbase": self._parts(
                coinbase,
                s.coinbase_api_base_url,
                budget_name("coinbase", coinbase.signed_by),
                s.fleet_rate(),
            ),
            "binance": self._parts(
                binance,
                s.binance_api_base_url,
                budget_name("binance"),
                binance_rate,
                window_s=defaults.BINANCE_WINDOW_S,
                guard_s=0.0,
            ),
        }
        self.cache_redis = redis.Redis.from_url(s.cache_url, socket_timeout=10)
        self._caches: dict[tuple[int, int], CandleCache] = {}
        self._pid = os.getpid()

    def _parts(
        self, api: ExchangeApi, base_url: str, budget: str, rate: float, **window: float
    ) -> tuple[CandleClient, FleetBudget, Breaker]:
        """One exchange's client, fleet budget and breaker (one budget per key or IP)."""
        s = self.settings
        fleet = FleetBudget(
            self.broker,
            budget,
            rate,
            # A task waiting for a budget slot holds its message: give up (and retry) first.
            max_wait_s=max(2.0, min(30.0, s.backfill_visibility_timeout_s / 3)),
            max_reset_s=s.backfill_max_reset_s,
            **window,
        )
        timeout = s.backfill_request_timeout_s
        client = CandleClient(
            api,
            base_url,
            budget=fleet,
            timeout=(min(3.05, timeout), timeout),
            deadline_s=s.backfill_request_deadline_s,
            max_body_bytes=s.backfill_max_body_bytes,
            max_reset_s=s.backfill_max_reset_s,
            max_skew_s=s.backfill_max_clock_skew_s,
        )
        breaker = Breaker(
            self.broker,
            budget,
            failures=s.backfill_breaker_failures,
            cooldown_s=s.backfill_breaker_cooldown_s,
        )
        return client, fleet, breaker

    def exchange(self, name: str) -> tuple[CandleClient, FleetBudget, Breaker]:
        """The client, budget and breaker of the exchange a job names."""
        return self._exchanges[exchange(name).name]

    def keeper_lag(self, series: Series, boundary_ms: int | None, newest_ts: int) -> None:
        """Record how long after its bucket closed the newest candle was cached
        (`backfill status` shows the last bucket close's lags per timeframe)."""
        tf = series.timeframe
        lag = time.time() - (newest_ts / 1000 + tf.seconds)
        boundary = boundary_ms if boundary_ms is not None else (newest_ts + tf.ms)
        key, lags = keys.keeper_lag(tf.name), keys.keeper_lags(tf.name, boundary)
        pipe = self.broker.pipeline(transaction=False)
        pipe.hset(key, mapping={"boundary_ms": boundary, "at": f"{time.time():.3f}"})
        pipe.zadd(lags, {series.symbol: round(lag, 3)})
        pipe.expire(key, 7 * 86400)
        pipe.expire(lags, 86400)
        pipe.execute()

    def cache(self, user_id: int, exchange_id: int) -> CandleCache:
        """One writer (and its registered Lua script) per cache namespace, not per task."""
        key = (user_id, exchange_id)
        if key not in self._caches:
            self._caches[key] = CandleCache(
                self.cache_redis,
                user_id=user_id,
                exchange_id=exchange_id,
                ttl_s=self.settings.backfill_cache_ttl_s,
                exhausted_recheck_s=self.settings.backfill_exhausted_recheck_s,
            )
        return self._caches[key]


resources = WorkerResources()
