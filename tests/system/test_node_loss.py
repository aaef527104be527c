"""A lost worker node costs seconds, not the visibility timeout (issue 21), with the
production defaults: the workers run with `BACKFILL_VISIBILITY_TIMEOUT_S=900`, so only the
liveness hand-back (core/liveness.py) can bring the lost node's messages back in time."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from helpers import task_lines, wait_until

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from backfill.holders import holders
from core import keys
from core import liveness as lv
from core.config import DEFAULT_SYMBOLS, BackfillConfig
from core.jobs import RefreshJob
from core.run import RunStore
from core.timeframe import parse_timeframes

pytestmark = pytest.mark.slow
PRODUCTION = {"BACKFILL_VISIBILITY_TIMEOUT_S": "900"}  # the default, not the tests' 8 s
SYMBOLS = DEFAULT_SYMBOLS[:10]
GRACE_S = 30.0


def node_name(rclient, worker) -> str:
    """The node's full name as it beats (celery expands %h)."""
    prefix = worker.name.split("@")[0] + "@"

    def beating():
        return next((n.decode() for n in rclient.zrange(lv.NODES, 0, -1)
                     if n.decode().startswith(prefix)), None)  # fmt: skip

    return wait_until(beating, 30, f"{prefix} to beat")


def held_series(rclient, node: str) -> dict[str, dict]:
    """tag -> description of every message `node` holds."""
    tags = [t.decode() for t in rclient.smembers(lv.held(node))]
    raws = rclient.hmget("unacked", tags) if tags else []
    return {t: lv.describe_message(r) for t, r in zip(tags, raws, strict=True) if r}


def freeze_mid_series(rclient, worker, node: str, runs: RunStore, run_id: str) -> dict:
    """SIGSTOP the node's pool process while it runs a series not yet recorded, then the
    whole node (main process too: it can no longer beat). Returns what it holds."""
    return freeze_holding(rclient, worker, node, lambda s: s not in runs.outcomes(run_id))


def freeze_holding(rclient, worker, node: str, pending) -> dict:
    """Freeze the node (pool process first, then the whole group) at a moment it holds a
    message whose series is still `pending` and no ETA message; returns what it holds."""

    def frozen():
        [child] = worker.children()  # -c 1
        os.kill(child, signal.SIGSTOP)
        held = held_series(rclient, node)
        running = [d for d in held.values() if d.get("series") and pending(d["series"])]
        if running and not any(d.get("eta") for d in held.values()):
            os.killpg(worker.pid, signal.SIGSTOP)
            return held
        os.kill(child, signal.SIGCONT)
        return None

    return wait_until(frozen, 30, "the node to run a series task", every=0.01)


def handback_of(rclient, node: str) -> dict | None:
    for raw in rclient.lrange(lv.HANDBACKS, 0, -1):
        record = json.loads(raw)
        if record["node"] == node and record["handed_back"]:
            return record
    return None


def start_run(rclient, redis_url, sim, start_workers):
    sim.configure(latency_ms=[150, 250])
    w1, w2 = start_workers(2, env=PRODUCTION)
    config = BackfillConfig(symbols=SYMBOLS)
    t0 = time.time()
    d = dispatch(config, redis_url=redis_url)
    runs = RunStore(rclient)
    wait_until(lambda: runs.completed(d.run_id) >= 8, 60, "a few series done")
    return w1, w2, config, t0, d.run_id, runs


def check_ready(rclient, runs, run_id, config, lost_at: float, budget_s: float) -> dict:
    """The gate opens ready within `budget_s` of the loss; every series ready; one
    callback; each series counted once."""
    total = len(config.symbols) * len(config.timeframes)
    result = wait_ready(rclient, run_id, timeout=budget_s)
    assert result.exit_code == 0, result.summary
    assert time.time() - lost_at <= budget_s
    assert result.summary["completed"] == total
    assert len(result.summary["ready"]) == total and not result.summary["failed"]
    assert runs.completed(run_id) == total
    assert int(rclient.get(keys.run(run_id, "callbacks"))) == 1
    return result.summary


def remaining_run_s(runs, run_id, t0: float, at: float, total: int) -> float:
    """The run's own time from `at` on, at the pace it had before the loss."""
    done = max(1, runs.completed(run_id))
    return (at - t0) / done * max(0, total - done)


