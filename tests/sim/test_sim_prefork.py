"""--processes N: one simulator served by N forked workers on one port.

Each test reaches every worker through keep-alive connections whose serving
process is known (GET /_sim/health answers with its pid).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import DEFAULTS
from sim_support import PRIVATE, PUBLIC, make_token

from coinbase_sim.keys import ApiKey, load_key_file, parse_private_key, write_key_file
from coinbase_sim.process import SimProcess

PROCESSES = 3
HOUR = 3600
Conn = http.client.HTTPConnection


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` until true; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def get(
    conn: Conn, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read(), response


def connections_by_process(
    url: str, per_process: int, processes: int = PROCESSES
) -> dict[int, list[Conn]]:
    """Open connections until each of the `processes` workers holds `per_process` of them."""
    host, port = url.removeprefix("http://").split(":")
    found: dict[int, list[Conn]] = {}
    deadline = time.monotonic() + 20
    while len(found) < processes or min(len(c) for c in found.values()) < per_process:
        assert time.monotonic() < deadline, f"reached only {len(found)} workers"
        conn = Conn(host, int(port), timeout=10)
        pid = json.loads(get(conn, "/_sim/health")[1])["pid"]
        group = found.setdefault(pid, [])
        if len(group) < per_process:
            group.append(conn)
        else:
            conn.close()
    return found


def candle_path(template: str, product: str, granularity: str, start: int, end: int) -> str:
    query = urlencode({"granularity": granularity, "start": start, "end": end})
    return template.format(product) + "?" + query


@pytest.fixture(scope="module")
def key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prefork") / "key.json"
    write_key_file(path, "ec")
    return path


@pytest.fixture(scope="module")
def key(key_path: Path) -> ApiKey:
    return load_key_file(key_path)


@pytest.fixture(scope="module")
def multi_process(key_path: Path) -> Iterator[SimProcess]:
    with SimProcess(seed=7, key_files=[str(key_path)], processes=PROCESSES) as sim:
        yield sim


@pytest.fixture
def multi(multi_process: SimProcess) -> Iterator[SimProcess]:
    """The multi-process simulator with default settings (rate limits off) and zeroed stats."""
    multi_process.configure(**{**DEFAULTS, "processes": PROCESSES, "rate_limits": False})
    multi_process.reset()
    yield multi_process


def test_workers_serve_the_same_bytes_as_one_process(multi: SimProcess, key: ApiKey) -> None:
    end = int(time.time()) // 86400 * 86400 - 3 * 86400
    paths = [
        candle_path(PUBLIC, product, granularity, end - 299 * seconds, end)
        for product in ("BTC-USD", "SHIB-USD")
        for granularity, seconds in (("ONE_MINUTE", 60), ("ONE_HOUR", HOUR), ("SIX_HOUR", 21600))
    ]
    paths.append(PUBLIC.format("BTC-USD") + "?granularity=ONE_DAY&start=1&end=2000000000&limit=7")
    paths.append(PUBLIC.format("NOPE-USD") + "?granularity=ONE_DAY&start=1&end=2")
    paths.append(PUBLIC.format("BTC-USD") + "?granularity=ONE_WEEK&start=1&end=2")
    with SimProcess(seed=7, key_files=[multi.key_files[0]], rate_limits=False) as single:
        host, port = single.url.removeprefix("http://").split(":")
        reference = Conn(host, int(port), timeout=10)
        expected = [get(reference, p)[:2] for p in paths]
        for conns in connections_by_process(multi.url, 1).values():
            for _repeat in range(2):  # rendered, then from the render cache
                assert [get(conns[0], p)[:2] for p in paths] == expected
        # A page reaching "now" differs only in its in-progress bucket.
        live = candle_path(PUBLIC, "ETH-USD", "ONE_DAY", end - 50 * 86400, int(time.time()))
        closed = json.loads(get(reference, live)[1])["candles"][1:]
        assert json.loads(get(conns[0], live)[1])["candles"][1:] == closed
        assert len(closed) == 53


def test_key_limit_is_exact_across_processes(multi: SimProcess, key: ApiKey) -> None:
    multi.configure(rate_limits=True, key_rate=30)
    conns = [c for group in connections_by_process(multi.url, 14).values() for c in group]
    host = multi.url.removeprefix("http://")
    path = PRIVATE.format("BTC-USD")
    end = int(time.time()) // HOUR * HOUR - 5 * HOUR
    query = "?" + urlencode({"granularity": "ONE_HOUR", "start": end - 3 * HOUR, "end": end})
    tokens = [make_token(key, f"GET {host}{path}") for _ in range(40)]
    start = threading.Barrier(40)

    def send(i: int) -> int:
        start.wait()
        return get(conns[i], path + query, {"Authorization": f"Bearer {tokens[i]}"})[0]

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(send, range(40)))
    stats = multi.stats()
    assert stats["max_requests_in_any_second"] == {f"key:{key.name}": 40}  # one second
    assert Counter(statuses) == {200: 30, 429: 10}
    assert stats["requests_total"] == 40
    assert stats["responses_by_status"] == {"200": 30, "429": 10}
    assert stats["requests_by_endpoint"] == {"private": 40}
    assert stats["requests_by_series"] == {"BTC-USD:ONE_HOUR": 40}
    assert stats["candles_served"] == 30 * 4


def test_ip_limit_and_stats_aggregate_across_processes(multi: SimProcess) -> None:
    multi.configure(rate_limits=True, ip_rate=10)
    groups = connections_by_process(multi.url, 5)
    conns = [c for group in groups.values() for c in group]
    end = int(time.time()) // HOUR * HOUR - 5 * HOUR
    path = candle_path(PUBLIC, "ETH-USD", "ONE_HOUR", end - HOUR, end)
    statuses = Counter(get(c, path)[0] for c in conns)
    assert statuses == {200: 10, 429: len(conns) - 10}
    for group in groups.values():  # every worker reports the same totals
        stats = json.loads(get(group[0], "/_sim/stats")[1])
        assert stats["requests_total"] == len(conns)
        assert stats["responses_by_status"] == {"200": 10, "429": len(conns) - 10}
        assert stats["max_requests_in_any_second"]["ip:127.0.0.1"] >= 1


def test_control_changes_reach_every_process(multi: SimProcess) -> None:
    groups = connections_by_process(multi.url, 1)
    multi.configure(clock_offset_s=-10 * 86400, p500=1.0)
    end = int(time.time()) // HOUR * HOUR - 5 * HOUR
    path = candle_path(PUBLIC, "BTC-USD", "ONE_HOUR", end - HOUR, end)
    for (conn,) in groups.values():
        _, body, response = get(conn, "/_sim/config")
        assert json.loads(body)["clock_offset_s"] == -10 * 86400
        shown = parsedate_to_datetime(response.getheader("Date")).timestamp()
        assert abs(shown - (time.time() - 10 * 86400)) < 5
        assert get(conn, path)[0] == 500
    assert multi.stats()["faults_injected"] == {"p500": PROCESSES}

    multi.configure(p500=0.0)
    minted = multi.mint_key("ed25519")
    new = ApiKey(minted["name"], minted["privateKey"], parse_private_key(minted["privateKey"]))
    private = PRIVATE.format("BTC-USD")
    host = multi.url.removeprefix("http://")
    query = path.partition("?")[2]
    for (conn,) in groups.values():
        token = make_token(new, f"GET {host}{private}")
        assert get(conn, f"{private}?{query}", {"Authorization": f"Bearer {token}"})[0] == 200

    multi.reset()
    for (conn,) in groups.values():
        assert json.loads(get(conn, "/_sim/stats")[1])["requests_total"] == 0


def test_fault_stream_reproducible_across_processes(multi: SimProcess) -> None:
    multi.configure(p500=0.3, p503=0.2)
    conns = [c for group in connections_by_process(multi.url, 2).values() for c in group]
    end = int(time.time()) // HOUR * HOUR - 5 * HOUR
    path = candle_path(PUBLIC, "BTC-USD", "ONE_HOUR", end - HOUR, end)

    def run() -> list[int]:
        multi.reset()
        return [get(conns[i % len(conns)], path)[0] for i in range(40)]

    first = run()
    assert first == run()
    assert {200, 500, 503} <= set(first)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_stop_with_the_simulator_or_when_it_dies() -> None:
    for how in ("stop", "kill"):
        sim = SimProcess(processes=2)
        workers = list(connections_by_process(sim.url, 1, processes=2))
        if how == "kill":
            os.kill(sim.pid, signal.SIGKILL)  # workers see their lifeline close
        sim.stop()
        wait_for(lambda: not any(_alive(pid) for pid in workers))  # noqa: B023
