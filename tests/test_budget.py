"""The fleet budget (GCRA in Redis) against a real redis-server, shared by threads and processes."""

import multiprocessing as mp
import threading
import time

import pytest
import redis
from helpers import wait_until

from backfill.errors import BudgetTimeout
from workers.budget import FleetBudget, budget_name


def max_in_any_second(ts: list[float]) -> int:
    ts = sorted(ts)
    j, best = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def _grab(url: str, n: int, rate: float, q) -> None:
    b = FleetBudget(redis.Redis.from_url(url), "proc-test", rate)
    out = []
    for _ in range(n):
        b.acquire()
        out.append(time.time())
    q.put(out)


def test_processes_share_one_budget(redis_url):
    q = mp.get_context("spawn").Queue()
    procs = [
        mp.get_context("spawn").Process(target=_grab, args=(redis_url, 12, 10.0, q))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    stamps = [t for _ in procs for t in q.get(timeout=60)]
    for p in procs:
        p.join(10)
    assert len(stamps) == 36
    assert max_in_any_second(stamps) <= 10
    assert max(stamps) - min(stamps) >= 3.1  # 36 requests at 10/s: 4 windows of 1.05 s


def test_threads_spaced_and_no_spinning(rclient):
    b = FleetBudget(rclient, "threads", 20.0)
    calls_before = rclient.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    stamps: list[float] = []
    lock = threading.Lock()

    def run():
        for _ in range(10):
            b.acquire()
            with lock:
                stamps.append(time.monotonic())

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert max_in_any_second(stamps) <= 20
    calls = rclient.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) - calls_before
    assert calls <= 40 + 4  # one script call per request: waiting never polls Redis


def test_throttle_slows_everyone_then_recovers(rclient):
    a = FleetBudget(rclient, "shared", 10.0)
    b = FleetBudget(rclient, "shared", 10.0)
    a.throttled(None)
    t0 = time.monotonic()
    for _ in range(5):
        b.acquire()
    assert b.factor == pytest.approx(0.5, abs=0.05)
    assert time.monotonic() - t0 < 0.5  # 5 fit into the halved window
    b.acquire()
    assert time.monotonic() - t0 >= 1.0  # the 6th waits: half rate for everyone
    assert b.recently_throttled()
    wait_until(lambda: not b.recently_throttled(), 10, "recovery")
    b.acquire()
    assert b.factor == 1.0


def test_idle_fleet_sends_a_full_second_in_half_a_second(rclient):
    b = FleetBudget(rclient, "burst", 25.0)
    stamps = []
    for _ in range(26):
        b.acquire()
        stamps.append(time.monotonic())
    assert stamps[24] - stamps[0] < 0.75  # 25 sends within the first ~0.5 s
    assert stamps[24] - stamps[0] >= 24 * 0.02 - 0.01  # ... spread 1/(2*rate) apart
    assert stamps[25] - stamps[0] >= 1.0  # the 26th waits for the window


def test_first_timeframe_slots_are_held_back(rclient):
    from workers.budget import hold_back

    others = FleetBudget(rclient, "reserve", 10.0)
    hold_back(rclient, "reserve", 4)
    t0 = time.monotonic()
    stamps = []
    for _ in range(7):
        others.acquire()
        stamps.append(time.monotonic() - t0)
    assert stamps[5] < 0.5 and stamps[6] >= 1.0  # 6 of 10 slots: 4 are held back

    first = FleetBudget(rclient, "reserve2", 10.0)
    others = FleetBudget(rclient, "reserve2", 10.0)
    hold_back(rclient, "reserve2", 4)
    t0 = time.monotonic()
    for _ in range(6):
        others.acquire()
    with first.first_in_line():
        for _ in range(4):
            first.acquire()
    assert time.monotonic() - t0 < 0.9  # the held-back slots were there for the first
    assert rclient.get("backfill:budget:reserve2:reserve") == b"0"


def test_reset_time_pauses_the_fleet(rclient):
    b = FleetBudget(rclient, "reset", 100.0)
    b.throttled(0.5)
    t0 = time.monotonic()
    b.acquire()
    assert time.monotonic() - t0 >= 0.45


def test_deadline_raises_without_reserving(rclient):
    b = FleetBudget(rclient, "slow", 1.0, max_wait_s=0.5)
    b.acquire()
    with pytest.raises(BudgetTimeout, match="slow"):
        b.acquire()


def test_budget_names_hide_key_names():
    assert budget_name(None) == "public"
    n = budget_name("organizations/x/apiKeys/y")
    assert n.startswith("key:") and "organizations" not in n
