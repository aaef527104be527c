"""A lost worker node's messages come back in seconds, not after the visibility timeout.

The worker side of `core/liveness.py` (read that first). Loaded by every worker through
the app's `include`; nothing happens on import: `worker_init` installs `LeasedQoS` as the
Redis channels' QoS (it records which node holds each message and acks only what the
node still holds), `worker_ready` starts the beat-and-sweep thread of this node, and
`worker_shutdown` (a warm shutdown, after kombu gave its messages back) stops it and
removes the node.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
import uuid

import redis
from celery.signals import worker_init, worker_ready, worker_shutdown
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from kombu.utils.json import dumps, loads

from core import liveness as lv
from core.logs import log_event
from workers.lua import LuaScript

log = logging.getLogger("backfill.liveness")
_node: str | None = None  # this worker node's name, once worker_init ran
_thread: Liveness | None = None


_scripts: dict[str, LuaScript] = {}


def _script(client: redis.Redis, name: str) -> LuaScript:
    """The liveness script `workers/liveness_<name>.lua`, run on `client`."""
    if name not in _scripts:
        _scripts[name] = LuaScript(client, f"liveness_{name}.lua")
    return functools.partial(_scripts[name], client=client)


def restore_target(channel, raw: bytes) -> tuple[list[str], str]:
    """kombu's own restore, split in two: the queue keys and payload to push (as
    `Channel._do_restore_message` builds them), so that one script can move it."""
    message, exchange, routing_key = loads(raw)
    try:
        message["headers"]["redelivered"] = True
        message["properties"]["delivery_info"]["redelivered"] = True
    except KeyError:
        pass
    pri = channel._get_message_priority(message, reverse=False)
    queues = [channel._q_for_pri(q, pri) for q in channel._lookup(exchange, routing_key)]
    return queues, dumps(message)


def hand_back(client, channel, node: str, tag: str, cutoff: str = "", leftmost=False) -> int:
    """Move one message `node` holds back to its queue: 1 moved, 0 not held, -1 alive."""
    raw = client.hget(channel.unacked_key, tag)
    if raw is None:
        client.srem(lv.held(node), tag)
        return 0
    queues, payload = restore_target(channel, raw)
    keys = [lv.held(node), channel.unacked_index_key, channel.unacked_key, lv.NODES]
    return int(
        _script(client, "handback")(
            keys, more_keys=queues, tag=tag, payload=payload, node=node, cutoff=cutoff,
            leftmost="1" if leftmost else "0",
        )
    )  # fmt: skip


class LeasedQoS(kombu_redis.QoS):
    """kombu's Redis QoS, plus: each received tag is recorded as held by this node (in
    the same transaction as kombu's records), and ack / reject / warm-shutdown restore act
    only on tags this node still holds."""

    def append(self, message, delivery_tag):
        if _node is None:
            return super().append(message, delivery_tag)
        # kombu 5.7's QoS.append, with the node's held set in the same MULTI/EXEC.
        delivery = message.delivery_info
        payload = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
            pipe.hset(self.unacked_key, delivery_tag, payload)
            pipe.sadd(lv.held(_node), delivery_tag)
            pipe.zadd(lv.NODES, {_node: time.time()}, nx=True)  # first message before a beat
            pipe.execute()
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag):
        if _node is None:
            return super().ack(delivery_tag)
        self._drop(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if _node is None:
            return super().reject(delivery_tag, requeue)
        if requeue:
            self._give_back(delivery_tag, leftmost=True)
        else:
            self._drop(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client=None):
        if _node is None:
            return super().restore_unacked(client)
        for tag in list(self._delivered):
            self._give_back(tag)
        self._delivered.clear()

    def _drop(self, tag) -> None:
        with self.channel.conn_or_acquire() as client:
            keys = [lv.held(_node), self.unacked_index_key, self.unacked_key]
            _script(client, "ack")(keys, tag=tag)

    def _give_back(self, tag, leftmost: bool = False) -> None:
        with self.channel.conn_or_acquire() as client:
            hand_back(client, self.channel, _node, tag, leftmost=leftmost)


class Liveness(threading.Thread):
    """Beats for this node every `BEAT_S`; then hands back the messages of nodes silent
    for `dead_after_s()`. It sweeps only after it has itself beaten without a gap for
    that long: after a Redis outage (or a paused host) every node's beat is old, and
    the live ones must get the chance to beat again before anyone is declared dead."""

    def __init__(self, app, node: str) -> None:
        super().__init__(name="backfill-liveness", daemon=True)
        self.app, self.node = app, node
        self.dead_after = lv.dead_after_s()
        self.me = f"{node}:{uuid.uuid4().hex[:8]}"
        self._stop_event = threading.Event()
        self._conn = None
        self._up_since: float | None = None
        self._last_ok: float | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as e:  # Redis away, a bug: beat again next time
                self._up_since = None
                self._close()
                log.warning("liveness tick failed: %s: %s", type(e).__name__, e)
            if self._stop_event.wait(lv.BEAT_S):
                break
        self._close()

    @property
    def channel(self):
        if self._conn is None:
            self._conn = self.app.connection_for_write()
        return self._conn.default_channel

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.release()
            self._conn = None

    def tick(self) -> None:
        chan = self.channel
        client = chan.client
        keys = [lv.NODES, lv.held(self.node), chan.unacked_index_key, chan.unacked_key]
        now = float(_script(client, "beat")(keys, node=self.node))
        mono = time.monotonic()
        if self._last_ok is None or mono - self._last_ok > self.dead_after / 2:
            self._up_since = mono  # first beat, or a gap: wait a full period before judging
        self._last_ok = mono
        if self._up_since is not None and mono - self._up_since >= self.dead_after:
            self.sweep(client, chan, now)

    def sweep(self, client, chan, now: float) -> None:
        cutoff = now - self.dead_after
        for raw in client.zrangebyscore(lv.NODES, "-inf", f"({cutoff}"):
            node = raw.decode()
            if node != self.node:
                self.sweep_node(client, chan, node, cutoff, now)

    def sweep_node(self, client, chan, node: str, cutoff: float, now: float) -> None:
        """Hand back everything `node` holds, under a per-node lock (several sweepers:
        one works, and the scripts move each message once even without it)."""
        lock = lv.sweep_lock(node)
        if not client.set(lock, self.me, nx=True, px=int(self.dead_after * 2000)):
            return
        try:
            last = client.zscore(lv.NODES, node)
            moved = []
            for tag in client.smembers(lv.held(node)):
                raw = client.hget(chan.unacked_key, tag)
                result = hand_back(client, chan, node, tag.decode(), repr(cutoff))
                if result < 0:
                    return  # it beat again: alive after all
                if result > 0:
                    moved.append(lv.describe_message(raw))
            record = {
                "node": node,
                "at": round(now, 3),
                "last_beat": round(last, 3) if last else None,
                "silent_s": round(now - last, 3) if last else None,
                "by": self.node,
                "handed_back": moved,
            }
            forgotten = _script(client, "forget")(
                [lv.NODES, lv.held(node), lv.HANDBACKS],
                node=node, cutoff=repr(cutoff), record=json.dumps(record),
                keep=lv.HANDBACK_KEEP,
            )  # fmt: skip
            if moved or forgotten:
                log_event(
                    log,
                    "node_handback",
                    level=logging.WARNING,
                    node=node,
                    silent_s=record["silent_s"],
                    messages=len(moved),
                    series=[m.get("series") for m in moved if m.get("series")],
                )
        finally:
            if client.get(lock) == self.me.encode():
                client.delete(lock)

    def leave(self) -> None:
        """Warm shutdown: kombu gave the node's messages back; forget the node."""
        chan = self.channel
        _script(chan.client, "forget")(
            [lv.NODES, lv.held(self.node), lv.HANDBACKS],
            node=self.node, cutoff="", record="", keep=lv.HANDBACK_KEEP,
        )  # fmt: skip


@worker_init.connect
def _install(sender=None, **_: object) -> None:
    """Every Redis channel of this worker process records what this node holds."""
    global _node
    _node = sender.hostname
    kombu_redis.Channel.QoS = LeasedQoS


@worker_ready.connect
def _start(sender=None, **_: object) -> None:
    global _thread
    if _node is None or _thread is not None:
        return
    _thread = Liveness(sender.app, _node)
    _thread.start()


@worker_shutdown.connect
def _stop(sender=None, **_: object) -> None:
    global _thread
    if _thread is None:
        return
    _thread.stop()
    try:
        _thread.leave()
    except Exception as e:
        log.warning("could not deregister node %s: %s", _node, e)
    _thread._close()
    _thread = None
