"""Once per close, whatever runs twice: a claim in Redis, owned by a task id.

The first task to ask gets it; a duplicate (a second beat, a redelivered fan-out) does
not; a redelivery of the owner itself (its worker died mid-task) gets it again.
"""

from __future__ import annotations

import redis


def claim(client: redis.Redis, key: str, owner: str | None, ttl_s: int) -> bool:
    """True when `owner` holds `key` (just taken, or already its own)."""
    owner = owner or "-"
    if client.set(key, owner, nx=True, ex=ttl_s):
        return True
    held = client.get(key)
    return held is not None and held.decode() == owner
