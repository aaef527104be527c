"""Serve one simulator from several processes on one port: a pre-forked accept loop.

One Python process tops out near one core (the GIL), which made the simulator
the bottleneck of scale benchmarks.  The parent binds the port and builds the
shared state (SimState with processes > 1), then forks workers that all accept
on the same non-blocking listening socket; whichever is free takes the next
connection.  The parent only supervises: SIGTERM/SIGINT stop every worker, and
a worker stops by itself when the parent dies (its end of a pipe reads EOF).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from coinbase_sim.config import Settings
from coinbase_sim.quietgc import keep_collections_short
from coinbase_sim.server import SimServer, SimState

STOP_GRACE_S = 5.0


def serve(host: str, port: int, settings: Settings, on_listening: Callable[[str], None]) -> int:
    """Serve until SIGTERM/SIGINT or a worker dies; return a process exit code."""
    state = SimState(settings)
    listener = socket.create_server((host, port), backlog=1024)
    listener.setblocking(False)  # a worker that loses the accept race gets EAGAIN, not a hang
    url = "http://{}:{}".format(*listener.getsockname()[:2])
    lifeline_read, lifeline_write = os.pipe()
    workers: list[int] = []
    for index in range(settings.processes):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(lifeline_write)
            code = 1
            try:
                code = _work(state, listener, index, settings.processes, lifeline_read)
            finally:
                os._exit(code)
        workers.append(pid)
    os.close(lifeline_read)
    listener.close()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        on_listening(url)
        pid, status = os.wait()  # a worker only exits early on a crash
        workers.remove(pid)
        print(f"coinbase_sim: worker {pid} exited ({status}); stopping", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        _stop(workers)
        os.close(lifeline_write)
    return code


def _work(state: SimState, listener: socket.socket, index: int, count: int, lifeline: int) -> int:
    """Body of worker `index`: serve on the shared listener until told to stop."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    state.as_worker(index, count)
    server = SimServer(listener.getsockname(), state, listener=listener)
    keep_collections_short(state.stopping)

    def watch_parent() -> None:
        with contextlib.suppress(OSError):
            os.read(lifeline, 1)  # EOF once the parent (the only writer) is gone
        server.shutdown()

    threading.Thread(target=watch_parent, name="coinbase-sim-lifeline", daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        state.stopping.set()
        server.server_close()
    return 0


def _stop(workers: list[int]) -> None:
    """SIGTERM every worker; SIGKILL those still alive after STOP_GRACE_S."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    pending = set(workers)
    while pending:
        for pid in list(pending):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            pending.discard(pid)
        if pending and time.monotonic() > deadline:
            for pid in pending:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        elif pending:
            time.sleep(0.01)
