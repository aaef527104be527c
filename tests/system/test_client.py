"""The candle client against the simulator over real HTTP: pagination, parsing, every error
class, product-id validation, auth, and secrets kept out of errors."""

from __future__ import annotations

import time

import pytest

from core.credentials import read_key_file
from core.errors import (
    AuthError,
    BadRequest,
    InvalidInput,
    NotFound,
    RateLimited,
    RetryableError,
    TransientError,
)
from core.timeframe import timeframe
from workers.coinbase.client import CoinbaseClient
from workers.exchange.body import Http

M5, H1, H4, D1 = (timeframe(n) for n in ("5m", "1h", "4h", "1d"))


@pytest.fixture
def client(sim, key_file) -> CoinbaseClient:
    return CoinbaseClient(sim.url, read_key_file(key_file))


def requests_for(sim, product: str, granularity: str) -> int:
    return sim.stats()["requests_by_series"].get(f"{product}:{granularity}", 0)


@pytest.mark.parametrize("buckets,pages", [(1, 1), (299, 1), (300, 1), (301, 2), (1000, 4)])
def test_pagination_never_exceeds_the_cap_and_merges_pages(sim, client, buckets, pages):
    end = H1.last_closed_start(time.time())
    start = end - (buckets - 1) * 3600
    candles = client.get_candles("BTC-USD", H1, start, end)
    starts = [c.start for c in candles]
    assert starts == sorted(set(starts)) and len(starts) == buckets  # BTC-USD has no gaps
    assert starts[0] == start and starts[-1] == end
    assert client.requests_made == pages == requests_for(sim, "BTC-USD", "ONE_HOUR")
    assert sim.stats()["responses_by_status"] == {"200": pages}  # no request was refused
    truth = sim.truth("BTC-USD", "ONE_HOUR", start, end)
    assert [float(c["close"]) for c in reversed(truth)] == [c.close for c in candles]


def test_cap_is_configurable(sim, key_file):
    sim.configure(cap=350)
    client = CoinbaseClient(sim.url, read_key_file(key_file), cap=350)
    end = M5.last_closed_start(time.time())
    assert len(client.get_candles("BTC-USD", M5, end - 349 * 300, end)) == 350
    assert client.requests_made == 1


def test_in_progress_bucket_is_marked_not_closed(client):
    now = time.time()
    candles = client.get_candles("BTC-USD", M5, int(now) - 3000, int(now))
    assert candles[-1].start == M5.floor(int(now)) or candles[-1].start == M5.floor(int(now)) - 300
    assert all(c.closed for c in candles[:-1])
    if candles[-1].start == M5.floor(int(now)):
        assert not candles[-1].closed


def test_public_endpoint_without_a_key(sim):
    client = CoinbaseClient(sim.url)
    end = D1.last_closed_start(time.time())
    assert len(client.get_candles("ETH-USD", D1, end - 9 * 86400, end)) == 10
    assert sim.stats()["requests_by_endpoint"] == {"public": 1}


def test_not_found_and_bad_granularity(sim, client):
    with pytest.raises(NotFound) as e:
        client.get_candles("NOPE-USD", H1, 1_700_000_000, 1_700_003_600)
    assert e.value.status == 404 and "NOPE-USD" in str(e.value) and "1h" in str(e.value)
    assert not isinstance(e.value, RetryableError)
    sim.configure(four_hour=False)
    with pytest.raises(BadRequest) as e:
        client.get_candles("BTC-USD", H4, 1_700_000_000 - 1_700_000_000 % 14400, 1_700_100_000)
    assert (
        e.value.status == 400
        and "FOUR_HOUR" in e.value.detail
        and "not a valid value" in e.value.detail
    )


def test_untrusted_key_is_an_auth_error_without_the_key(sim, tmp_path):
    from coinbase_sim.keys import write_key_file

    path = tmp_path / "stranger.json"
    write_key_file(path, "ed25519")  # never shown to the simulator
    creds = read_key_file(path)
    client = CoinbaseClient(sim.url, creds)
    with pytest.raises(AuthError) as e:
        client.get_candles("BTC-USD", H1, 1_700_000_000, 1_700_003_600)
    assert e.value.status == 401 and not isinstance(e.value, RetryableError)
    import json

    secret = json.loads(path.read_text())["privateKey"]
    assert secret[:16] not in str(e.value) and secret[:16] not in repr(client)


@pytest.mark.parametrize(
    "fault,kind,status",
    [
        ("p429", RateLimited, 429),
        ("p500", TransientError, 500),
        ("p503", TransientError, 503),
        ("ptruncated", TransientError, 200),
        ("pnonjson", TransientError, 200),
    ],
)
def test_fault_responses_map_to_retryable_errors(sim, client, fault, kind, status):
    sim.configure(**{fault: 1.0})
    with pytest.raises(kind) as e:
        client.get_candles("BTC-USD", H1, 1_700_000_000 - 1_700_000_000 % 3600, 1_700_003_600)
    assert isinstance(e.value, RetryableError) and e.value.status == status
    assert "BTC-USD" in str(e.value) and "1h" in str(e.value)


