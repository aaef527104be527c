"""Which queues hold messages that no live worker consumes, against a real Redis (the
workers' replies stand in: tests/system/test_queues.py asks real workers)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kombu.transport.redis import Channel

from backfill.status import queue_lengths, unconsumed_queues, unconsumed_warning
from core.keys import queue_order


def fake_app(replies: dict | None, transport_options: dict | None = None):
    """The parts of the Celery app the check reads; `replies=None`: asking fails the test."""

    def inspect(timeout: float):
        assert timeout == 0.5
        if replies is None:
            pytest.fail("the workers were asked although no queue holds messages")
        return SimpleNamespace(active_queues=lambda: replies)

    return SimpleNamespace(
        conf=SimpleNamespace(
            task_queues=[SimpleNamespace(name=q) for q in queue_order()],
            broker_transport_options=transport_options or {"queue_order_strategy": "priority"},
        ),
        control=SimpleNamespace(inspect=inspect),
    )


def worker(*queues: str) -> list[dict]:
    return [{"name": q, "routing_key": q} for q in queues]


def test_lengths_count_kombus_priority_sub_queues(rclient):
    rclient.rpush("backfill.5m", "a", "b")
    rclient.rpush(f"backfill.5m{Channel.sep}3", "c")
    rclient.rpush(f"backfill.5m{Channel.sep}9", "d")
    rclient.rpush("backfill.live.1h", "e")
    lengths = queue_lengths(rclient, ["backfill.5m", "backfill.live.1h", "backfill.1d"])
    assert lengths == {"backfill.5m": 4, "backfill.live.1h": 1, "backfill.1d": 0}


def test_lengths_follow_the_transport_options(rclient):
    rclient.rpush("pfx:backfill.5m", "a")
    rclient.rpush(f"pfx:backfill.5m{Channel.sep}5", "b")
    rclient.rpush(f"backfill.5m{Channel.sep}9", "not with these options")
    opts = {"priority_steps": [0, 5], "global_keyprefix": "pfx:"}
    assert queue_lengths(rclient, ["backfill.5m"], opts) == {"backfill.5m": 2}


def test_empty_queues_ask_no_worker(rclient):
    assert unconsumed_queues(rclient, fake_app(None), timeout=0.5) == []


def test_only_queues_with_messages_and_no_consumer_in_priority_order(rclient):
    rclient.rpush("backfill.5m", "a")  # consumed by w2
    rclient.rpush("backfill.1d", "a", "b", "c")
    rclient.rpush("backfill.live.5m", "a")
    rclient.rpush(f"backfill.live.5m{Channel.sep}9", "b")
    replies = {
        "w1@h": worker(*(q for q in queue_order() if q not in ("backfill.live.5m", "backfill.1d"))),
        "w2@h": worker("backfill.5m"),
    }
    got = unconsumed_queues(rclient, fake_app(replies), timeout=0.5)
    assert got == [
        {"queue": "backfill.live.5m", "messages": 2},
        {"queue": "backfill.1d", "messages": 3},
    ]
    text = unconsumed_warning(got)
    assert "backfill.live.5m (2 messages), backfill.1d (3 messages)" in text
    assert text.startswith("warning: no live worker consumes")
    assert "(1 message)" in unconsumed_warning([{"queue": "backfill.1d", "messages": 1}])


def test_no_worker_answering_leaves_every_waiting_queue_unconsumed(rclient):
    rclient.rpush("backfill.control", "a")
    got = unconsumed_queues(rclient, fake_app({}), timeout=0.5)
    assert got == [{"queue": "backfill.control", "messages": 1}]
