"""A run's records in Redis: its plan, each series' outcome as it lands, and its gate.

Both planes use it: the dispatcher creates the run, series tasks record outcomes, the
chord callback opens the gate, the CLI reads all of it. Kept 7 days (key names in
`core.keys`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from secrets import token_hex

import redis

from core import keys
from core.config import BackfillConfig
from core.outcome import Outcome

RUN_TTL_S = 7 * 24 * 3600
# outcomes hash, progress channel; TTL, how many, then series/outcome pairs
_RECORD = """
local i = 3
while i <= #ARGV do  -- a dispatch records every fresh series at once: unpack in pieces
  local j = math.min(i + 1999, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
"""


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + token_hex(3)


@dataclass(frozen=True)
class RunRecord:
    """What the dispatcher recorded about a run, decoded once."""

    run_id: str
    total: int
    started_at: float
    series: list[str]  # every series of the run, fresh ones included
    configs: tuple[BackfillConfig, ...]  # one per exchange, in the run's order

    @property
    def config(self) -> BackfillConfig:
        """The first exchange's (the only one, in a one-exchange run)."""
        return self.configs[0]

    def config_for(self, symbol: str) -> BackfillConfig:
        """The exchange config a series of this run belongs to (symbol forms differ)."""
        return next((c for c in self.configs if symbol in c.symbols), self.configs[0])


_CONFIG_FIELDS = ("symbols", "timeframes", "candle_count", "min_candles", "user_id",
                  "exchange_id", "full", "exchange")  # fmt: skip


class RunStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record = client.register_script(_RECORD)

    def create(
        self, run_id: str, series: list[str], configs: BackfillConfig | list[BackfillConfig]
    ) -> None:
        configs = [configs] if isinstance(configs, BackfillConfig) else list(configs)
        config = configs[0]
        pipe = self.redis.pipeline()
        pipe.hset(
            keys.run(run_id),
            mapping={
                "total": len(series),
                "started_at": f"{time.time():.3f}",
                "series": json.dumps(series),
                **{k: json.dumps(getattr(config, k)) for k in _CONFIG_FIELDS},
                "configs": json.dumps(
                    [{k: getattr(c, k) for k in _CONFIG_FIELDS} for c in configs]
                ),
            },
        )
        pipe.expire(keys.run(run_id), RUN_TTL_S)
        pipe.set(keys.RUN_LATEST, run_id, ex=RUN_TTL_S)
        pipe.execute()

    def meta(self, run_id: str) -> RunRecord | None:
        raw = self.redis.hgetall(keys.run(run_id))
        if not raw:
            return None
        out = {k.decode(): v.decode() for k, v in raw.items()}
        if "configs" in out:
            given = json.loads(out["configs"])
        else:  # a run recorded before several exchanges: its fields, one by one
            given = [{k: json.loads(out[k]) for k in _CONFIG_FIELDS if k in out}]
        configs = tuple(
            BackfillConfig(**{k: tuple(v) if k in ("symbols", "timeframes") else v
                              for k, v in g.items()})
            for g in given
        )  # fmt: skip
        return RunRecord(
            run_id, int(out["total"]), float(out["started_at"]), json.loads(out["series"]), configs
        )

    def latest(self) -> str | None:
        v = self.redis.get(keys.RUN_LATEST)
        return v.decode() if v else None

    def record(self, run_id: str, *outcomes: Outcome) -> None:
        """Store series outcomes and tell progress watchers (one round trip)."""
        if not outcomes:
            return
        pairs = [x for o in outcomes for x in (o.series, o.to_json())]
        # one script call, not a pipeline of three: a series task records once per series
        self._record(
            keys=[keys.run(run_id, "outcomes"), keys.progress_channel(run_id)],
            args=[RUN_TTL_S, len(outcomes), *pairs],
        )

    def outcomes(self, run_id: str, series: list[str] | None = None) -> dict[str, Outcome]:
        """Outcomes recorded so far (only those of `series`, if given)."""
        key = keys.run(run_id, "outcomes")
        if series is None:
            raw = self.redis.hgetall(key)
            return {k.decode(): Outcome.from_json(v) for k, v in raw.items()}
        if not series:
            return {}
        values = self.redis.hmget(key, series)
        return {name: Outcome.from_json(v) for name, v in zip(series, values, strict=True) if v}

    def completed(self, run_id: str) -> int:
        return int(self.redis.hlen(keys.run(run_id, "outcomes")))

    def set_flag(self, run_id: str, name: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(keys.run(run_id, "flags"), name, "1")
        pipe.expire(keys.run(run_id, "flags"), RUN_TTL_S)
        pipe.execute()

    def has_flag(self, run_id: str, name: str) -> bool:
        return bool(self.redis.hexists(keys.run(run_id, "flags"), name))

    def count_callback(self, run_id: str) -> int:
        """How often the chord callback ran for this run (tests check: once)."""
        return int(self.redis.incr(keys.run(run_id, "callbacks")))

    def open_gate(self, summary: dict) -> None:
        """Write the run's summary and wake every waiter (`backfill.gate.wait_ready`)."""
        pipe = self.redis.pipeline()
        pipe.set(keys.gate(summary["run_id"]), json.dumps(summary), ex=RUN_TTL_S)
        pipe.publish(keys.GATE_CHANNEL, summary["run_id"])
        pipe.execute()

    def gate(self, run_id: str) -> dict | None:
        raw = self.redis.get(keys.gate(run_id))
        return json.loads(raw) if raw else None
