"""The budget's reserve: send slots held back for live work.

Live work is what somebody is waiting for right now: the run's first timeframe (the
indicator service starts on it) and the refreshes of a bucket close. Whoever enqueues
live work holds back one slot per job here, for a short while; the fleet budget
(`workers/budget.lua`) lets only live requests take those slots, each taking one, and
every other request sees the limit minus what is still held. The hold expires on its
own, so a job that never runs cannot starve the rest for long.
"""

from __future__ import annotations

import redis

from core import keys

HOLD_TTL_S = 30.0


def hold(client: redis.Redis, budget_name: str, slots: int) -> None:
    """Hold `slots` more send slots of `budget_name` back for live work."""
    if slots <= 0:
        return
    key = keys.budget(budget_name).reserve
    pipe = client.pipeline()
    pipe.incrby(key, slots)
    pipe.pexpire(key, int(HOLD_TTL_S * 1000))
    pipe.execute()
