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
import os

from core import keys

BEAT_S = 1.0
DEAD_AFTER_S = 8.0  # 8 missed beats: a busy host's hiccup is not a death
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
    """`BACKFILL_NODE_DEAD_AFTER_S` (default 8 s): silence that makes a node dead."""
    raw = os.environ.get("BACKFILL_NODE_DEAD_AFTER_S", "")
    return max(3 * BEAT_S, float(raw)) if raw.strip() else DEAD_AFTER_S


# KEYS: nodes, held(node), unacked_index, unacked   ARGV: node
# Beat, re-score the node's held tags (XX: never resurrect an acked one) and forget tags
# no longer in `unacked` (acked elsewhere, or restored by kombu's own backstop).
BEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', KEYS[1], now, ARGV[1])
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HEXISTS', KEYS[4], tag) == 1 then
    redis.call('ZADD', KEYS[3], 'XX', now, tag)
  else
    redis.call('SREM', KEYS[2], tag)
  end
end
return tostring(now)
"""

# KEYS: held(node), unacked_index, unacked   ARGV: tag
# An ack (or reject without requeue) removes kombu's records only if the node still holds
# the tag; otherwise the message was handed back and may be someone else's by now.
ACK_LUA = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 1
end
return 0
"""

# KEYS: held(node), unacked_index, unacked, nodes, queue...
# ARGV: tag, payload to push, node, cutoff ('' = no liveness check), leftmost ('1'/'0')
# Move one held message back to its queue(s): only while `node` holds it and, for a
# sweep, only while `node` is still silent since `cutoff`. Returns 1 moved, 0 not held,
# -1 the node beat again.
HANDBACK_LUA = """
if ARGV[4] ~= '' then
  local s = redis.call('ZSCORE', KEYS[4], ARGV[3])
  if s and tonumber(s) >= tonumber(ARGV[4]) then return -1 end
end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local held = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if not held then return 0 end
for i = 5, #KEYS do
  if ARGV[5] == '1' then redis.call('LPUSH', KEYS[i], ARGV[2])
  else redis.call('RPUSH', KEYS[i], ARGV[2]) end
end
return 1
"""

# KEYS: nodes, held(node), handbacks   ARGV: node, cutoff, record ('' = none), keep
# Forget a dead node once it holds nothing and is still silent; log the hand-back.
FORGET_LUA = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and s and tonumber(s) >= tonumber(ARGV[2]) then return 0 end
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
end
return 1
"""


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
