"""Investigation only (`python -m bench --tracemalloc`): where a worker node's memory grows.

Imported by the workers (`celery worker --include bench.memtrace`). It starts
`tracemalloc` at import (25 frames) and a thread that watches the Redis key
`bench:mem:request`: for each new label written there it snapshots this process (with
`-P threads` that is where the tasks run) and stores, under `bench:mem:<pid>:<label>`, its
RSS, the traced total, and the biggest growths since the first snapshot, grouped by the
allocating line (and by the first frame inside the project, for context).
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc

import redis

from core.settings import load_settings

tracemalloc.start(25)
_snapshots: dict[str, tracemalloc.Snapshot] = {}
_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
]


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)


def _where(tb: tracemalloc.Traceback) -> str:
    """The allocating frame, plus the innermost frame of this project's code above it."""
    leaf = tb[-1] if tb else None  # traceback is oldest-first with most_recent_first=False
    ours = next(
        (f for f in reversed(tb) if "/work/" in f.filename and "/venv/" not in f.filename), None
    )

    def fmt(f):
        return f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno}"

    text = fmt(leaf) if leaf else "?"
    if ours is not None and ours is not leaf:
        text += f" <- {fmt(ours)}"
    return text


def bench_mem(label: str, top: int = 12) -> dict:
    gc.collect()
    snap = tracemalloc.take_snapshot().filter_traces(_FILTERS)
    first = next(iter(_snapshots.values()), None)
    _snapshots.setdefault(label, snap)
    out = {
        "pid": os.getpid(),
        "rss_mb": _rss_mb(),
        "traced_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
        "traced_peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 2),
    }
    if first is not None and first is not snap:
        diff = snap.compare_to(first, "traceback")
        out["growth_since_first"] = [
            {
                "where": _where(d.traceback),
                "size_kb": round(d.size_diff / 1024, 1),
                "count": d.count_diff,
            }
            for d in sorted(diff, key=lambda d: -d.size_diff)[:top]
        ]
        lines = snap.compare_to(first, "filename")
        out["growth_by_file"] = [
            {
                "file": "/".join(str(d.traceback[0].filename).split("/")[-3:]),
                "size_kb": round(d.size_diff / 1024, 1),
            }
            for d in sorted(lines, key=lambda d: -d.size_diff)[:top]
        ]
    return out


REQUEST_KEY = "bench:mem:request"


def result_key(pid: int, label: str) -> str:
    return f"bench:mem:{pid}:{label}"


def _watch() -> None:
    client = redis.Redis.from_url(load_settings().redis_url)
    done: set[bytes] = set()
    while True:
        try:
            label = client.get(REQUEST_KEY)
            if label and label not in done:
                done.add(label)
                out = bench_mem(label.decode())
                client.set(result_key(os.getpid(), label.decode()), json.dumps(out), ex=3600)
        except redis.RedisError:
            pass
        time.sleep(0.2)


threading.Thread(target=_watch, name="bench-memtrace", daemon=True).start()
