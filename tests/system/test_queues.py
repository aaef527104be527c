"""Workers take their queues from the configuration, and a queue nobody consumes is seen:
real redis-server, real `celery worker` processes, the real CLI."""

from __future__ import annotations

import json

import pytest
from helpers import cli, wait_until
from kombu.transport.redis import Channel

from backfill.app import app
from backfill.status import queue_lengths
from core import keys
from core.keys import queue_order


def active_queues(timeout: float = 2.0) -> dict[str, list[str]]:
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {node: [q["name"] for q in queues] for node, queues in replies.items()}


@pytest.mark.slow
def test_a_plain_worker_consumes_every_configured_queue_in_priority_order(redis_url, start_workers):
    (w,) = start_workers(1)  # no -Q, like the compose file, the Dockerfile and the README
    assert "-Q" not in w.args
    consumed = active_queues()
    assert list(consumed.values()) == [queue_order()], consumed


@pytest.mark.slow
def test_an_outdated_queue_list_is_reported_until_a_plain_worker_takes_the_refreshes(
    rclient, redis_url, sim, start_workers
):
    env = {"REDIS_URL": redis_url}
    outdated = [q for q in queue_order() if q != keys.live_queue("5m")]
    start_workers(1, queues=outdated)  # answers pings, looks healthy, never takes live.5m
    # a refresh as the keeper's fan-out sends it at a 5m close (its options spelled out: the
    # check is about the queue, not about the task's arguments)
    options = {"candle_count": 100, "min_candles": 60, "user_id": 1, "exchange_id": 1}
    for priority in (None, 9):  # 9: kombu's priority sub-queue `backfill.live.5m\x06\x169`
        app.send_task(
            keys.REFRESH_TASK,
            args=("BTC-USD", "5m", options),
            queue=keys.live_queue("5m"),
            priority=priority,
        )
    assert rclient.llen("backfill.live.5m") == 1
    assert rclient.llen(f"backfill.live.5m{Channel.sep}9") == 1
    expected = [{"queue": "backfill.live.5m", "messages": 2}]
    warning = "warning: no live worker consumes backfill.live.5m (2 messages)"

    health = cli("health", env=env)
    assert health.returncode == 1, (health.stdout, health.stderr)
    report = json.loads(health.stdout)
    assert report["ok"] is False and len(report["workers"]) == 1
    assert report["unconsumed_queues"] == expected
    assert warning in health.stderr

    status = cli("status", "--json", env=env)
    assert json.loads(status.stdout)["unconsumed_queues"] == expected
    assert warning in status.stderr
    text = cli("status", env=env)
    assert warning in text.stderr and "celery -A backfill worker" in text.stderr

    # nothing took them meanwhile
    assert queue_lengths(rclient, ["backfill.live.5m"]) == {"backfill.live.5m": 2}

    start_workers(1)  # a plain worker: it consumes every configured queue
    wait_until(
        lambda: queue_lengths(rclient, ["backfill.live.5m"]) == {"backfill.live.5m": 0},
        60,
        "the plain worker to take both refreshes",
    )
    health = cli("health", "--min-workers", "2", env=env)
    assert health.returncode == 0, (health.stdout, health.stderr)
    assert json.loads(health.stdout)["unconsumed_queues"] == []
    assert "warning" not in health.stderr
    status = cli("status", "--json", env=env)
    assert json.loads(status.stdout)["unconsumed_queues"] == []
    assert "warning" not in status.stderr
