"""The indicator service in miniature: wait on the gate, read the cache as it does, compute
MACD-V as it does.

It reads exactly what the TypeScript service reads (the newest 200 members, `ZRANGE key
-200 -1`), validates every member against the cache contract, skips a series with fewer
than 60, fills gaps with synthetic bars and uses the observed-bar ATR (`backfill.macdv`,
shared/reference/macd-v.md), and publishes each value on the platform's own indicator key
and channel (`core.keys`) in the platform's own shape (`platform_value`), or not at all.
"""

from __future__ import annotations

import math

import redis
from rich.console import Console
from rich.table import Table

from backfill import macdv
from core import keys
from core.config import BackfillConfig
from core.jsnum import js_json
from core.member import validate_member
from core.series import Series

INDICATOR_TTL_S = 90_000
"""The platform's IndicatorCacheStrategy TTL: 25 h, longer than the longest timeframe."""
INDICATOR_TYPE = "macd-v"
def read_candles(
    client: redis.Redis, series: Series, n: int, user_id: int = 1, exchange_id: int = 1
) -> list[dict]:
    key = series.cache_key(user_id, exchange_id)
    return [validate_member(raw, series, key) for raw in client.zrange(key, -n, -1)]


def indicator_row(client: redis.Redis, series: Series, config: BackfillConfig, ready: bool) -> dict:
    """What the platform computes for one series (full precision; None where undefined)."""
    return _compute(client, series, config, ready)[0]


def _compute(
    client: redis.Redis, series: Series, config: BackfillConfig, ready: bool
) -> tuple[dict, str | None]:
    """The operator's row, and the platform's value JSON (None: nothing to write)."""
    row = {
        "symbol": series.symbol,
        "timeframe": series.timeframe.name,
        "macd_v": None,
        "signal": None,
        "histogram": None,
        "stage": "not ready",
        "candles": 0,
        "seeded": False,
        "reason": None if ready else "not ready at the gate",
        "gap_ratio": None,
        "liquidity": None,
    }
    if not ready:
        return row, None
    candles = read_candles(client, series, macdv.READ_CANDLES, config.user_id, config.exchange_id)
    v = macdv.compute_gap_filled(
        candles, series.timeframe.ms, min_candles=max(macdv.MIN_CANDLES, config.min_candles)
    )
    row.update(
        macd_v=v.macd_v,
        signal=v.signal,
        histogram=v.histogram,
        stage=v.stage,
        candles=v.candles,
        seeded=v.seeded,
        reason=v.reason,
        gap_ratio=v.gap_ratio,
        liquidity=v.liquidity,
    )
    if not candles:
        return row, None
    row["timestamp"] = candles[-1]["timestamp"]
    return row, platform_value(series, v, row["timestamp"])


def platform_value(series: Series, v: macdv.GapFilledMacdV, timestamp: int) -> str | None:
    """The JSON the platform's indicator service stores for this value, byte for byte
    (cache-contract.md, "Indicator value": `JSON.stringify` of its CachedIndicatorValue, keys
    in its order, numbers as JavaScript prints them), or None: nothing is written.

    Written only where every number in `value` is defined. The platform writes no value
    either when MACD-V is undefined at the last bar (fewer than 60 candles, ATR 0); an
    unseeded ATR cannot happen with 60 real candles (each has a true range), and an undefined
    signal cannot happen after the 9 bars that follow the ATR seed. If either ever did, the
    platform would store `null` (NaN) or an invented 0 where its API reads a number: we store
    nothing rather than that. `params.nEff` is the number of observed (real) bars' true ranges
    and `params.spanBars` the bars from the first to the last observed bar, as the platform's
    informative ATR counts them; `reason` is null on every value written.
    """
    value = {
        "macdV": v.macd_v,
        "signal": v.signal,
        "histogram": v.histogram,
        "fastEMA": v.fast_ema,
        "slowEMA": v.slow_ema,
        "atr": v.atr,
    }
    if v.skipped or any(x is None or not math.isfinite(x) for x in value.values()):
        return None
    return js_json(
        {
            "timestamp": timestamp,
            "type": INDICATOR_TYPE,
            "symbol": series.symbol,
            "timeframe": series.timeframe.name,
            "value": value,
            "params": {
                "fastPeriod": macdv.FAST,
                "slowPeriod": macdv.SLOW,
                "atrPeriod": macdv.ATR,
                "signalPeriod": macdv.SIGNAL,
                "stage": v.stage,
                "liquidity": v.liquidity,
                "gapRatio": v.gap_ratio,
                "zeroRangeRatio": v.zero_range_ratio,
                "seeded": v.seeded,
                "nEff": v.observed,
                "spanBars": v.span_bars,
                "reason": None,
            },
        }
    )


def publish(client: redis.Redis, config: BackfillConfig, series: Series, payload: str) -> None:
    """The value on the platform's indicator key (TTL 90 000 s) and channel, as its own
    IndicatorCacheStrategy does."""
    names = (config.user_id, config.exchange_id, series.symbol, series.timeframe.name)
    pipe = client.pipeline()
    pipe.set(keys.indicator(*names), payload, ex=INDICATOR_TTL_S)
    pipe.publish(keys.indicator_channel(*names), payload)
    pipe.execute()


def indicator_rows(
    client: redis.Redis, config: BackfillConfig, summary: dict, publish_values: bool = True
) -> list[dict]:
    """One row per series of the run: MACD-V where ready and seeded, nulls (and why) where
    not. Each value the platform would store is published in its shape (`platform_value`)."""
    ready = set(summary.get("ready", []))
    rows = []
    for tf in config.timeframes:
        for symbol in config.symbols:
            series = Series.of(symbol, tf)
            row, payload = _compute(client, series, config, series.name in ready)
            if publish_values and payload is not None:
                publish(client, config, series, payload)
            rows.append(row)
    return rows


def print_indicators(console: Console, rows: list[dict]) -> None:
    table = Table(
        title="MACD-V (12/26/26/9) from the cache, gaps filled as the platform does",
        pad_edge=False,
    )
    right = ("MACD-V", "signal", "candles", "gaps")
    for col in ("symbol", "tf", "MACD-V", "signal", "stage", "candles", "gaps", "liquidity"):
        # never truncated: an operator reads every stage and tier whole
        table.add_column(col, justify="right" if col in right else "left", no_wrap=True)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for r in rows:
        gaps = "-" if r["gap_ratio"] is None else f"{100 * r['gap_ratio']:.0f}%"
        stage = r["stage"] if r["macd_v"] is not None or not r["reason"] else r["reason"]
        table.add_row(
            r["symbol"],
            r["timeframe"],
            fmt(r["macd_v"]),
            fmt(r["signal"]),
            stage,
            str(r["candles"]),
            gaps,
            r["liquidity"] or "-",
        )
    console.print(table)
