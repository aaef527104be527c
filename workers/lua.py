"""One loader for the data plane's Lua scripts, called with named KEYS and ARGV.

Each script names its values as locals at its top (`local limit = tonumber(ARGV[1])`):
that line is the script's signature. The loader reads those names from the file, so a
caller passes `limit=...` and a missing, extra or misspelt name fails loudly here, never
as a wrong value inside Redis. Scripts are registered once per client (EVALSHA).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

_ARGV = re.compile(r"^local (\w+) *= *(?:tonumber\()?ARGV\[(\d+)\]", re.MULTILINE)
_KEYS = re.compile(r"^local (\w+) *= *KEYS\[(\d+)\]", re.MULTILINE)


@cache
def _source(name: str) -> tuple[str, tuple[str, ...], int]:
    """The script's text, its ARGV names in order, and how many KEYS it names."""
    text = resources.files("workers").joinpath(name).read_text()
    found = sorted((int(i), n) for n, i in _ARGV.findall(text))
    if [i for i, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{name}: ARGV locals must be named 1..n in order, found {found}")
    return text, tuple(n for _, n in found), len(_KEYS.findall(text))


class LuaScript:
    """A script file of this package, bound to one Redis client."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.name = name
        text, self.argv, self.nkeys = _source(name)
        self._script = client.register_script(text)

    def __call__(
        self,
        keys: Sequence[str],
        rest: Sequence[object] = (),
        *,
        more_keys: Sequence[str] = (),
        client: redis.Redis | None = None,
        **argv: object,
    ) -> Any:
        """Run with `keys` (in the script's order) and every named ARGV value; `rest`
        follows them (a script that takes a variable tail, such as candle pairs), as
        `more_keys` follow the named keys. `client`: run on another connection."""
        if set(argv) != set(self.argv):
            missing = sorted(set(self.argv) - set(argv))
            extra = sorted(set(argv) - set(self.argv))
            raise TypeError(f"{self.name}: missing ARGV {missing}, unknown ARGV {extra}")
        if len(keys) != self.nkeys:
            raise TypeError(f"{self.name}: takes {self.nkeys} keys, got {len(keys)}")
        args = [argv[n] for n in self.argv] + list(rest)
        return self._script(keys=[*keys, *more_keys], args=args, client=client)
