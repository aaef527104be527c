"""Who holds which broker message, and handing a lost node's messages back (issue 21).

kombu's Redis transport keeps every message a worker received but has not acked in the
`unacked` hash (delivery tag -> payload) and `unacked_index` (tag -> receipt time), and
gives one back only when it is older than the visibility timeout (900 s by default): a
node killed outright would stall the gate for ~15 min. The timeout must stay that long,
because a live node legitimately holds messages for long (a long task, a retry countdown
held as an ETA message). So liveness is judged per node, not per message:

- each worker node records the tags it holds in its own set (`held(node)`), atomically
  with kombu's own bookkeeping at receipt, and beats (`NODES`, Redis time) every
  `BEAT_S`; each beat also re-scores its held tags in `unacked_index`, so kombu's
  visibility timeout never fires on what a live node holds, however long it holds it;
- every node sweeps: a node silent for `dead_after_s()` is dead, and its held messages go
  back to the front of their queues, each moved by one Lua script that also drops it
  from the dead node's set (several sweepers at once move each message once);
- an ack, a reject or a warm-shutdown restore touches kombu's records only for a tag the
  node still holds: a node that was frozen, swept and resumed must not delete the record
  of the node that now holds the message (the tag travels with the message).

This module holds the key names, the scripts and the pure helpers; the worker side is
`workers/liveness.py`, the read side (`backfill status`) is `backfill/holders.py`.
"""

from __future__ import annotations

import base64
import json

from core import defaults, keys

BEAT_S = 1.0
DEAD_AFTER_S = defaults.NODE_DEAD_AFTER_S  # 8 missed beats: a hiccup is not a death
HANDBACK_KEEP = 50

NODES = "backfill:liveness:nodes"  # zset: node -> last beat (Redis time, s)
HANDBACKS = "backfill:liveness:handbacks"  # list of JSON records, newest first


def held(node: str) -> str:
    """Set of the delivery tags `node` holds (received, not yet acked or handed back)."""
    return f"backfill:liveness:held:{node}"


def sweep_lock(node: str) -> str:
    """Held by the one sweeper handing `node`'s messages back (expires if it dies)."""
    return f"backfill:liveness:sweep:{node}"


def dead_after_s() -> float:
    """`BACKFILL_NODE_DEAD_AFTER_S` (default 8 s, environment or `.env`): silence that
    makes a node dead."""
    from core.settings import load_settings

    return max(3 * BEAT_S, load_settings().backfill_node_dead_after_s)


def describe_message(raw: bytes | str | None) -> dict:
    """What an `unacked` payload is, for people: task name and id, the series, the ETA.

    The payload is kombu's JSON `[message, exchange, routing_key]`; the series comes from
    the body of a series or refresh task (base64 JSON `[args, kwargs, embed]`).
    """
    if raw is None:
        return {}
    try:
        message, _exchange, routing_key = json.loads(raw)
        headers = message.get("headers") or {}
        out = {
            "task": headers.get("task"),
            "id": headers.get("id"),
            "queue": routing_key,
            "eta": headers.get("eta"),
            "retries": headers.get("retries", 0),
        }
        if out["task"] in (keys.SERIES_TASK, keys.REFRESH_TASK):
            body = message.get("body", "")
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            out["series"] = _series_of(json.loads(body)[0], out["task"])
        return out
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {"task": None}


def _series_of(args: list, task: str) -> str:
    """The series from a task's args: one job dict (core/jobs.py), or the older
    positional form (series: run id, symbol, timeframe; refresh: symbol, timeframe)."""
    if args and isinstance(args[0], dict):
        symbol, timeframe = args[0]["symbol"], args[0]["timeframe"]
    else:
        symbol, timeframe = args[1:3] if task == keys.SERIES_TASK else args[0:2]
    return f"{symbol}:{timeframe}"
