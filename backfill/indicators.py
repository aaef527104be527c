"""The indicator service in miniature: wait on the gate, read the cache as it does, compute MACD-V.

It reads exactly what the TypeScript service reads (`ZRANGE key -N -1`), validates every
member against the cache contract, and refuses to compute from fewer than 60 candles.
"""

from __future__ import annotations

import json

import redis
from rich.console import Console
from rich.table import Table

from backfill import macdv
from backfill.series import Series
from backfill.settings import BackfillConfig

INDICATOR_CHANNEL = "channel:indicator:macdv:{user_id}:{exchange_id}:{symbol}:{timeframe}"
MEMBER_KEYS = ("timestamp", "open", "high", "low", "close", "volume", "symbol", "timeframe")


class CacheContractError(ValueError):
    """Raised when a cached member breaks the contract; names the key and the member."""


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


def indicator_rows(
    client: redis.Redis, config: BackfillConfig, summary: dict, publish: bool = True
) -> list[dict]:
    """One row per series of the run: MACD-V where ready, nulls where not."""
    ready = set(summary.get("ready", []))
    rows = []
    for tf in config.timeframes:
        for symbol in config.symbols:
            series = Series.of(symbol, tf)
            row = {
                "symbol": symbol,
                "timeframe": tf,
                "macd_v": None,
                "signal": None,
                "histogram": None,
                "stage": "not ready",
                "candles": 0,
            }
            if series.name in ready:
                candles = read_candles(
                    client, series, config.candle_count, config.user_id, config.exchange_id
                )
                row["candles"] = len(candles)
                if len(candles) >= max(macdv.MIN_CANDLES, config.min_candles):
                    v = macdv.compute(
                        [c["high"] for c in candles],
                        [c["low"] for c in candles],
                        [c["close"] for c in candles],
                    )
                    row.update(
                        macd_v=_r(v.macd_v),
                        signal=_r(v.signal),
                        histogram=_r(v.histogram),
                        stage=v.stage,
                    )
                    if publish:
                        channel = INDICATOR_CHANNEL.format(
                            user_id=config.user_id,
                            exchange_id=config.exchange_id,
                            symbol=symbol,
                            timeframe=tf,
                        )
                        client.publish(
                            channel, json.dumps({**row, "timestamp": candles[-1]["timestamp"]})
                        )
            rows.append(row)
    return rows


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def print_indicators(console: Console, rows: list[dict]) -> None:
    table = Table(title="MACD-V (12/26/26/9) from the cache")
    for col in ("symbol", "timeframe", "MACD-V", "signal", "stage", "candles"):
        table.add_column(col, justify="right" if col in ("MACD-V", "signal", "candles") else "left")

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for r in rows:
        table.add_row(
            r["symbol"],
            r["timeframe"],
            fmt(r["macd_v"]),
            fmt(r["signal"]),
            r["stage"],
            str(r["candles"]),
        )
    console.print(table)