def test_html_429_and_reset_time(sim, client):
    sim.configure(p429=1.0)
    seen_html = False
    for _ in range(4):
        with pytest.raises(RateLimited) as e:
            client.get_candles("BTC-USD", H1, 1_700_000_000 - 1_700_000_000 % 3600, 1_700_003_600)
        seen_html |= "HTML" in str(e.value)
        assert e.value.reset_after is not None and 0 <= e.value.reset_after <= 1.0
    assert seen_html


def test_real_rate_limit_answers_429(sim, key_file):
    sim.configure(key_rate=5)
    client = CoinbaseClient(sim.url, read_key_file(key_file))
    end = H1.last_closed_start(time.time())
    with pytest.raises(RateLimited):
        for _ in range(10):
            client.get_candles("BTC-USD", H1, end - 3600, end)
    assert sim.stats()["max_requests_in_any_second"]


def test_timeouts_and_connection_failures_are_transient(sim, key_file):
    sim.configure(ptimeout=1.0, timeout_hold_s=3.0)
    client = CoinbaseClient(sim.url, read_key_file(key_file), timeout=(1.0, 0.5))
    with pytest.raises(TransientError, match="timed out"):
        client.get_candles("BTC-USD", H1, 1_700_000_000 - 1_700_000_000 % 3600, 1_700_003_600)
    dead = CoinbaseClient("http://127.0.0.1:1")
    with pytest.raises(TransientError, match="connection failed"):
        dead.get_candles("BTC-USD", H1, 1_700_000_000 - 1_700_000_000 % 3600, 1_700_003_600)


@pytest.mark.parametrize("bad", ["BTC-USD/../accounts", "btc usd", "BTC-USD?x=1", "BTC%2FUSD"])
def test_product_id_checked_before_any_url_is_built(sim, client, bad):
    with pytest.raises(InvalidInput):
        client.get_candles(bad, H1, 1_700_000_000, 1_700_003_600)
    assert sim.stats()["requests_total"] == 0


def test_sdk_style_https_host_is_signed_as_api_coinbase_com(key_file):
    client = CoinbaseClient("https://api.coinbase.com", read_key_file(key_file))
    assert client.api._signed_host == "api.coinbase.com"
    assert isinstance(client.http, Http)  # urllib3's pools with the deadline hook


def test_newest_keeps_only_the_newest_candles_of_one_page(sim, client):
    end = H1.last_closed_start(time.time())
    full = client.get_candles("BTC-USD", H1, end - 298 * 3600, end)
    newest = client.get_candles("BTC-USD", H1, end - 298 * 3600, end, newest=101)
    assert newest == full[-101:]  # the newest, not the first 101 of a newest-first page
    many = client.get_candles("BTC-USD", H1, end - 599 * 3600, end, newest=10)
    assert len(many) == 600  # more than one page: everything, `newest` does not apply


def test_a_429_slows_the_whole_fleet_and_pauses_it_until_the_reset(sim, key_file, redis_url):
    """One worker's 429 halves the request rate of every worker sharing the key's budget
    (README: "After a 429 the whole fleet halves its rate ... A reset time sent with the 429
    pauses every worker until then"). Counted where the exchange counts: at the simulator."""
    import redis

    from workers.budget import FleetBudget

    creds = read_key_file(key_file)
    end = H1.last_closed_start(time.time())
    rate, n = 20.0, 20

    def worker_client(budget: str, sleep=time.sleep) -> CoinbaseClient:
        """One worker's client, with its own Redis connection and budget object."""
        shared = FleetBudget(redis.Redis.from_url(redis_url), budget, rate, sleep=sleep)
        return CoinbaseClient(sim.url, creds, budget=shared)

    def peak_sending(client: CoinbaseClient) -> tuple[int, float]:
        sim.reset()
        t0 = time.monotonic()
        for _ in range(n):
            client.get_candles("BTC-USD", H1, end, end)
        took = time.monotonic() - t0
        stats = sim.stats()
        assert stats["responses_by_status"] == {"200": n}
        return max(stats["max_requests_in_any_second"].values()), took

    # control: an idle fleet that saw no 429 sends its whole second's worth at once
    unthrottled, _ = peak_sending(worker_client("control"))
    assert unthrottled >= 15

    hit = worker_client("fleet")
    sim.reset()  # the 429'd request is alone in the exchange's window: reset ~1 s
    sim.configure(p429=1.0)
    asked_at = time.monotonic()
    with pytest.raises(RateLimited) as e:
        hit.get_candles("BTC-USD", H1, end, end)
    sim.configure(p429=0.0)
    reset = e.value.reset_after
    assert reset is not None and reset > 0.5
    first_sent: list[float] = []

    def sleep_then_note(s: float) -> None:
        time.sleep(s)
        first_sent.append(time.monotonic())

    other = worker_client("fleet", sleep_then_note)  # another worker, that never saw the 429
    peak, took = peak_sending(other)
    # halved (10/s) and recovering by 2/s each second: at most 12 in any second, not 20
    assert peak <= 12, peak
    assert took >= 1.0  # 20 sends at the halved rate need more than one window
    # the reset time paused this worker too: its first send waited until then
    assert first_sent and first_sent[0] - asked_at >= reset - 0.01
