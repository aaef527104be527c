"""The indicator service in miniature: wait on the gate, read the cache as it does, compute
MACD-V as it does.

It reads exactly what the TypeScript service reads (the newest 200 members, `ZRANGE key
-200 -1`), validates every member against the cache contract, skips a series with fewer
than 60, fills gaps with synthetic bars and uses the observed-bar ATR (`backfill.macdv`,
shared/reference/macd-v.md), and publishes each value on the platform's own indicator key
and channel (`core.keys`).
"""

from __future__ import annotations

import json

import redis
from rich.console import Console
from rich.table import Table

from backfill import macdv
from core import keys
from core.config import BackfillConfig
from core.errors import CacheContractError
from core.series import Series

INDICATOR_TTL_S = 24 * 3600
MEMBER_KEYS = ("timestamp", "open", "high", "low", "close", "volume", "symbol", "timeframe")


def validate_member(raw: str | bytes, series: Series, key: str) -> dict:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        m = json.loads(text)
    except ValueError:
        raise CacheContractError(f"{key}: member is not JSON: {text[:80]!r}") from None
    if not isinstance(m, dict) or tuple(m) != MEMBER_KEYS:
        raise CacheContractError(f"{key}: member keys are not {MEMBER_KEYS}: {text[:120]!r}")
    ts = m["timestamp"]
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0 or ts % series.timeframe.ms:
        raise CacheContractError(f"{key}: bad timestamp {ts!r}")
    for f in ("open", "high", "low", "close", "volume"):
        v = m[f]
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise CacheContractError(f"{key}: {f} {v!r} is not a number")
        if (v < 0) if f == "volume" else (v <= 0):
            raise CacheContractError(f"{key}: {f} {v!r} out of range")
    if m["symbol"] != series.symbol or m["timeframe"] != series.timeframe.name:
        raise CacheContractError(f"{key}: member is for {m['symbol']} {m['timeframe']}")
    return m


def read_candles(
    client: redis.Redis, series: Series, n: int, user_id: int = 1, exchange_id: int = 1
) -> list[dict]:
    key = series.cache_key(user_id, exchange_id)
    return [validate_member(raw, series, key) for raw in client.zrange(key, -n, -1)]


def indicator_row(
    client: redis.Redis, series: Series, config: BackfillConfig, ready: bool
) -> dict:
    """What the platform computes for one series (full precision; None where undefined)."""
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
        return row
    candles = read_candles(
        client, series, macdv.READ_CANDLES, config.user_id, config.exchange_id
    )
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
    if candles:
        row["timestamp"] = candles[-1]["timestamp"]
    return row


def publish(client: redis.Redis, config: BackfillConfig, row: dict) -> None:
    """The value on the platform's indicator key and channel, as its own service does."""
    names = (config.user_id, config.exchange_id, row["symbol"], row["timeframe"])
    payload = json.dumps(row, separators=(",", ":"))
    pipe = client.pipeline()
    pipe.set(keys.indicator(*names), payload, ex=INDICATOR_TTL_S)
    pipe.publish(keys.indicator_channel(*names), payload)
    pipe.execute()


def indicator_rows(
    client: redis.Redis, config: BackfillConfig, summary: dict, publish_values: bool = True
) -> list[dict]:
    """One row per series of the run: MACD-V where ready and seeded, nulls (and why) where
    not."""
    ready = set(summary.get("ready", []))
    rows = []
    for tf in config.timeframes:
        for symbol in config.symbols:
            series = Series.of(symbol, tf)
            row = indicator_row(client, series, config, series.name in ready)
            if publish_values and row["macd_v"] is not None:
                publish(client, config, row)
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
