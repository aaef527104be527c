"""Every Redis key, pub/sub channel, queue and task name, in one place.

The candle keys and channels are the indicator service's contract
(shared/reference/cache-contract.md); everything of our own lives under `backfill:`.
No other module spells a key.
"""

from __future__ import annotations

from typing import NamedTuple

# --- the platform's contract -------------------------------------------------------------


def candles(user_id: int, exchange_id: int, symbol: str, timeframe: str) -> str:
    """The sorted set of a series' candles (score: open time in ms)."""
    return f"candles:{user_id}:{exchange_id}:{symbol}:{timeframe}"


def candle_close_channel(user_id: int, exchange_id: int, symbol: str, timeframe: str) -> str:
    """Where each newly closed candle is announced (payload: the stored member)."""
    return f"channel:candle:close:{user_id}:{exchange_id}:{symbol}:{timeframe}"


def indicator(user_id: int, exchange_id: int, symbol: str, timeframe: str) -> str:
    """The platform's MACD-V value key."""
    return f"indicator:{user_id}:{exchange_id}:{symbol}:{timeframe}:macd-v"


def indicator_channel(user_id: int, exchange_id: int, symbol: str, timeframe: str) -> str:
    return f"channel:indicator:{user_id}:{exchange_id}:{symbol}:{timeframe}:macd-v"


# --- the cache's bookkeeping -------------------------------------------------------------


def checked(user_id: int, exchange_id: int, symbol: str, timeframe: str) -> str:
    """Hash: `upto` (ms), the newest bucket the exchange was asked about; `exhausted`."""
    return f"backfill:checked:{user_id}:{exchange_id}:{symbol}:{timeframe}"


# --- runs and the gate -------------------------------------------------------------------

RUN_LATEST = "backfill:run:latest"
GATE_CHANNEL = "backfill:gate"


def run(run_id: str, part: str = "") -> str:
    """`run:{id}` hash (plan), `:outcomes` hash, `:flags` hash, `:callbacks` counter."""
    return f"backfill:run:{run_id}" + (f":{part}" if part else "")


def gate(run_id: str) -> str:
    return f"backfill:gate:{run_id}"


def progress_channel(run_id: str) -> str:
    return f"backfill:progress:{run_id}"


# --- keeping the cache fresh (beat) -------------------------------------------------------


def boundary_claim(timeframe: str, boundary_ms: int, exchange: str = "coinbase") -> str:
    """Claimed by the one fan-out of a timeframe's bucket close (two beats: one fan-out)."""
    where = "" if exchange == "coinbase" else f"{exchange}:"
    return f"backfill:boundary:{where}{timeframe}:{boundary_ms}"


def refresh_claim(
    user_id: int, exchange_id: int, symbol: str, timeframe: str, boundary_ms: int
) -> str:
    """Claimed by the one refresh of a series for a bucket close (value: its task id)."""
    return f"backfill:refresh:{user_id}:{exchange_id}:{symbol}:{timeframe}:{boundary_ms}"


def keeper_lag(timeframe: str) -> str:
    """Hash: the last bucket close refreshed (`boundary_ms`) and when (`at`)."""
    return f"backfill:keeper:{timeframe}"


def keeper_lags(timeframe: str, boundary_ms: int) -> str:
    """Sorted set: per symbol, seconds from a bucket close to its candle in the cache."""
    return f"backfill:keeper:{timeframe}:{boundary_ms}"


def keeper_requests(boundary_ms: int) -> str:
    """Hash: requests a bucket close cost (`refresh`, `audit`) and how its series were
    kept (`derived`, `fallback`), by the close of each series' timeframe."""
    return f"backfill:keeper:requests:{boundary_ms}"


# --- derived timeframes (15m..1d built from the finest one in the cache) ------------------


def derive_native(user_id: int, exchange_id: int) -> str:
    """Set: `symbol:timeframe` series switched back to native refreshes (an audit saw a
    derived candle differ from the exchange's own)."""
    return f"backfill:derive:native:{user_id}:{exchange_id}"


def derive_audit(exchange: str) -> str:
    """Hash per exchange: `audits`, `divergences`, `errors`, `last_divergence`, and
    `native` (1 once the whole exchange is switched back to native refreshes)."""
    return f"backfill:derive:audit:{exchange}"


DERIVE_AUDIT_CURSOR = "backfill:derive:audit:cursor"  # rotates the audit's sample


class BreakerKeys(NamedTuple):
    state: str  # hash: state (closed|open), failures, until_ms, probe_ms
    series: str  # set: the series that failed since the last success


def breaker(budget_name: str) -> BreakerKeys:
    """The fleet's circuit breaker for one exchange budget."""
    return BreakerKeys(f"backfill:breaker:{budget_name}", f"backfill:breaker:{budget_name}:series")


# --- the fleet budget --------------------------------------------------------------------


class BudgetKeys(NamedTuple):
    sends: str  # zset: the sliding-window log (`:late`, `:crowded`, `:seq` beside it)
    slow: str  # hash: the factor after a 429 or a near-miss, and when it was set
    paused: str  # nobody sends before this time (a 429's reset)
    reserve: str  # slots held back for live work (core/reserve.py)
    banned: str  # the exchange banned us until this time (UNIX ms): nobody sends before


def budget(name: str) -> BudgetKeys:
    """The fleet budget of one exchange key (or of the public endpoint, or an IP)."""
    p = f"backfill:budget:{name}"
    return BudgetKeys(f"{p}:sends", f"{p}:slow", f"{p}:paused", f"{p}:reserve", f"{p}:banned")


# --- queues and tasks --------------------------------------------------------------------

CONTROL_QUEUE = "backfill.control"
SERIES_TASK = "backfill.series"
FINISH_TASK = "backfill.finish"
ABORT_TASK = "backfill.abort"
BOUNDARY_TASK = "backfill.boundary"  # beat -> one fan-out per timeframe per bucket close
REFRESH_TASK = "backfill.refresh"  # one series' tail after a bucket close
AUDIT_QUEUE = "backfill.audit"  # derived candles checked against native ones: last of all


def queue(timeframe: str) -> str:
    """A timeframe's priority queue (`backfill.5m`)."""
    return f"backfill.{timeframe}"


def live_queue(timeframe: str) -> str:
    """A timeframe's queue for refreshes at a bucket close (`backfill.live.5m`)."""
    return f"backfill.live.{timeframe}"


def queue_order() -> list[str]:
    """The configured queue order (celeryconfig.task_queues; a plain worker consumes all of
    them in it): control first (a run's callback never waits behind the next
    run), then the live refreshes (5m, 15m, 1h, 4h, 1d, then the other timeframes by
    length: a bucket close is never queued behind a large backfill), then the backfill,
    then the keeper's audit of derived candles (low priority: behind everything else)."""
    from core.timeframe import TIMEFRAMES, priority_key

    ordered = sorted(TIMEFRAMES, key=priority_key)
    return (
        [CONTROL_QUEUE]
        + [live_queue(n) for n in ordered]
        + [queue(n) for n in ordered]
        + [AUDIT_QUEUE]
    )
