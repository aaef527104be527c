"""A run's records in Redis: its plan, each series' outcome as it lands, and its gate.

Keys (all under `backfill:`, kept 7 days):
- `run:{id}` hash: total, started_at, symbols, timeframes
- `run:{id}:outcomes` hash: series -> outcome JSON (a task run twice overwrites itself)
- `run:{id}:flags` hash: run-wide facts, e.g. that the exchange rejects FOUR_HOUR
- `run:latest`: the newest run id; `gate:{id}`: the summary once the run is done
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from secrets import token_hex

import redis

RUN_TTL_S = 7 * 24 * 3600
PROGRESS_CHANNEL = "backfill:progress:{run_id}"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + token_hex(3)


class RunStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @staticmethod
    def key(run_id: str, part: str = "") -> str:
        return f"backfill:run:{run_id}" + (f":{part}" if part else "")

    def create(self, run_id: str, series: list[str], meta: dict) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(
            self.key(run_id),
            mapping={
                "total": len(series),
                "started_at": f"{time.time():.3f}",
                "series": json.dumps(series),
                **{k: json.dumps(v) for k, v in meta.items()},
            },
        )
        pipe.expire(self.key(run_id), RUN_TTL_S)
        pipe.set("backfill:run:latest", run_id, ex=RUN_TTL_S)
        pipe.execute()

    def meta(self, run_id: str) -> dict | None:
        raw = self.redis.hgetall(self.key(run_id))
        if not raw:
            return None
        out = {k.decode(): v.decode() for k, v in raw.items()}
        out["total"] = int(out["total"])
        out["started_at"] = float(out["started_at"])
        out["series"] = json.loads(out["series"])
        return out

    def latest(self) -> str | None:
        v = self.redis.get("backfill:run:latest")
        return v.decode() if v else None

    def record(self, run_id: str, *outcomes: dict) -> None:
        """Store series outcomes and tell progress watchers (one round trip)."""
        if not outcomes:
            return
        key = self.key(run_id, "outcomes")
        pipe = self.redis.pipeline()
        pipe.hset(
            key, mapping={o["series"]: json.dumps(o, separators=(",", ":")) for o in outcomes}
        )
        pipe.expire(key, RUN_TTL_S)
        pipe.publish(PROGRESS_CHANNEL.format(run_id=run_id), str(len(outcomes)))
        pipe.execute()

    def outcomes(self, run_id: str, series: list[str] | None = None) -> dict[str, dict]:
        """Outcomes recorded so far (only those of `series`, if given)."""
        key = self.key(run_id, "outcomes")
        if series is None:
            raw = self.redis.hgetall(key)
            return {k.decode(): json.loads(v) for k, v in raw.items()}
        if not series:
            return {}
        values = self.redis.hmget(key, series)
        return {name: json.loads(v) for name, v in zip(series, values, strict=True) if v}

    def completed(self, run_id: str) -> int:
        return int(self.redis.hlen(self.key(run_id, "outcomes")))

    def set_flag(self, run_id: str, name: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self.key(run_id, "flags"), name, "1")
        pipe.expire(self.key(run_id, "flags"), RUN_TTL_S)
        pipe.execute()

    def has_flag(self, run_id: str, name: str) -> bool:
        return bool(self.redis.hexists(self.key(run_id, "flags"), name))
