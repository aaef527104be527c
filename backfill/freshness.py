"""How fresh is the cache? What `backfill status` shows next to the last run.

Per configured timeframe: the age of the newest cached bucket (how long since it closed),
the series that are stale (their last closed bucket is neither cached nor known empty),
the last bucket close the keeper refreshed and its lag (close -> candle in the cache),
the fleet's circuit breaker, and per exchange the audit of derived timeframes (checks,
divergences, series switched back to native refreshes). One pipelined read for all series.
"""

from __future__ import annotations

import statistics
import time

import redis

from core import keys
from core.config import BackfillConfig
from core.errors import InvalidInput
from core.exchanges import budget_name
from core.freshness import covers_last_close, read_states
from core.series import Series
from core.settings import Settings
from core.timeframe import parse_timeframes


def freshness(
    cache: redis.Redis, broker: redis.Redis, config: BackfillConfig, settings: Settings
) -> dict:
    now = time.time()
    out: dict = {"checked_at": round(now, 3), "timeframes": {}}
    for tf in parse_timeframes(list(config.timeframes)):
        series = [Series.of(s, tf.name) for s in config.symbols]
        last_closed = tf.last_closed_start(now)
        states = read_states(
            cache,
            [(s, last_closed) for s in series],
            1,
            user_id=config.user_id,
            exchange_id=config.exchange_id,
        )
        newest = [st.newest_start for st in states if st.newest_start is not None]
        stale = [
            s.name
            for s, st in zip(series, states, strict=True)
            if not covers_last_close(st, tf, now)
        ]
        row = {
            "series": len(series),
            "stale": len(stale),
            "stale_series": stale[:20],
            "newest_age_s": round(now - (max(newest) + tf.seconds), 1) if newest else None,
            "oldest_age_s": round(now - (min(newest) + tf.seconds), 1) if newest else None,
        }
        row.update(_keeper(broker, tf.name))
        out["timeframes"][tf.name] = row
    try:
        creds = settings.credentials()
    except InvalidInput:  # status must work even where the key is not mounted
        creds = None
    raw = broker.hgetall(keys.breaker(budget_name("coinbase", creds.name if creds else None)).state)
    state = {k.decode(): v.decode() for k, v in raw.items()}
    out["breaker"] = {
        "state": state.get("state", "closed"),
        "failures": int(state.get("failures", 0)),
    }
    out["derivation"] = derivation(broker, config)
    return out


def derivation(broker: redis.Redis, config: BackfillConfig) -> dict:
    """Per exchange: how the keeper's derived candles fared in the audit (checks made,
    divergences found, series switched back to native refreshes, the whole exchange)."""
    name = config.exchange
    pipe = broker.pipeline(transaction=False)
    pipe.hgetall(keys.derive_audit(name))
    pipe.smembers(keys.derive_native(config.user_id, config.exchange_id))
    raw, native = pipe.execute()
    stats = {k.decode(): v.decode() for k, v in raw.items()}
    return {
        name: {
            "audits": int(stats.get("audits", 0)),
            "divergences": int(stats.get("divergences", 0)),
            "audit_errors": int(stats.get("errors", 0)),
            "last_divergence": stats.get("last_divergence"),
            "native_series": sorted(m.decode() for m in native)[:20],
            "native_series_count": len(native),
            "exchange_native": stats.get("native") == "1",
        }
    }


def _keeper(broker: redis.Redis, timeframe: str) -> dict:
    last = broker.hgetall(keys.keeper_lag(timeframe))
    if not last:
        return {"last_close": None, "lag_p50_s": None, "lag_max_s": None}
    boundary_ms = int(last[b"boundary_ms"])
    lags = [
        lag
        for _, lag in broker.zrange(
            keys.keeper_lags(timeframe, boundary_ms), 0, -1, withscores=True
        )
    ]
    return {
        "last_close": boundary_ms // 1000,
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
    }


def prometheus(report: dict) -> str:
    """The same figures as Prometheus text (for a node-exporter textfile collector)."""
    lines = [
        "# HELP backfill_stale_series Series whose last closed bucket is not cached.",
        "# TYPE backfill_stale_series gauge",
    ]
    for tf, row in report["timeframes"].items():
        lines.append(f'backfill_stale_series{{timeframe="{tf}"}} {row["stale"]}')
    lines += ["# HELP backfill_newest_age_seconds Since the newest cached bucket closed.",
              "# TYPE backfill_newest_age_seconds gauge"]  # fmt: skip
    for tf, row in report["timeframes"].items():
        if row["newest_age_s"] is not None:
            lines.append(f'backfill_newest_age_seconds{{timeframe="{tf}"}} {row["newest_age_s"]}')
    lines += ["# HELP backfill_close_lag_seconds Bucket close to candle cached, last close.",
              "# TYPE backfill_close_lag_seconds gauge"]  # fmt: skip
    for tf, row in report["timeframes"].items():
        for q, key in (("0.5", "lag_p50_s"), ("1", "lag_max_s")):
            if row[key] is not None:
                lines.append(
                    f'backfill_close_lag_seconds{{timeframe="{tf}",quantile="{q}"}} {row[key]}'
                )
    lines += ["# HELP backfill_breaker_open 1 while the fleet's circuit breaker is open.",
              "# TYPE backfill_breaker_open gauge",
              f"backfill_breaker_open {int(report['breaker']['state'] == 'open')}"]  # fmt: skip
    derived = report.get("derivation") or {}
    for metric, field, kind, text in (
        ("backfill_derive_audits_total", "audits", "counter",
         "Derived candles compared with the exchange's native ones."),
        ("backfill_derive_divergences_total", "divergences", "counter",
         "Derived candles that differed from the exchange's native ones."),
        ("backfill_derive_native_series", "native_series_count", "gauge",
         "Series switched back to native refreshes after a divergence."),
        ("backfill_derive_exchange_native", "exchange_native", "gauge",
         "1 while the whole exchange is refreshed natively (too many divergences)."),
    ):  # fmt: skip
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
        for exchange, row in derived.items():
            lines.append(f'{metric}{{exchange="{exchange}"}} {int(row[field])}')
    return "\n".join(lines) + "\n"
