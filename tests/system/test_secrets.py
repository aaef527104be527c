"""Secrets: with an EC key and an Ed25519 key, no part of the private key reaches Redis
(broker messages, results, cache, run records), the logs, or task arguments.

Redis is watched with MONITOR for the whole run, so every message a worker publishes is
seen, retries included (a retry re-publishes the task's arguments), even though it is gone
from Redis when the run ends. Broker message bodies are base64: every base64 run in what
Redis saw is decoded and searched too."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import threading
from pathlib import Path

import pytest
import redis

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from core.config import BackfillConfig

pytestmark = pytest.mark.slow
WINDOW = 16


def key_fragments(private_key: str) -> set[str]:
    """Every 16-character piece of the key material (PEM body or raw base64)."""
    body = re.sub(r"-----[A-Z ]+-----|\\n|\s", "", private_key)
    assert len(body) > 40
    return {body[i : i + WINDOW] for i in range(len(body) - WINDOW + 1)}


def redis_dump(url: str) -> str:
    """Every key and value in every database, as text."""
    out = []
    for db in range(16):
        c = redis.Redis.from_url(url, db=db)
        for key in c.scan_iter(count=1000):
            kind = c.type(key).decode()
            read = {
                "string": c.get,
                "hash": c.hgetall,
                "list": lambda k, c=c: c.lrange(k, 0, -1),
                "set": c.smembers,
                "zset": lambda k, c=c: c.zrange(k, 0, -1, withscores=True),
            }
            value = read[kind](key) if kind in read else b""
            out.append(f"{db} {key!r} {value!r}")
    return "\n".join(out)


def with_decoded_base64(text: str) -> str:
    """The text, plus every base64 run in it decoded (kombu base64-encodes message bodies)."""
    decoded = []
    for blob in re.findall(r"[A-Za-z0-9+/]{24,}={0,2}", text):
        with contextlib.suppress(binascii.Error, ValueError):
            decoded.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode("latin-1"))
    return "\n".join([text, *decoded])


def assert_no_fragment(text: str, fragments: set[str], where: str) -> None:
    text = with_decoded_base64(text)
    hits = [f for f in fragments if f in text]
    assert not hits, f"private key material found in {where}: {hits[:3]}"


class RedisMonitor:
    """Every command any client sends to Redis, as MONITOR reports it, until stopped."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "MONITOR did not start"

    def _run(self) -> None:
        with self.client.monitor() as m:
            self._ready.set()
            while not self._stop.is_set():
                self.commands.append(m.next_command()["command"])

    def stop(self) -> str:
        self._stop.set()
        self.client.ping()  # wakes the reader
        self._thread.join(10)
        return "\n".join(self.commands)


@pytest.mark.parametrize("key_type,via", [("ec", "file"), ("ed25519", "file"), ("ec", "env")])
def test_no_private_key_material_anywhere(
    rclient, redis_url, sim, start_workers, tmp_path, key_type, via
):
    key_path = tmp_path / f"{key_type}.json"
    sim.mint_key(key_type, str(key_path))
    key = json.loads(key_path.read_text())
    fragments = key_fragments(key["privateKey"])
    if via == "file":
        env = {"COINBASE_API_KEY_FILE": str(key_path)}
    else:  # the pasted-into-an-env-var form, with literal \n
        env = {
            "COINBASE_API_KEY_FILE": "",
            "COINBASE_API_KEY_NAME": key["name"],
            "COINBASE_API_PRIVATE_KEY": key["privateKey"].replace("\n", "\\n"),
        }
    config = BackfillConfig(symbols=("BTC-USD", "ETH-USD"), timeframes=("5m", "1h"))
    queued = dispatch(config, redis_url=redis_url)  # no worker yet: the messages wait in Redis
    assert rclient.llen("backfill.5m") == 2
    assert_no_fragment(redis_dump(redis_url), fragments, "queued broker messages")
    sim.configure(p500=0.5)  # seeded: some requests fail, and their tasks are retried
    monitor = RedisMonitor(redis_url)
    try:
        start_workers(2, env=env)
        result = wait_ready(rclient, queued.run_id, timeout=60)
    finally:
        seen = monitor.stop()
    assert result.exit_code == 0, result.summary
    assert result.summary["retries"] >= 1  # retry messages were published
    assert sim.stats()["requests_by_endpoint"].get("private", 0) >= 5  # the key was used
    assert "backfill.series" in with_decoded_base64(seen)  # the watch saw task messages
    assert_no_fragment(seen, fragments, "what the workers sent to Redis")
    assert_no_fragment(redis_dump(redis_url), fragments, "Redis after the run")
    logs = "\n".join(p.read_text() for p in Path(tmp_path).glob("worker*.log"))
    assert "backfill_symbol_complete" in logs and "backfill_retry" in logs
    assert_no_fragment(logs, fragments, "worker logs")
