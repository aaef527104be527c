"""Rate limits, statistics and injected faults."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
from sim_support import Sim

from coinbase_sim.limits import RateLimiter, Stats

HOUR = 3600


def _params() -> dict[str, int | str]:
    end = int(time.time()) // HOUR * HOUR - 5 * HOUR
    return {"granularity": "ONE_HOUR", "start": end - 3 * HOUR, "end": end}


def test_sliding_window_limiter() -> None:
    limiter = RateLimiter()
    admitted = [limiter.check("k", 3, True, now=t).allowed for t in (0.0, 0.1, 0.2, 0.3, 1.05)]
    assert admitted == [True, True, True, False, True]
    decision = limiter.check("k", 3, True, now=1.06)
    assert not decision.allowed
    assert decision.remaining == 0
    assert decision.reset_s == pytest.approx(0.04)  # 0.1 leaves the window at 1.1
    assert limiter.check("k", 3, False, now=1.07).allowed


def test_peak_counts_any_half_open_second() -> None:
    stats = Stats()
    for t in (0.0, 0.5, 0.99, 1.0, 1.2, 1.98, 2.5):
        stats.identity("ip:x", now=t)
    # [0.5, 1.5) holds 0.5, 0.99, 1.0, 1.2; [0.99, 1.99) holds 0.99, 1.0, 1.2, 1.98.
    assert stats.snapshot()["max_requests_in_any_second"] == {"ip:x": 4}


def test_public_rate_limit_per_ip(sim: Sim) -> None:
    sim.configure(rate_limits=True)
    responses = [sim.public("BTC-USD", **_params()) for _ in range(25)]
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] >= 10 and statuses[429] >= 10
    throttled = [r for r in responses if r.status_code == 429]
    kinds = Counter(r.headers["Content-Type"] for r in throttled)
    assert kinds["text/html"] >= 1 and kinds["application/json"] >= 1
    html = next(r for r in throttled if r.headers["Content-Type"] == "text/html")
    assert html.text == "<html><body><h1>429 Too Many Requests</h1></body></html>"
    body = next(r for r in throttled if r.headers["Content-Type"] == "application/json").json()
    assert body["error"] == "RATE_LIMIT_EXCEEDED"
    stats = sim.stats()
    assert stats["requests_total"] == 25
    assert stats["responses_by_status"]["429"] == statuses[429]
    assert stats["max_requests_in_any_second"]["ip:127.0.0.1"] >= 20
    assert stats["requests_by_series"] == {"BTC-USD:ONE_HOUR": 25}


def test_private_rate_limit_per_key_with_headers(sim: Sim) -> None:
    sim.configure(rate_limits=True, key_rate=5)
    responses = [sim.private("BTC-USD", **_params()) for _ in range(12)]
    ok = [r for r in responses if r.status_code == 200]
    throttled = [r for r in responses if r.status_code == 429]
    assert len(ok) >= 5 and len(throttled) >= 4
    for response in responses:
        assert response.headers["x-ratelimit-limit"] == "5"
        assert 0 <= int(response.headers["x-ratelimit-remaining"]) <= 5
        assert 0 <= float(response.headers["x-ratelimit-reset"]) <= 1.0
    assert throttled[0].headers["x-ratelimit-remaining"] == "0"
    peak = sim.stats()["max_requests_in_any_second"]
    assert peak[f"key:{sim.ec.name}"] >= 10
    # The other key has its own budget.
    assert sim.private("BTC-USD", key=sim.ed, **_params()).status_code == 200


def test_fault_shares_roughly_right(sim: Sim) -> None:
    shares = {"p429": 0.1, "p500": 0.1, "p503": 0.1, "ptruncated": 0.1, "pnonjson": 0.1}
    sim.configure(**shares, ptimeout=0.05, timeout_mode="close")
    outcome: Counter[str] = Counter()
    n = 400
    for _ in range(n):
        try:
            response = sim.public("BTC-USD", **_params())
        except requests.ConnectionError:
            outcome["timeout"] += 1
            continue
        if response.status_code != 200:
            outcome[str(response.status_code)] += 1
            continue
        try:
            response.json()
            outcome["ok"] += 1
        except ValueError:
            kind = "html" if response.text.startswith("<html>") else "truncated"
            outcome[kind] += 1
    for kind in ("429", "500", "503", "truncated", "html"):
        assert 0.05 * n <= outcome[kind] <= 0.16 * n, (kind, outcome)
    assert 0.01 * n <= outcome["timeout"] <= 0.1 * n, outcome
    assert 0.35 * n <= outcome["ok"] <= 0.6 * n, outcome
    faults = sim.stats()["faults_injected"]
    assert faults["ptimeout"] == outcome["timeout"]


def test_faults_reproducible_after_reset(sim: Sim) -> None:
    sim.configure(p500=0.3, p503=0.2)

    def run() -> list[int]:
        sim.session.post(sim.url + "/_sim/reset").raise_for_status()
        return [sim.public("BTC-USD", **_params()).status_code for _ in range(40)]

    assert run() == run()


def test_timeout_hold_outlasts_client_timeout(sim: Sim) -> None:
    sim.configure(ptimeout=1.0, timeout_mode="hold", timeout_hold_s=1.0)
    with pytest.raises(requests.ReadTimeout):
        sim.session.get(
            sim.url + "/api/v3/brokerage/market/products/BTC-USD/candles",
            params=_params(),
            timeout=0.2,
        )


def test_latency_is_added(sim: Sim) -> None:
    sim.configure(latency_ms=[60, 80])
    began = time.perf_counter()
    assert sim.public("BTC-USD", **_params()).status_code == 200
    assert time.perf_counter() - began >= 0.06
