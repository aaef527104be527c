"""The Lua loader: each script's ARGV names come from its own `local` lines."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from workers.lua import LuaScript, _source


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).parents[2] / "workers").glob("*.lua"))
)
def test_every_script_names_its_arguments(name):
    text, argv, nkeys = _source(name)
    assert argv and nkeys
    body = text.split("\n")
    # after the named locals, the body never reads a numbered ARGV again (but the tail)
    named = [i for i, line in enumerate(body) if line.startswith("local ") and "ARGV[" in line]
    rest = "\n".join(body[max(named) + 1 :])
    assert all(f"ARGV[{i}]" not in rest for i in range(1, len(argv) + 1))


def test_a_missing_or_unknown_argument_fails_before_redis():
    script = LuaScript(fakeredis.FakeRedis(), "breaker.lua")
    with pytest.raises(TypeError, match=r"missing ARGV \['series'\].*unknown ARGV \['serie'\]"):
        script(["a", "b"], op="allow", threshold=5, cooldown=1000, serie="")
    with pytest.raises(TypeError, match="2 keys"):
        script(["a"], op="allow", threshold=5, cooldown=1000, series="")
