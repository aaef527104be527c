"""Which worker node holds which message, and when a lost node's work was handed back.

The read side of `core/liveness.py` for `backfill status`: from Redis alone (no broadcast
to the workers), so it answers even when a node is gone, which is when it matters.
"""

from __future__ import annotations

import json

import redis

from core import liveness as lv

UNACKED = "unacked"  # kombu's Redis transport default (`unacked_key`)


def holders(client: redis.Redis, handbacks: int = 10) -> dict:
    """`{"now", "dead_after_s", "nodes": [...], "handbacks": [...]}`.

    Each node: its name, seconds since its last beat, `alive` (beat within the dead-after
    period) and what it holds (task, id, series, queue, eta). Each hand-back (newest
    first): the lost node, when (`at`, Redis time), how long it had been silent, which node
    gave its messages back, and what they were.
    """
    sec, usec = client.time()
    now = sec + usec / 1e6
    dead_after = lv.dead_after_s()
    nodes = []
    for raw, beat in client.zrange(lv.NODES, 0, -1, withscores=True):
        node = raw.decode()
        tags = sorted(t.decode() for t in client.smembers(lv.held(node)))
        payloads = client.hmget(UNACKED, tags) if tags else []
        nodes.append(
            {
                "node": node,
                "silent_s": round(now - beat, 1),
                "alive": now - beat < dead_after,
                "holds": [lv.describe_message(p) for p in payloads if p is not None],
            }
        )
    records = [json.loads(r) for r in client.lrange(lv.HANDBACKS, 0, handbacks - 1)]
    return {"now": round(now, 3), "dead_after_s": dead_after, "nodes": nodes, "handbacks": records}


def format_holders(view: dict) -> list[str]:
    """The same as lines for the terminal."""
    lines = []
    for n in view["nodes"]:
        state = "alive" if n["alive"] else f"SILENT {n['silent_s']:.0f}s"
        held = ", ".join(h.get("series") or h.get("task") or "?" for h in n["holds"]) or "-"
        lines.append(f"  node {n['node']} ({state}): holds {held}")
    for h in view["handbacks"]:
        what = ", ".join(m.get("series") or m.get("task") or "?" for m in h["handed_back"]) or "-"
        ago = view["now"] - h["at"]
        lines.append(
            f"  lost {h['node']} {ago:.0f}s ago (silent {h['silent_s']}s): "
            f"{len(h['handed_back'])} handed back by {h['by']}: {what}"
        )
    return lines
