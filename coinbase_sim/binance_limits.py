"""Binance's request-weight limit per IP and calendar minute, 429 -> 418 bans, and the stats.

Binance counts the weight of every request an IP sends in the current UTC
minute (the count restarts at each minute boundary, it is not a sliding
window) and reports it in `X-MBX-USED-WEIGHT-1M`.  A request taking the count
past the limit is refused with 429, its weight still counted; an IP that goes
on sending more than `ban_after` requests after its first 429 of a minute is
banned (418) for `ban_duration_s`, and every request during the ban gets 418
without adding weight.

Both tables live in shared memory (coinbase_sim.slots), so the decisions and
the statistics are exact however requests spread over serving processes; the
same code serves one process.  Minutes and bans follow the simulated clock
(the server's time); the sliding 60 s statistics use CLOCK_MONOTONIC.
"""

from __future__ import annotations

import ctypes
import math
import time
from dataclasses import dataclass
from typing import Any

from coinbase_sim.shared_limits import SharedCounters
from coinbase_sim.slots import SlotTable

IDENTITIES = 256
COUNTERS = 1 << 14
WEIGHT_WINDOW_S = 60.0
WINDOW_CAPACITY = 32768  # arrivals kept per IP in the sliding 60 s window


@dataclass(frozen=True)
class WeightDecision:
    """How one request fared: status 200 (admitted), 429 or 418, and the header values."""

    status: int
    used: int  # weight used by the IP in the current minute, this request included
    counted: int  # weight this request added (0 when refused by a ban)
    retry_after_s: int  # for 429/418: whole seconds until the minute ends / the ban lifts
    banned_until_ms: int  # for 418: when the ban lifts (server time, ms)
    new_ban: bool = False  # this request triggered the ban


class _Ip(ctypes.Structure):
    _fields_ = [
        ("minute", ctypes.c_int64),  # calendar minute (unix // 60) of `weight`
        ("weight", ctypes.c_int64),
        ("refused", ctypes.c_int64),  # 429s this minute
        ("banned_until_ms", ctypes.c_int64),
    ]


class WeightLimiter:
    """Per-IP minute weights and bans, shared by every process forked after construction."""

    def __init__(self) -> None:
        self._table = SlotTable(IDENTITIES, _Ip)

    def _slot(self, ip: str) -> Any:
        slot = self._table.get(ip)
        if slot is None:
            raise RuntimeError(f"more than {IDENTITIES} client IPs")
        return slot

    def admit(
        self,
        ip: str,
        weight: int,
        now: float,
        limit: int,
        enforce: bool,
        ban_after: int,
        ban_duration_s: float,
    ) -> WeightDecision:
        """Count `weight` for `ip` at server time `now` (seconds) and decide 200 / 429 / 418."""
        now_ms = math.floor(now * 1000)
        minute = math.floor(now) // 60
        with self._table.lock:
            slot = self._slot(ip)
            if slot.minute != minute:
                slot.minute, slot.weight, slot.refused = minute, 0, 0
            if slot.banned_until_ms > now_ms:
                until = slot.banned_until_ms
                return WeightDecision(418, slot.weight, 0, _ceil_s(until - now_ms), until)
            slot.weight += weight
            if not enforce or slot.weight <= limit:
                return WeightDecision(200, slot.weight, weight, 0, 0)
            slot.refused += 1
            if slot.refused > ban_after + 1:
                until = now_ms + math.ceil(ban_duration_s * 1000)
                slot.banned_until_ms, slot.refused = until, 0
                retry = _ceil_s(until - now_ms)
                return WeightDecision(418, slot.weight, weight, retry, until, new_ban=True)
            next_minute_ms = (minute + 1) * 60_000
            return WeightDecision(429, slot.weight, weight, _ceil_s(next_minute_ms - now_ms), 0)

    def used(self, ip: str, now: float) -> int:
        """Weight `ip` has used in the current minute (for headers on answers not counted)."""
        with self._table.lock:
            slot = self._slot(ip)
            return slot.weight if slot.minute == math.floor(now) // 60 else 0

    def ban(self, ip: str, now: float, seconds: float) -> int:
        """Ban `ip` for `seconds` from `now` (0 lifts a ban); return the end in ms."""
        until = math.floor(now * 1000) + math.ceil(seconds * 1000) if seconds > 0 else 0
        with self._table.lock:
            slot = self._slot(ip)
            slot.banned_until_ms, slot.refused = until, 0
        return until

    def reset(self) -> None:
        """Forget every weight and ban."""
        with self._table.lock:
            self._table.clear()


