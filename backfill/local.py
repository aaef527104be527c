"""Run Celery worker processes locally: for `backfill demo`/`run`, the tests and the benchmarks.

Workers are real `celery -A backfill worker` processes; they get credentials through their
environment or key file, and their queues from the configuration (no `-Q`: celeryconfig's
task_queues, in priority order), exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path


class CeleryProcess:
    """A `celery -A backfill ...` process in its own session, logging to a file."""

    def __init__(
        self, env: dict[str, str], args: list[str], log_path: Path | None = None, nice: int = 0
    ):
        self.env = env
        self.args = [sys.executable, "-m", "celery", "-A", "backfill", *args]
        if nice:  # every thread and pool process inherits it (the bench: workers yield the CPU)
            self.args = ["nice", "-n", str(nice), *self.args]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._terminating = False

    def start(self) -> CeleryProcess:
        env = {**os.environ, **self.env}
        if self.log_path:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        out = self._log or subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._terminating = False
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> list[int]:
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """Ask for a warm shutdown (finish, then exit) without waiting for it."""
        if self.proc and self.proc.poll() is None and not self._terminating:
            self._terminating = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log:
            self._log.close()
            self._log = None


def stop_all(processes: Iterable[CeleryProcess], timeout: float = 15.0) -> None:
    """Warm-stop every process at once: a fleet shuts down in one node's time (about 2 s
    for a prefork node), not in the sum of them. A process not gone by `timeout` is killed."""
    procs = list(processes)
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.stop(max(0.1, deadline - time.monotonic()))


class BeatProcess(CeleryProcess):
    """`celery -A backfill beat`: the keeper's clock (see backfill/schedule.py)."""

    def __init__(self, env: dict[str, str], *, log_path: Path | None = None) -> None:
        super().__init__(env, ["beat", "-l", "INFO"], log_path)


class WorkerProcess(CeleryProcess):
    def __init__(
        self,
        env: dict[str, str],
        *,
        name: str | None = None,
        concurrency: int = 2,
        pool: str = "prefork",
        queues: list[str] | None = None,
        log_path: Path | None = None,
        loglevel: str = "INFO",
        extra_args: list[str] | None = None,
        nice: int = 0,
    ) -> None:
        self.name = name or f"w{uuid.uuid4().hex[:6]}@%h"
        # No -Q by default: like production, the worker consumes every configured queue in
        # the configuration's order. `queues` only for tests of a deliberately partial worker.
        args = [
            "worker",
            "-n",
            self.name,
            *(["-Q", ",".join(queues)] if queues else []),
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-l",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            *(extra_args or []),
        ]
        super().__init__(env, args, log_path, nice)


def wait_for_workers(app, names: int, timeout: float = 60.0) -> list[str]:
    """Wait until `names` workers answer a ping (a condition with a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        seen = [next(iter(r)) for r in replies]
        if len(seen) >= names:
            return seen
    raise TimeoutError(f"only {len(seen)} of {names} workers answered within {timeout:.0f}s")
