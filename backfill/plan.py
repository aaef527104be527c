"""Plan a run: every series in priority order, and which of them the cache already has.

Everything is validated before anything is enqueued: a bad timeframe, product id or count
raises `InvalidInput` and leaves the broker untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from core.config import BackfillConfig
from core.freshness import fresh_outcome, is_fresh, read_states, reader_window
from core.outcome import Outcome
from core.series import Series
from core.timeframe import parse_timeframes


@dataclass
class Plan:
    config: BackfillConfig
    series: list[Series]  # all of the first timeframe first (5m, 15m, 1h, 4h, 1d, ...)
    fresh: dict[str, Outcome] = field(default_factory=dict)  # current in the cache: no task

    @property
    def stale(self) -> list[Series]:
        return [s for s in self.series if s.name not in self.fresh]

    @property
    def first_timeframe(self) -> str:
        """What the indicator service needs first; its series get held-back budget slots."""
        return self.series[0].timeframe.name


def plan(config: BackfillConfig) -> list[Series]:
    """Every series of the run, all of the first timeframe first."""
    config = config.validated()
    timeframes = parse_timeframes(list(config.timeframes))
    return [Series.of(s, tf.name) for tf in timeframes for s in config.symbols]


def find_fresh(
    cache_client: redis.Redis, series: list[Series], config: BackfillConfig
) -> dict[str, Outcome]:
    """Series whose cache is already current: one pipelined read, no task, no request.

    The workers make the same check (a series can turn fresh or stale meanwhile); doing it
    here first means a redeploy right after a complete run enqueues nothing but the
    callback, so no per-worker `rate_limit` stands between it and the open gate.
    """
    now = time.time()
    n = config.candle_count
    states = read_states(
        cache_client,
        [(s, s.timeframe.last_closed_start(now)) for s in series],
        n,
        user_id=config.user_id,
        exchange_id=config.exchange_id,
        exhausted_recheck_s=0,  # short history is the workers' call (their setting), not ours
        window=reader_window(n),
    )
    return {
        s.name: fresh_outcome(s, st, config.min_candles, now=now, n=n)
        for s, st in zip(series, states, strict=True)
        if is_fresh(st, s.timeframe, now, n)
    }


def plan_run(config: BackfillConfig, cache_client: redis.Redis | None) -> Plan:
    """The validated plan; `cache_client` None (or `config.full`) skips the warm check."""
    config = config.validated()
    series = plan(config)
    fresh = {} if config.full or cache_client is None else find_fresh(cache_client, series, config)
    return Plan(config, series, fresh)
