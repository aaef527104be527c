"""Issue 22, items 1-4, with a real worker and a real Redis: what is already in the cache,
and an exchange answer that contradicts it, never make a series "ready" that is not.

1. junk members at the right scores (and members whose score is not their own timestamp)
   are not candles: the series is fetched and the junk removed in the write;
2. a key of another type fails that series, naming the key; the run and `status` go on;
3. a tail answer without the bucket the cache holds is retried, never trusted;
4. an exchange `Date` a day behind cannot produce a ready series that is a day old.
"""

from __future__ import annotations

import json

import pytest
import redis
from helpers import cli
from hostile import Handler, hostile_workers, rows

from core import keys
from core.config import BackfillConfig
from core.member import validate_member
from core.series import Series

pytestmark = pytest.mark.slow
class OmittingHandler(Handler):
    def _omit(self, p, g, start, end, now, n, product):
        """The true rows without the bucket at `start` (UNIX s) once the cache holds it."""
        self._candles([r for r in rows(g, start, end, now) if int(r["start"]) != p["at"]])


@pytest.fixture(scope="module")
def exchange(redis_server, tmp_path_factory):
    logs = tmp_path_factory.mktemp("ready-means-right")
    with hostile_workers(redis_server.url, logs, OmittingHandler, name="rmr") as (server, env, _):
        yield server, redis_server.url, redis.Redis.from_url(redis_server.url), env


def run(
    url: str, client: redis.Redis, symbols: tuple[str, ...], tf: str = "5m", n: int = 100
) -> dict:
    from backfill.dispatch import dispatch
    from backfill.gate import wait_ready

    config = BackfillConfig(symbols=symbols, timeframes=(tf,), candle_count=n)
    d = dispatch(config, redis_url=url)
    result = wait_ready(client, d.run_id, timeout=90)
    assert result.summary is not None, "the gate did not open"
    return result.summary


def outcome(client: redis.Redis, summary: dict, series: str) -> dict:
    raw = client.hget(keys.run(summary["run_id"], "outcomes"), series)
    return json.loads(raw)


def every_member_parses(client: redis.Redis, s: Series) -> None:
    for raw, score in client.zrange(s.cache_key(), 0, -1, withscores=True):
        assert validate_member(raw, s, s.cache_key())["timestamp"] == score


def test_1_junk_at_the_right_scores_is_not_ready_and_is_removed(exchange):
    server, url, client, _ = exchange
    s, off = Series.of("JUNK-USD", "5m"), Series.of("OFFSET-USD", "5m")
    run(url, client, ("JUNK-USD", "OFFSET-USD"))  # filled and current
    members = client.zrange(s.cache_key(), 0, -1, withscores=True)
    pipe = client.pipeline()
    for raw, score in members:  # every member replaced by junk at its own score
        pipe.zrem(s.cache_key(), raw)
        pipe.zadd(s.cache_key(), {f"junk-{int(score)}": score})
    for raw, score in client.zrange(off.cache_key(), -5, -1, withscores=True):
        pipe.zadd(off.cache_key(), {raw: score - 300_000 * 500})  # valid JSON, wrong score
    pipe.execute()
    hits = dict(server.hits)
    summary = run(url, client, ("JUNK-USD", "OFFSET-USD"))
    assert sorted(summary["ready"]) == ["JUNK-USD:5m", "OFFSET-USD:5m"], summary
    for series, name in ((s, "JUNK-USD"), (off, "OFFSET-USD")):
        o = outcome(client, summary, series.name)
        assert o["mode"] == "cold" and o["requests"] >= 1, o  # never "fresh" on junk
        assert server.hits[name] > hits.get(name, 0)
        assert o.get("gaps", 0) >= 0, o
        every_member_parses(client, series)  # the junk is gone, none survives
    assert client.zcard(s.cache_key()) >= 100


def test_2_a_key_of_another_type_fails_its_series_and_the_run_goes_on(exchange):
    _, url, client, env = exchange
    s = Series.of("WTYPE-USD", "5m")
    client.delete(s.cache_key())
    client.set(s.cache_key(), "not a sorted set")
    summary = run(url, client, ("WTYPE-USD", "FINE-USD"))
    assert summary["ready"] == ["FINE-USD:5m"], summary
    (failed,) = summary["failed"]
    assert failed["series"] == "WTYPE-USD:5m" and s.cache_key() in failed["error"], failed
    assert client.get(s.cache_key()) == b"not a sorted set"  # not ours: untouched
    st = cli("status", "--json", env={**env, "BACKFILL_SYMBOLS": "WTYPE-USD,FINE-USD",
                                      "BACKFILL_TIMEFRAMES": "5m"})  # fmt: skip
    assert st.returncode in (0, 3) and "Traceback" not in st.stderr, st.stderr


def test_3_a_tail_answer_without_the_cached_bucket_is_not_trusted(exchange):
    server, url, client, _ = exchange
    s = Series.of("GAPT-USD", "5m")
    run(url, client, ("GAPT-USD",))
    newest = client.zrange(s.cache_key(), -4, -1, withscores=True)
    held = int(newest[0][1])  # the cache now ends 3 buckets back: a tail fetch from here
    client.zremrangebyscore(s.cache_key(), held + 1, "+inf")
    checked = keys.checked(1, 1, s.symbol, "5m")
    client.hset(checked, "upto", held)
    server.behave("GAPT-USD", "omit", at=held // 1000)
    summary = run(url, client, ("GAPT-USD",), n=90)  # 97 held: enough for a tail fetch
    assert summary["ready"] == [] and summary["stale_at_gate"] == [], summary
    (failed,) = summary["failed"]
    assert "lacks bucket" in failed["error"], failed
    assert int(client.hget(checked, "upto")) == held  # the mark did not move past it
    assert int(client.zrange(s.cache_key(), -1, -1, withscores=True)[0][1]) == held


def test_4_an_exchange_clock_a_day_behind_gives_no_ready_series(exchange):
    server, url, client, _ = exchange
    server.behave("DAYB-USD", "date", offset=-86400)
    summary = run(url, client, ("DAYB-USD",), tf="1h")
    assert summary["ready"] == [], summary
    (nr,) = summary["not_ready"] or summary["failed"]
    assert nr["series"] == "DAYB-USD:1h"
    assert "lags" in (nr.get("reason") or "") + (nr.get("error") or ""), nr
