"""A per-request timeline for the bench: when each request was reserved, sent, answered
and written, and when each task began and ended (`bench/timeline.py` reads it).

Off unless `BACKFILL_TRACE` names a folder; then every worker process appends
`<wall time> <thread> <event> [detail]` lines to `<folder>/trace-<pid>.txt`. One thread runs one
task at a time, so a thread's lines in order are its tasks and their requests.
"""

from __future__ import annotations

import os
import threading
import time

TRACE_ENV = "BACKFILL_TRACE"
EVENTS = ("task", "reserve", "sent", "answered", "written", "done")


class Trace:
    def __init__(self, folder: str | None) -> None:
        self.folder = folder or None
        self._lock = threading.Lock()

    def mark(self, event: str, detail: str = "") -> None:
        if self.folder is None:
            return
        line = f"{time.time():.6f} {threading.get_ident()} {event} {detail}".rstrip() + "\n"
        with self._lock, open(f"{self.folder}/trace-{os.getpid()}.txt", "a") as f:
            f.write(line)


trace = Trace(os.environ.get(TRACE_ENV))
