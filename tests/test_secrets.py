"""Secrets: with an EC key and an Ed25519 key, no part of the private key reaches Redis
(broker messages, results, cache, run records), the logs, or task arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from backfill.dispatch import dispatch
from backfill.gate import wait_ready
from backfill.settings import BackfillConfig

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


def assert_no_fragment(text: str, fragments: set[str], where: str) -> None:
    hits = [f for f in fragments if f in text]
    assert not hits, f"private key material found in {where}: {hits[:3]}"


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
    start_workers(2, env=env)
    result = wait_ready(rclient, queued.run_id, timeout=60)
    assert result.exit_code == 0, result.summary
    assert sim.stats()["requests_by_endpoint"].get("private", 0) >= 4  # the key was used
    assert_no_fragment(redis_dump(redis_url), fragments, "Redis after the run")
    logs = "\n".join(p.read_text() for p in Path(tmp_path).glob("worker*.log"))
    assert "backfill_symbol_complete" in logs
    assert_no_fragment(logs, fragments, "worker logs")
