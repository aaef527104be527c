"""The liveness scripts against a real Redis (core/liveness.py, workers/liveness.py): who
holds a message, what an ack may delete, and a sweep that moves each message once."""

from __future__ import annotations

import base64
import json
import threading
from types import SimpleNamespace

import pytest
from kombu.utils.json import dumps

from backfill.holders import format_holders, holders
from core import keys
from core import liveness as lv
from workers import liveness as wl
from workers.lua import LuaScript

QUEUE = "backfill.5m"


def payload(task_id: str, symbol: str = "BTC-USD", tf: str = "5m", eta: str | None = None):
    body = [[{"run_id": "r1", "symbol": symbol, "timeframe": tf}], {}, {}]
    message = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "headers": {"task": keys.SERIES_TASK, "id": task_id, "eta": eta, "retries": 0},
        "properties": {"body_encoding": "base64", "delivery_info": {"routing_key": QUEUE}},
    }
    return dumps([message, "", QUEUE])  # the anonymous exchange: routing key = queue


def channel():
    """The kombu Channel parts a hand-back uses: key names, lookup and priority."""
    return SimpleNamespace(
        unacked_key="unacked",
        unacked_index_key="unacked_index",
        _get_message_priority=lambda m, reverse=False: 0,
        _q_for_pri=lambda q, pri: q,
        _lookup=lambda ex, rk: [rk],
    )


def receive(rclient, node: str, tag: str, task_id: str, at: float = 1.0) -> None:
    """What LeasedQoS.append writes at receipt."""
    pipe = rclient.pipeline()
    pipe.zadd("unacked_index", {tag: at})
    pipe.hset("unacked", tag, payload(task_id))
    pipe.sadd(lv.held(node), tag)
    pipe.zadd(lv.NODES, {node: at}, nx=True)
    pipe.execute()


def beat(rclient, node: str) -> float:
    keys_ = [lv.NODES, lv.held(node), "unacked_index", "unacked"]
    return float(LuaScript(rclient, "liveness_beat.lua")(keys_, node=node))


def test_beat_renews_held_messages_and_forgets_gone_ones(rclient):
    receive(rclient, "a", "t1", "id1")
    receive(rclient, "a", "t2", "id2")
    rclient.hdel("unacked", "t2")  # acked by a node that held it after a hand-back
    now = beat(rclient, "a")
    assert rclient.zscore("unacked_index", "t1") == pytest.approx(now)  # kombu's 900 s: never
    assert rclient.zscore("unacked_index", "t2") == 1.0  # XX: nothing resurrected
    assert rclient.smembers(lv.held("a")) == {b"t1"}
    assert rclient.zscore(lv.NODES, "a") == pytest.approx(now)


def test_ack_deletes_only_what_the_node_still_holds(rclient):
    script = LuaScript(rclient, "liveness_ack.lua")

    def ack(keys, args):
        return script(keys, tag=args[0])

    receive(rclient, "a", "t1", "id1")
    rclient.srem(lv.held("a"), "t1")  # swept: handed back, now b's
    rclient.sadd(lv.held("b"), "t1")
    assert ack(keys=[lv.held("a"), "unacked_index", "unacked"], args=["t1"]) == 0
    assert rclient.hexists("unacked", "t1")  # b's record survives a's late ack
    assert ack(keys=[lv.held("b"), "unacked_index", "unacked"], args=["t1"]) == 1
    assert not rclient.hexists("unacked", "t1") and rclient.zcard("unacked_index") == 0


def test_hand_back_moves_once_to_the_front_and_respects_a_new_beat(rclient):
    receive(rclient, "dead", "t1", "id1")
    rclient.rpush(QUEUE, "older")
    chan = channel()
    # the node beat after the cutoff: alive after all
    assert wl.hand_back(rclient, chan, "dead", "t1", cutoff="0.5") == -1
    assert wl.hand_back(rclient, chan, "dead", "t1", cutoff="5") == 1
    assert wl.hand_back(rclient, chan, "dead", "t1", cutoff="5") == 0  # once
    assert rclient.llen(QUEUE) == 2
    restored = json.loads(rclient.rpop(QUEUE))  # BRPOP's end: next to run
    assert restored["headers"]["id"] == "id1" and restored["headers"]["redelivered"] is True
    assert not rclient.hexists("unacked", "t1") and not rclient.smembers(lv.held("dead"))


def test_concurrent_sweepers_move_each_message_once(rclient, redis_url):
    import redis

    for i in range(20):
        receive(rclient, "dead", f"t{i}", f"id{i}")
    sweepers = [
        wl.Liveness(SimpleNamespace(), f"s{i}@host") for i in range(4)
    ]  # no thread started: sweep_node is called directly, four at once

    def sweep(s):
        s.sweep_node(redis.Redis.from_url(redis_url), channel(), "dead", cutoff=5.0, now=14.0)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    ids = sorted(json.loads(m)["headers"]["id"] for m in rclient.lrange(QUEUE, 0, -1))
    assert ids == sorted(f"id{i}" for i in range(20))  # each exactly once
    # a sweeper that lost the lock race may still forget the node once it holds nothing
    assert rclient.hlen("unacked") == 0 and rclient.zscore(lv.NODES, "dead") is None
    [record] = [
        json.loads(r) for r in rclient.lrange(lv.HANDBACKS, 0, -1) if json.loads(r)["handed_back"]
    ]
    assert record["node"] == "dead" and len(record["handed_back"]) == 20
    assert record["silent_s"] == 13.0


def test_holders_names_what_each_node_holds_and_the_handbacks(rclient):
    receive(rclient, "a@h", "t1", "id1")
    beat(rclient, "a@h")
    receive(rclient, "b@h", "t2", "id2", at=1.0)  # silent since 1970
    wl.Liveness(SimpleNamespace(), "a@h").sweep_node(
        rclient, channel(), "b@h", cutoff=2.0, now=20.0
    )
    view = holders(rclient)
    [a] = view["nodes"]
    assert a["node"] == "a@h" and a["alive"]
    assert a["holds"] == [
        {"task": keys.SERIES_TASK, "id": "id1", "queue": QUEUE, "eta": None, "retries": 0,
         "series": "BTC-USD:5m"}
    ]  # fmt: skip
    [h] = view["handbacks"]
    assert h["node"] == "b@h" and h["by"] == "a@h" and h["handed_back"][0]["id"] == "id2"
    lines = format_holders(view)
    assert "BTC-USD:5m" in lines[0] and "lost b@h" in lines[1]


def test_describe_message_reads_both_argument_forms():
    assert lv.describe_message(payload("x", "ETH-USD", "1h"))["series"] == "ETH-USD:1h"
    old = json.loads(payload("y"))
    old[0]["body"] = base64.b64encode(
        json.dumps([["r1", "SOL-USD", "4h", {}], {}, {}]).encode()
    ).decode()
    assert lv.describe_message(json.dumps(old))["series"] == "SOL-USD:4h"
    assert lv.describe_message(b"not json") == {"task": None}
    assert lv.describe_message(None) == {}
