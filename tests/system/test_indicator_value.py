"""`backfill indicators` through the real CLI against a real redis-server: the value it
stores on the platform's key is the platform's own (cache-contract.md, "Indicator value"),
byte for byte, with its 90 000 s TTL; where the platform writes nothing, nothing is written.

The cache is filled and the gate opened directly (no workers): what is under test is the
reader's write, not the backfill.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from helpers import cli, pandas_platform_macd_v

from core import keys
from core.candle import Candle
from core.config import BackfillConfig
from core.run import RunStore, new_run_id
from core.series import Series

NODE = shutil.which("node")
TOP = ["timestamp", "type", "symbol", "timeframe", "value", "params"]
VALUE = ["macdV", "signal", "histogram", "fastEMA", "slowEMA", "atr"]
PARAMS = [
    "fastPeriod",
    "slowPeriod",
    "atrPeriod",
    "signalPeriod",
    "stage",
    "liquidity",
    "gapRatio",
    "zeroRangeRatio",
    "seeded",
    "nEff",
    "spanBars",
    "reason",
]


def _fill(rclient, series: Series, n: int, skip_every: int) -> list[dict]:
    """n buckets ending at the last closed one, every `skip_every`-th missing (no trades)."""
    g = series.timeframe.seconds
    last = int(time.time()) // g * g - g
    out = []
    for k in range(n):
        if skip_every and k % skip_every == skip_every - 1:
            continue
        start = last - (n - 1 - k) * g
        base = 0.00001289 * (100 + (k * 7) % 13)  # sub-1e-3 prices: printed as JS prints them
        c = Candle(start, base, base * 1.02, base * 0.97, base * 1.01, 1e-7 * (k + 1))
        member = c.member(series.symbol, series.timeframe.name)
        rclient.zadd(series.cache_key(), {member: c.timestamp_ms})
        out.append(json.loads(member))
    return out


@pytest.fixture
def gate_open(rclient):
    """A run whose gate says BTC-USD:1h, ETH-USD:1h and FEW-USD:1h are ready."""
    series = ["BTC-USD:1h", "ETH-USD:1h", "FEW-USD:1h"]
    run_id = new_run_id()
    config = BackfillConfig(symbols=("BTC-USD", "ETH-USD", "FEW-USD"), timeframes=("1h",))
    RunStore(rclient).create(run_id, series, config)
    members = {
        "BTC-USD": _fill(rclient, Series.of("BTC-USD", "1h"), 200, 0),
        "ETH-USD": _fill(rclient, Series.of("ETH-USD", "1h"), 220, 3),
        "FEW-USD": _fill(rclient, Series.of("FEW-USD", "1h"), 59, 0),
    }
    RunStore(rclient).open_gate(
        {"run_id": run_id, "status": "ready", "ready": series, "failed": [], "not_ready": []}
    )
    return run_id, members


def _node_restringify(texts: list[str]) -> list[str]:
    """JSON.stringify(JSON.parse(text)) in node: equal to the text only if the text is exactly
    what JSON.stringify writes for its own value (key order, number form, no spaces)."""
    assert NODE is not None
    script = (
        "const a = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(a.map((t) => JSON.stringify(JSON.parse(t)))));"
    )
    done = subprocess.run(
        [NODE, "-e", script], input=json.dumps(texts), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cli_writes_the_platforms_value_byte_for_byte(gate_open, redis_url, rclient):
    run_id, members = gate_open
    pubsub = rclient.pubsub()
    pubsub.psubscribe("channel:indicator:1:1:*:macd-v")
    r = cli(
        "indicators", "--json", "--run", run_id, "--timeout", "10", env={"REDIS_URL": redis_url}
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert rclient.get(keys.indicator(1, 1, "FEW-USD", "1h")) is None  # < 60: none, as the platform
    stored = {}
    for symbol in ("BTC-USD", "ETH-USD"):
        key = keys.indicator(1, 1, symbol, "1h")
        assert 89_990 <= rclient.ttl(key) <= 90_000
        text = rclient.get(key).decode()
        top = json.loads(text, object_pairs_hook=list)
        assert [k for k, _ in top] == TOP
        d = dict(top)
        assert [k for k, _ in d["value"]] == VALUE and [k for k, _ in d["params"]] == PARAMS
        assert " " not in text and "e-0" not in text and ".0," not in text and ".0}" not in text
        stored[symbol] = text
        v = json.loads(text)
        want = pandas_platform_macd_v(members[symbol], 3_600_000)  # independent oracle
        assert v["timestamp"] == members[symbol][-1]["timestamp"]
        assert (v["type"], v["symbol"], v["timeframe"]) == ("macd-v", symbol, "1h")
        assert v["value"]["macdV"] == pytest.approx(want["m"][-1], rel=1e-9)
        assert v["value"]["signal"] == pytest.approx(want["s"][-1], rel=1e-9)
        assert v["value"]["histogram"] == pytest.approx(want["h"][-1], rel=1e-9, abs=1e-9)
        assert v["value"]["atr"] == pytest.approx(want["atr"][-1], rel=1e-9)
        p = v["params"]
        assert (p["fastPeriod"], p["slowPeriod"], p["atrPeriod"], p["signalPeriod"]) == (
            12,
            26,
            26,
            9,
        )
        assert p["gapRatio"] == want["synthetic"] / want["bars"]
        assert p["zeroRangeRatio"] == want["synthetic"] / want["bars"]
        assert p["nEff"] == len(members[symbol]) and p["spanBars"] == want["bars"]
        assert p["seeded"] is True and p["reason"] is None
    assert json.loads(stored["BTC-USD"])["params"]["liquidity"] == "high"
    assert json.loads(stored["ETH-USD"])["params"]["liquidity"] == "medium"
    published = {}
    while (m := pubsub.get_message(timeout=1.0)) is not None:
        if m["type"] == "pmessage":
            published[m["channel"].decode()] = m["data"].decode()
    assert published == {
        keys.indicator_channel(1, 1, s, "1h"): stored[s] for s in ("BTC-USD", "ETH-USD")
    }
    if NODE is not None:  # the real JSON.stringify as the oracle for the bytes
        assert _node_restringify(list(stored.values())) == list(stored.values())
