"""`backfill status`: a run's progress per timeframe, its failures and its gate, from Redis;
and, for `status` and `health`, the queues that hold messages no live worker consumes."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

import redis

from backfill.holders import format_holders, holders
from core import keys
from core.exchanges import EXCHANGES, budget_name
from core.run import RunStore
from core.timeframe import priority_key


def run_status(client: redis.Redis, run_id: str | None = None) -> dict:
    runs = RunStore(client)
    run_id = run_id or runs.latest()
    if run_id is None:
        return {"run_id": None, "error": "no backfill run found"}
    meta = runs.meta(run_id)
    if meta is None:
        return {"run_id": run_id, "error": "unknown run"}
    outcomes = runs.outcomes(run_id)
    per_tf: dict[str, dict] = defaultdict(lambda: {"total": 0, "done": 0, "failed": 0})
    for name in meta.series:
        per_tf[name.rsplit(":", 1)[1]]["total"] += 1
    for o in outcomes.values():
        per_tf[o.timeframe]["done"] += 1
        per_tf[o.timeframe]["failed"] += o.status != "ok"
    gate = runs.gate(run_id)
    return {
        "run_id": run_id,
        "total": meta.total,
        "completed": len(outcomes),
        "timeframes": {tf: per_tf[tf] for tf in sorted(per_tf, key=priority_key)},
        "failures": [
            {"series": o.series, "reason": o.reason, "error": o.error}
            for o in outcomes.values()
            if o.status != "ok"
        ],
        "gate": "open" if gate else "closed",
        "gate_status": gate["status"] if gate else None,
    }


def queue_lengths(
    client: redis.Redis, queues: list[str], transport_options: dict | None = None
) -> dict[str, int]:
    """Messages waiting in each queue, as kombu's Redis transport stores them: one list per
    priority step (`name` for priority 0, `name\\x06\\x16<step>` for the others)."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    opts = transport_options or {}
    steps = list(opts.get("priority_steps") or PRIORITY_STEPS)
    prefix = opts.get("global_keyprefix") or ""
    with client.pipeline(transaction=False) as pipe:
        for q in queues:
            for pri in steps:
                pipe.llen(prefix + (f"{q}{Channel.sep}{pri}" if pri else q))
        sizes = pipe.execute()
    n = len(steps)
    return {q: sum(sizes[i * n : (i + 1) * n]) for i, q in enumerate(queues)}


def unconsumed_queues(client: redis.Redis, app, timeout: float) -> list[dict]:
    """The configured queues that hold messages while no live worker consumes them, in the
    configuration's (priority) order: `[{"queue": ..., "messages": ...}]`.

    A worker started with an outdated `-Q` list never takes from a queue it does not name:
    its messages wait for ever, silently. Only when some queue holds messages are the
    workers asked (`inspect active_queues`, waiting `timeout` seconds for the replies), so
    an idle fleet costs one pipeline of LLENs. A worker that does not answer in time counts
    as consuming nothing."""
    names = [q.name for q in app.conf.task_queues]
    lengths = queue_lengths(client, names, app.conf.broker_transport_options)
    waiting = {q: n for q, n in lengths.items() if n}
    if not waiting:
        return []
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    consumed = {q["name"] for queues in replies.values() for q in queues or ()}
    return [{"queue": q, "messages": n} for q, n in waiting.items() if q not in consumed]


def unconsumed_warning(unconsumed: list[dict]) -> str:
    listed = ", ".join(
        f"{u['queue']} ({u['messages']} message{'s' if u['messages'] != 1 else ''})"
        for u in unconsumed
    )
    return (
        f"warning: no live worker consumes {listed}: these messages never run; start workers "
        "with the plain `celery -A backfill worker` (no -Q: queues come from the configuration)"
    )


def bans(client: redis.Redis) -> dict[str, float]:
    """Exchanges whose fleet is banned now (Binance's 418), and until when (UNIX s)."""
    out = {}
    for name in EXCHANGES:
        raw = client.get(keys.budget(budget_name(name)).banned)
        if raw and raw.isdigit():
            out[name] = int(raw) / 1000
    return out


def print_status(
    client: redis.Redis,
    run_id: str | None,
    as_json: bool = False,
    fresh: dict | None = None,
    unconsumed: list[dict] | None = None,
) -> int:
    st = run_status(client, run_id)
    st["holders"] = holders(client)  # which node holds what; hand-backs of lost nodes
    st["bans"] = bans(client)
    if fresh is not None:
        st["freshness"] = fresh
    if unconsumed is not None:
        st["unconsumed_queues"] = unconsumed
        if unconsumed:  # on stderr in every mode: stdout stays the report (or one JSON object)
            print(unconsumed_warning(unconsumed), file=sys.stderr)
    if as_json:
        print(json.dumps(st))
        return 0 if "error" not in st else 1
    if fresh is not None:
        print_freshness(fresh)
    if "error" in st:
        print(f"{st['error']}" + (f": {st['run_id']}" if st["run_id"] else ""))
        return 1
    print(
        f"run {st['run_id']}: {st['completed']}/{st['total']} done, gate {st['gate']}"
        + (f" ({st['gate_status']})" if st["gate_status"] else "")
    )
    for tf, row in st["timeframes"].items():
        bar = "#" * int(20 * row["done"] / row["total"]) if row["total"] else ""
        print(f"  {tf:>4} {row['done']:>4}/{row['total']:<4} failed {row['failed']:<3} {bar}")
    for f in st["failures"]:
        print(f"  failed {f['series']}: {f['reason']}: {f['error']}")
    for line in format_holders(st["holders"]):
        print(line)
    for name, until in st["bans"].items():
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
        print(f"  {name}: the exchange banned this fleet until {stamp}: nothing is sent")
    return 0


def print_freshness(fresh: dict) -> None:
    b = fresh["breaker"]
    print(f"cache freshness (breaker {b['state']}, {b['failures']} recent failures):")
    for tf, row in fresh["timeframes"].items():
        age = "-" if row["newest_age_s"] is None else f"{row['newest_age_s']:.0f}s"
        lag = (
            "-"
            if row["lag_max_s"] is None
            else f"p50 {row['lag_p50_s']:.1f}s max {row['lag_max_s']:.1f}s"
        )
        print(
            f"  {tf:>4} newest closed {age} ago, stale {row['stale']}/{row['series']}, "
            f"last close lag {lag}"
        )
    for exchange, d in (fresh.get("derivation") or {}).items():
        print(
            f"  derived timeframes ({exchange}): {d['audits']} audited, {d['divergences']} "
            f"diverged, {d['native_series_count']} series native"
            + (", whole exchange native" if d["exchange_native"] else "")
        )
