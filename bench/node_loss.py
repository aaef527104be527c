"""`python -m bench.node_loss [--json]`: how long a whole lost worker node costs (issue 21).

Two nodes (`-c 1`, production's visibility timeout of 900 s) run a startup backfill; one
is SIGKILLed (whole process group) while it runs a series. `node_loss_recovery_s` is the
time from the kill until every message the dead node held is held again by a live node
(received: with `-c 1` and prefetch 1 it runs at once, the restored message being first
in its queue) or its series is recorded done. Target: <= 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from bench.stack import Stack, WorkerSpec, log
from core import liveness as lv
from core.config import DEFAULT_SYMBOLS, BackfillConfig
from core.run import RunStore

TARGET_S = 15.0


def _node(stack: Stack, worker) -> str:
    prefix = worker.name.split("@")[0] + "@"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for n in stack.redis.zrange(lv.NODES, 0, -1):
            if n.decode().startswith(prefix):
                return n.decode()
        time.sleep(0.05)
    raise RuntimeError(f"{prefix} never beat")


def _freeze_holding(stack: Stack, worker, node: str, timeout: float = 30) -> dict[str, dict]:
    """Pin the node mid-series (SIGSTOP its pool process) and return what it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [child] = worker.children()
        os.kill(child, signal.SIGSTOP)
        tags = [t.decode() for t in stack.redis.smembers(lv.held(node))]
        raws = stack.redis.hmget("unacked", tags) if tags else []
        held = {t: lv.describe_message(r) for t, r in zip(tags, raws, strict=True) if r}
        if any(d.get("series") for d in held.values()):
            return held
        os.kill(child, signal.SIGCONT)
        time.sleep(0.01)
    raise RuntimeError("the node never held a series")


def node_loss_recovery(symbols: int = 10, sim_latency_ms: tuple = (80, 150)) -> dict:
    """Run the scenario once; returns the figure and what it rests on."""
    with Stack() as stack:
        stack.sim.configure(latency_ms=list(sim_latency_ms))
        spec = WorkerSpec(
            nodes=2, pool="prefork", concurrency=1, rate_limit="5/s",
            env={"BACKFILL_VISIBILITY_TIMEOUT_S": "900"},
        )  # fmt: skip
        victim_w, survivor_w = stack.start_workers(spec, fleet_rate=25.0)
        victim, survivor = _node(stack, victim_w), _node(stack, survivor_w)
        config = BackfillConfig(symbols=DEFAULT_SYMBOLS[:symbols])
        t0 = time.time()
        run_id = dispatch(config, redis_url=stack.redis_url).run_id
        runs = RunStore(stack.redis)
        while runs.completed(run_id) < 5:
            time.sleep(0.05)
        held = _freeze_holding(stack, victim_w, victim)
        victim_w.kill()
        killed = time.monotonic()
        killed_wall = time.time()
        back: dict[str, float] = {}
        while len(back) < len(held) and time.monotonic() - killed < 120:
            again = {t.decode() for t in stack.redis.smembers(lv.held(survivor))}
            done = runs.outcomes(run_id)
            for tag, d in held.items():
                if tag not in back and (tag in again or d.get("series") in done):
                    back[tag] = time.monotonic() - killed
            time.sleep(0.02)
        recovery = max(back.values()) if len(back) == len(held) else None
        result = wait_ready(stack.redis, run_id, timeout=120)
        records = [json.loads(r) for r in stack.redis.lrange(lv.HANDBACKS, 0, -1)]
        record = next((r for r in records if r["node"] == victim), None)
        return {
            "node_loss_recovery_s": None if recovery is None else round(recovery, 2),
            "target_s": TARGET_S,
            "met": recovery is not None and recovery <= TARGET_S,
            "dead_after_s": lv.dead_after_s(),
            "handback_after_kill_s": round(record["at"] - killed_wall, 2) if record else None,
            "held_at_kill": sorted(d.get("series") or str(d.get("task")) for d in held.values()),
            "gate_status": (result.summary or {}).get("status"),
            "gate_after_kill_s": round(time.time() - killed_wall, 2),
            "run_wall_s": round(time.time() - t0, 2),
            "series": len(config.symbols) * len(config.timeframes),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.node_loss", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    p.add_argument("--symbols", type=int, default=10)
    args = p.parse_args(argv)
    log("node loss: 2 nodes, kill one mid-series (SIGKILL to its process group)")
    r = node_loss_recovery(args.symbols)
    if args.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:<24} {v}")
    return 0 if r["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