def _ceil_s(ms: int) -> int:
    return max(1, -(-ms // 1000))


class _Window(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_int64),
        ("tail", ctypes.c_int64),
        ("sum", ctypes.c_int64),  # weight of the arrivals in [tail, head)
        ("peak", ctypes.c_int64),  # largest sum seen: max weight in any 60 s window
        ("minute_peak", ctypes.c_int64),  # largest X-MBX-USED-WEIGHT-1M sent
        ("dropped", ctypes.c_int64),  # arrivals pushed out early by a full ring
        ("times", ctypes.c_double * WINDOW_CAPACITY),
        ("weights", ctypes.c_int32 * WINDOW_CAPACITY),
    ]


class BinanceStats:
    """The counters behind /_sim/stats for the Binance personality (shared memory)."""

    def __init__(self) -> None:
        self._counts = SharedCounters(COUNTERS)
        self._windows = SlotTable(IDENTITIES, _Window)

    def reset(self) -> None:
        """Zero everything."""
        self._counts.clear()
        with self._windows.lock:
            self._windows.clear()

    def arrival(self, endpoint: str, series: str | None = None) -> None:
        """Record that an /api/v3 request arrived."""
        self._counts.arrival(endpoint, series)

    def weight(self, identity: str, decision: WeightDecision, now: float | None = None) -> None:
        """Record the weight a request added and the minute count it reported."""
        names = [("weight", decision.counted)]
        if decision.new_ban:
            names.append(("bans", 1))
        self._counts.add(names)
        with self._windows.lock:
            now = time.monotonic() if now is None else now
            window = self._windows.get(identity)
            if window is None:
                return
            window.minute_peak = max(window.minute_peak, decision.used)
            if decision.counted <= 0:
                return
            times, weights = window.times, window.weights
            while window.head > window.tail:
                index = window.tail % WINDOW_CAPACITY
                if times[index] > now - WEIGHT_WINDOW_S:
                    break
                window.sum -= weights[index]
                window.tail += 1
            if window.head - window.tail >= WINDOW_CAPACITY:
                window.sum -= weights[window.tail % WINDOW_CAPACITY]
                window.tail += 1
                window.dropped += 1
            times[window.head % WINDOW_CAPACITY] = now
            weights[window.head % WINDOW_CAPACITY] = decision.counted
            window.head += 1
            window.sum += decision.counted
            window.peak = max(window.peak, window.sum)

    def response(self, status: str, klines: int = 0, fault: str | None = None) -> None:
        """Record how a request was answered ("timeout" when dropped)."""
        self._counts.response(status, ("klines", klines), fault)

    def snapshot(self) -> dict[str, object]:
        """JSON-friendly copy of all counters."""
        groups, plain = self._counts.snapshot()
        with self._windows.lock:
            windows = list(self._windows.items())
            sliding = {name: w.peak for name, w in windows}
            minute = {name: w.minute_peak for name, w in windows}
            dropped = sum(w.dropped for _, w in windows)
        statuses = groups["status"]
        return {
            "exchange": "binance",
            "requests_total": plain.get("total", 0),
            "requests_by_endpoint": groups["endpoint"],
            "requests_by_series": groups["series"],
            "responses_by_status": statuses,
            "responses_429": statuses.get("429", 0),
            "responses_418": statuses.get("418", 0),
            "bans": plain.get("bans", 0),
            "weight_total": plain.get("weight", 0),
            "max_weight_in_any_60s": sliding,
            "max_weight_in_any_minute": minute,
            "weight_window_overflow": dropped,
            "faults_injected": groups["fault"],
            "klines_served": plain.get("klines", 0),
        }
