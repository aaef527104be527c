"""Every default of the operator's settings, in one place.

`core.settings.Settings` (the environment), `BackfillConfig` (a run) and the data plane's
constructors (client, budget, breaker, cache) all take their defaults from here, so a
default changes in one line and the README's settings table has one source.
"""

from __future__ import annotations

# a run (BackfillConfig, and what every job carries)
CANDLE_COUNT = 100  # newest closed candles per series
MIN_CANDLES = 60  # MACD-V needs 60 closed candles to be trusted
MAX_CACHED = 1000  # the cache contract trims every series to its newest 1000 members
USER_ID = 1
EXCHANGE_ID = 1

# the exchange
REQUEST_CAP = 300  # buckets per request (Coinbase: 300 in practice, 350 documented)
REQUEST_TIMEOUT_S = 10.0  # per read
REQUEST_DEADLINE_S = 15.0  # one request in all: connect, headers, body
MAX_BODY_BYTES = 2 * 1024 * 1024  # raw and decompressed
MAX_RESET_S = 60.0  # longest fleet pause a 429's reset header may cause
MAX_CLOCK_SKEW_S = 30.0  # an exchange Date further off is logged

# Binance (public klines: a weight per IP per minute)
BINANCE_WEIGHT_LIMIT = 6000  # REQUEST_WEIGHT per minute (exchangeInfo rateLimits, 2026-12)
BINANCE_WEIGHT_SHARE = 0.8  # of it the fleet plans to use (the rest: jitter, other clients)
BINANCE_EXCHANGE_ID = 2
# Binance counts per minute: its budget's sliding window is 10 s (at most 10 s worth at up
# to twice the average rate; a minute never holds more than the planned weight), no guard.
BINANCE_WINDOW_S = 10.0

# the fleet
FLEET_RATE_KEY = 25.0  # requests/s with an API key (Coinbase allows 30)
FLEET_RATE_PUBLIC = 8.0  # requests/s on the public endpoint (Coinbase allows 10)
WORKER_RATE_LIMIT = "5/s"  # Celery's per-node rate_limit of a series task
BUDGET_MAX_WAIT_S = 30.0  # longest wait for a budget slot before the task retries
BREAKER_FAILURES = 5  # consecutive exchange failures that open the breaker
BREAKER_COOLDOWN_S = 15.0  # open this long, then one probe
MAX_RETRIES = 10  # retries of a series on 429 / 5xx / timeouts
RETRY_MAX_S = 60.0  # longest retry countdown
VISIBILITY_TIMEOUT_S = 900  # when the broker hands an unacked message out again
NODE_DEAD_AFTER_S = 8.0  # a worker node silent this long is dead: its messages come back

# the cache and the keeper
CACHE_TTL_S = 86400  # TTL of a candle key, refreshed on write
EXHAUSTED_RECHECK_S = 3600  # 'no older candles exist' is believed this long
SETTLE_S = 3.0  # after a bucket close, before its refreshes go out
AUDIT_SHARE = 0.02  # derived candles checked against native ones, per close requests (0: off)
