"""Issue 22 with a real worker process: an exchange answer holding a number JavaScript's
`Number` would not read (`"1_5"`, Arabic-Indic or fullwidth digits, `" 1.5"`) is never cached;
the same answer with `"15"` is.

Before the strict grammar, Python's `float("1_5")` cached a volume of 15 and the series was
reported ready. A loopback hostile exchange (`tests/hostile.py`) serves the true candles with
one field of one recent closed row replaced.
"""

from __future__ import annotations

import pytest
import redis
from helpers import cached
from hostile import Handler, hostile_workers, rows

from core.config import BackfillConfig
from core.series import Series

pytestmark = pytest.mark.slow
class TamperingHandler(Handler):
    def _tamper(self, p, g, start, end, now, n, product):
        """The true rows (newest first), with `field` of the 4th newest (a closed bucket in
        every window the fetch asks for) set to `value`, or to `value(true text)`."""
        true = rows(g, start, end, now)
        if len(true) > 3:
            old, value = true[3][p["field"]], p["value"]
            true[3] = {**true[3], p["field"]: value(old) if callable(value) else value}
        self._candles(true)


@pytest.fixture(scope="module")
def exchange(redis_server, tmp_path_factory):
    logs = tmp_path_factory.mktemp("hostile-cache-worker")
    with hostile_workers(redis_server.url, logs, TamperingHandler, name="hc") as (server, _, _):
        yield server, redis_server.url


def underscored(text: str) -> str:
    """The same digits with an underscore: Python's float and int read the same number."""
    return text[:2] + "_" + text[2:]


TAMPERED = {
    "UNDV-USD": ("volume", "1_5"),
    "UNDC-USD": ("close", underscored),
    "UNDS-USD": ("start", underscored),
    "LEADU-USD": ("volume", "_15"),
    "ARAB-USD": ("volume", "\u0661\u0665"),  # Arabic-Indic 15
    "FULLW-USD": ("volume", "\uff11\uff15"),  # fullwidth 15
    "SPACE-USD": ("volume", " 1.5"),
    "NANV-USD": ("volume", "nan"),
    "HEXV-USD": ("volume", "0x10"),
}


def test_numbers_javascript_would_not_read_are_never_cached(exchange):
    from backfill.dispatch import dispatch
    from backfill.gate import wait_ready

    server, url = exchange
    client = redis.Redis.from_url(url)
    for product, (field, value) in TAMPERED.items():
        server.behave(product, "tamper", field=field, value=value)
    server.behave("FIFTEEN-USD", "tamper", field="volume", value="15")  # the control
    bad = tuple(TAMPERED)
    symbols = (*bad, "FIFTEEN-USD")
    d = dispatch(BackfillConfig(symbols=symbols, timeframes=("5m",)), redis_url=url)
    result = wait_ready(client, d.run_id, timeout=90)
    assert result.summary is not None, "the gate did not open"
    summary = result.summary
    assert summary["ready"] == ["FIFTEEN-USD:5m"], summary
    failed = {f["series"]: f for f in summary["failed"]}
    assert sorted(failed) == sorted(f"{p}:5m" for p in bad), summary
    for product in bad:
        f = failed[f"{product}:5m"]
        assert f["error"].startswith("InvalidResponse: "), f
        assert "invalid candle: " in f["error"] or "is not an integer" in f["error"], f
        assert cached(client, Series.of(product, "5m")) == [], product  # nothing at all
    good = cached(client, Series.of("FIFTEEN-USD", "5m"))
    assert len(good) >= 60 and 15 in [m["volume"] for m in good]
