"""The run store against a real Redis: outcomes recorded in one call, any number at once."""

from __future__ import annotations

from core.outcome import Outcome
from core.run import RUN_TTL_S, RunStore


def _outcome(i: int) -> Outcome:
    name = f"SYN{i:04d}-USD:5m"
    return Outcome(series=name, symbol=name[:-3], timeframe="5m", mode="fresh", ready=True)


def test_a_dispatch_records_thousands_of_fresh_series_at_once(rclient):
    """More pairs than one Lua `unpack` takes (~8,000 values): every one is stored, the key
    expires with the run, and one progress message counts them all."""
    runs = RunStore(rclient)
    watcher = rclient.pubsub()
    watcher.subscribe("backfill:progress:r1")
    assert watcher.get_message(timeout=5)["type"] == "subscribe"  # listening before the record
    many = [_outcome(i) for i in range(5000)]
    runs.record("r1", *many)
    got = runs.outcomes("r1")
    assert len(got) == 5000
    assert got["SYN4999-USD:5m"] == many[-1]
    assert 0 < rclient.ttl("backfill:run:r1:outcomes") <= RUN_TTL_S
    message = watcher.get_message(timeout=5)
    assert message is not None and message["data"] == b"5000"


def test_a_series_outcome_replaces_its_earlier_one(rclient):
    runs = RunStore(rclient)
    runs.record("r2", _outcome(1))
    later = Outcome(series="SYN0001-USD:5m", symbol="SYN0001-USD", timeframe="5m",
                    status="failed", error="boom")  # fmt: skip
    runs.record("r2", later)
    assert runs.outcomes("r2") == {"SYN0001-USD:5m": later}
    assert runs.completed("r2") == 1
