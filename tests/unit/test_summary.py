"""The gate's summary from outcomes (pure), and text from outside made safe."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from core.errors import RateLimited
from core.outcome import Outcome
from core.summary import summarize
from core.text import MAX_TEXT, clean_text


def ok(series: str, ready: bool = True, **kw) -> Outcome:
    symbol, tf = series.split(":")
    return Outcome(series, symbol, tf, ready=ready, **kw)


def test_ready_only_when_every_series_is_ready():
    s = summarize("r1", [ok("BTC-USD:5m", requests=1), ok("ETH-USD:5m", requests=2)], 0.0)
    assert s["status"] == "ready" and s["ready"] == ["BTC-USD:5m", "ETH-USD:5m"]
    assert s["requests"] == 3 and s["by_timeframe"]["5m"]["ok"] == 2


def test_failed_and_not_ready_make_it_partial_with_reasons():
    failed = Outcome.failed("SOL-USD:1h", RateLimited("429", status=429), "retries_exhausted", 10)
    thin = ok("GHOST-USD:5m", ready=False, candles_cached=41, reason="only 41 closed candles")
    s = summarize("r2", [ok("BTC-USD:5m"), failed, thin])
    assert s["status"] == "partial" and s["completed"] == 3
    assert s["failed"] == [
        {
            "series": "SOL-USD:1h",
            "reason": "retries_exhausted",
            "error": failed.error,
            "retries": 10,
        }
    ]
    assert s["not_ready"] == [
        {"series": "GHOST-USD:5m", "candles": 41, "reason": "only 41 closed candles"}
    ]
    assert s["by_timeframe"]["1h"]["failed"] == 1


def test_outcomes_round_trip_through_json():
    o = ok("BTC-USD:5m", mode="tail", requests=1, newest_ts=1_700_000_000_000)
    assert Outcome.from_json(o.to_json()) == o
    assert "error" not in json.loads(o.to_json())  # unset fields stay out of the message


def test_clean_text_strips_controls_and_truncates():
    hostile = "\x1b[2J\x1b]0;pwned\x07ok\r\nnext\u202eevil" + "x" * 5000
    out = clean_text(hostile)
    assert len(out) <= MAX_TEXT and out.endswith("…")
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in out)
    assert "\u202e" not in out and "ok next" in out


@given(st.text())
def test_clean_text_is_always_printable_and_short(text):
    out = clean_text(text)
    assert len(out) <= MAX_TEXT
    assert out.isprintable()


def test_gate_stays_small_whatever_the_exchange_says():
    """Issue 12 (7): 100 series failing with a 1 MB hostile message: the gate is < 64 KB."""
    from core.errors import NotFound

    evil = "\x1b[2J\x1b[31m\r" + "A" * 1_000_000
    outcomes = [
        Outcome.failed(f"S{i}-USD:5m", NotFound(evil, product=f"S{i}-USD"), "NotFound")
        for i in range(100)
    ]
    gate = json.dumps(summarize("r", outcomes))
    assert len(gate) < 64 * 1024 and "\\u001b" not in gate