def test_killed_node_work_returns_within_seconds(rclient, redis_url, sim, start_workers, tmp_path):
    w1, w2, config, t0, run_id, runs = start_run(rclient, redis_url, sim, start_workers)
    victim, survivor = node_name(rclient, w1), node_name(rclient, w2)
    held = freeze_mid_series(rclient, w1, victim, runs, run_id)
    w1.kill()  # SIGKILL to the whole process group
    killed_at = time.time()
    lost = {d["series"] for d in held.values() if d.get("series")}
    assert lost and not lost & set(runs.outcomes(run_id))  # mid-task, mid-run
    total = len(config.symbols) * len(config.timeframes)
    own = remaining_run_s(runs, run_id, t0, killed_at, total)

    record = wait_until(lambda: handback_of(rclient, victim), 15, "the hand-back")
    assert {m["series"] for m in record["handed_back"]} >= lost
    assert record["by"] == survivor and record["silent_s"] >= lv.DEAD_AFTER_S
    # the survivor holds (runs) or has finished each lost series
    wait_until(
        lambda: (
            lost
            <= {d.get("series") for d in held_series(rclient, survivor).values()}
            | set(runs.outcomes(run_id))
        ),
        5,
        "the lost series to run again",
    )
    check_ready(rclient, runs, run_id, config, killed_at, GRACE_S + own)
    for tag, d in held.items():
        assert len(task_lines(tmp_path, d["id"], "received")) == 2, d
        assert len(task_lines(tmp_path, d["id"], "succeeded")) == 1, d
        assert not rclient.sismember(lv.held(victim), tag)
    # nothing is left held; the lost node is gone from the beat, and `status` says so
    wait_until(lambda: rclient.hlen("unacked") == 0, 10, "every message acked")
    view = holders(rclient)
    assert victim not in {n["node"] for n in view["nodes"]}
    assert view["handbacks"][0]["node"] == victim


def test_frozen_node_resumed_after_handback_counts_once(
    rclient, redis_url, sim, start_workers, tmp_path
):
    w1, _w2, config, t0, run_id, runs = start_run(rclient, redis_url, sim, start_workers)
    victim = node_name(rclient, w1)
    held = freeze_mid_series(rclient, w1, victim, runs, run_id)
    frozen_at = time.time()
    lost = {d["series"] for d in held.values() if d.get("series")}
    total = len(config.symbols) * len(config.timeframes)
    own = remaining_run_s(runs, run_id, t0, frozen_at, total)
    try:
        wait_until(lambda: handback_of(rclient, victim), 15, "the hand-back")
        # past the hand-back: another node has the message (or already ran it)
        wait_until(
            lambda: all(task_lines(tmp_path, d["id"], "received")[1:] for d in held.values()),
            10,
            "the handed-back tasks received again",
        )
    finally:
        os.killpg(w1.pid, signal.SIGCONT)
    # the resumed node finishes its copy too: a header task that ran twice
    for d in held.values():
        wait_until(
            lambda d=d: len(task_lines(tmp_path, d["id"], "succeeded")) == 2,
            60,
            f"both runs of {d['series']} to finish",
        )
    summary = check_ready(rclient, runs, run_id, config, frozen_at, GRACE_S + own)
    assert lost <= set(summary["ready"])
    # the late result changed nothing: still one callback, each series counted once, and
    # the late ack did not remove the records of the node that held the message next
    assert int(rclient.get(keys.run(run_id, "callbacks"))) == 1
    assert runs.completed(run_id) == total
    wait_until(lambda: rclient.hlen("unacked") == 0, 10, "every message acked")
    # the resumed node beats again and holds nothing it lost
    wait_until(lambda: rclient.zscore(lv.NODES, victim), 10, "the resumed node to beat")
    assert not set(held) & {t.decode() for t in rclient.smembers(lv.held(victim))}


def test_killed_node_refresh_of_a_bucket_close_runs_again(
    rclient, redis_url, sim, start_workers, tmp_path
):
    """The keeper: a node killed while it runs a refresh of a bucket close must not leave
    that close unrefreshed until the next one. The handed-back message keeps its task id,
    so the refresh claim (`keys.refresh_claim`, owned by that id) lets it run again."""
    from backfill.app import app

    sim.configure(latency_ms=[400, 600])
    w1, _w2 = start_workers(2, env=PRODUCTION)
    victim = node_name(rclient, w1)
    [tf] = parse_timeframes(["5m"])
    boundary_ms = tf.floor(int(time.time())) * 1000
    sent = {}
    for symbol in SYMBOLS[:6]:
        job = RefreshJob(symbol, "5m", boundary_ms=boundary_ms)
        r = app.send_task(keys.REFRESH_TASK, args=(job.to_message(),), queue=job.queue)
        sent[f"{symbol}:5m"] = r.id
    held = freeze_holding(
        rclient, w1, victim, lambda s: not task_lines(tmp_path, sent[s], "succeeded")
    )
    w1.kill()
    wait_until(lambda: handback_of(rclient, victim), 15, "the hand-back")
    for d in held.values():
        lines = wait_until(
            lambda d=d: task_lines(tmp_path, d["id"], "succeeded"), 30, f"{d['series']} again"
        )
        assert "'status': 'ok'" in lines[0], lines  # ran, not skipped as a duplicate
        symbol, _ = d["series"].split(":")
        claim = keys.refresh_claim(1, 1, symbol, "5m", boundary_ms)
        assert rclient.get(claim).decode() == d["id"]
