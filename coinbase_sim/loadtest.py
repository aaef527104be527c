"""Loopback load test of the simulator: requests/s and CPU per request, 1 vs N processes.

`python -m coinbase_sim.loadtest --processes 1 2 4 --series 500 --seconds 10`
starts a simulator per process count and prints JSON per run: a cold pass
(every page once, as a scale run's first scenario) and, after unmeasured
warm-up passes, a warm phase (the same pages again, as later scenarios) with
requests/s and the simulator's
CPU-seconds per 1,000 requests (its whole process tree, via psutil).  Load
comes from `wrk` (Debian package) when installed, else a bounded threaded
client.  Private candle requests (JWT verified), rate limits off, 300-bucket
pages ending now, as the backfill client asks for them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

import jwt
import psutil

from coinbase_sim.keys import PUBLIC_HOST, ApiKey, parse_private_key
from coinbase_sim.process import SimProcess

TIMEFRAMES = {"FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900, "ONE_HOUR": 3600, "ONE_DAY": 86400}
TIMEFRAMES["SIX_HOUR"] = 21600

_LUA = """
local requests = {}
for line in io.lines(os.getenv("LOADTEST_REQUESTS")) do
  local path, token = line:match("(%S+) (%S+)")
  requests[#requests + 1] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""

Request = tuple[str, str]  # (path with query, bearer token)


def token(key: ApiKey, path: str) -> str:
    """A CDP JWT for `GET api.coinbase.com+path` (any Host header), valid for two minutes."""
    now = int(time.time())
    claims = {"sub": key.name, "iss": "cdp", "nbf": now, "exp": now + 120}
    claims["uri"] = f"GET {PUBLIC_HOST}{path}"
    headers = {"kid": key.name, "nonce": secrets.token_hex()}
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers=headers)


def candle_requests(series: int, key: ApiKey) -> list[Request]:
    """One 300-bucket page ending now per series (SYNxxxx-USD x TIMEFRAMES)."""
    now = int(time.time())
    names = list(TIMEFRAMES)
    out = []
    for n in range(series):
        path = f"/api/v3/brokerage/products/SYN{n // len(names) + 1:04d}-USD/candles"
        name = names[n % len(names)]
        start = now // TIMEFRAMES[name] * TIMEFRAMES[name] - 299 * TIMEFRAMES[name]
        query = f"?granularity={name}&start={start}&end={now}"
        out.append((path + query, token(key, path)))
    return out


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def drive_wrk(url: str, requests: list[Request], seconds: float, conns: int) -> int:
    """Run wrk for `seconds` cycling through `requests`; return how many completed."""
    with tempfile.TemporaryDirectory() as tmp:
        script, listing = os.path.join(tmp, "requests.lua"), os.path.join(tmp, "requests.txt")
        with open(script, "w") as f:
            f.write(_LUA)
        with open(listing, "w") as f:
            f.write("".join(f"{path} {bearer}\n" for path, bearer in requests))
        env = {**os.environ, "LOADTEST_REQUESTS": listing}
        command = ["wrk", "-t1", f"-c{conns}", f"-d{round(seconds)}s", "-s", script, url]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+) requests in", out)
    if not match or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk: {out}")
    return int(match.group(1))


def drive_threads(url: str, requests: list[Request], total: int, conns: int) -> int:
    """Bounded threaded client: `total` requests over `conns` keep-alive connections."""
    host, port = url.removeprefix("http://").split(":")
    numbers = iter(range(total))
    lock = threading.Lock()
    failures: list[int] = []

    def work() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                i = next(numbers, None)
            if i is None:
                conn.close()
                return
            path, bearer = requests[i % len(requests)]
            conn.request("GET", path, headers={"Authorization": f"Bearer {bearer}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)

    threads = [threading.Thread(target=work) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, e.g. {failures[0]}")
    return total


def measure(
    processes: int, series: int, seconds: float, conns: int, cache_mb: int, rounds: int
) -> dict:
    """A cold pass over every page once, `rounds` unmeasured passes, then `seconds` of them.

    The unmeasured passes let every worker fill its own market and page caches
    (a page first seen by a worker costs what a cold page costs).
    """
    products = -(-series // len(TIMEFRAMES))
    with SimProcess(
        processes=processes, synthetic_products=products, rate_limits=False,
        render_cache_mb=cache_mb,
    ) as sim:  # fmt: skip
        key = ApiKey(sim.key_name, sim.key_secret, parse_private_key(sim.key_secret))
        requests = candle_requests(series, key)
        result: dict[str, Any] = {"processes": processes, "render_cache_mb": cache_mb}
        for phase in ("cold", "warm"):
            if phase == "warm" and rounds:
                drive_threads(sim.url, requests, rounds * len(requests), conns)
            cpu0, t0 = tree_cpu_s(sim.pid), time.perf_counter()
            if phase == "cold":
                done = drive_threads(sim.url, requests, len(requests), conns)
            elif shutil.which("wrk"):
                done = drive_wrk(sim.url, requests, seconds, conns)
            else:
                done = drive_threads(sim.url, requests, int(seconds * 300), conns)
            wall, cpu = time.perf_counter() - t0, tree_cpu_s(sim.pid) - cpu0
            result[phase] = {
                "requests": done,
                "wall_s": round(wall, 2),
                "requests_per_s": round(done / wall, 1),
                "sim_cpu_s_per_1000_requests": round(cpu / done * 1000, 3),
                "sim_cores_busy": round(cpu / wall, 2),
            }
        return result


def main(argv: list[str] | None = None) -> int:
    """Entry point: one JSON line per (processes, render cache) run."""
    p = argparse.ArgumentParser(prog="python -m coinbase_sim.loadtest", description=__doc__)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--series", type=int, default=500, help="distinct pages")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the warm phase")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--render-cache-mb", type=int, nargs="+", default=[64])
    p.add_argument("--warmup-rounds", type=int, default=5, help="unmeasured passes before warm")
    args = p.parse_args(argv)
    for cache_mb in args.render_cache_mb:
        for n in args.processes:
            result = measure(
                n, args.series, args.seconds, args.connections, cache_mb, args.warmup_rounds
            )
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
