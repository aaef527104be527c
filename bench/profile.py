"""py-spy during a scenario: `python -m bench --profile DIR` (scale run only).

One `py-spy record --format raw` per process (the simulator, every worker node with its
pool children), written to DIR as collapsed stacks, then summarised: the share of samples
per function, self and inclusive. Only threads holding the GIL are sampled (`--gil`):
for these pure-Python processes that is where the CPU goes, not where threads wait.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from bench.stack import log


def py_spy() -> str | None:
    import sys

    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """`with Profiler(dir, {"sim": pid, "worker1": pid}):` records each pid while inside."""

    def __init__(self, out_dir: Path, pids: dict[str, int], rate: int = 100) -> None:
        self.out_dir = Path(out_dir)
        self.pids = pids
        self.rate = rate
        self.procs: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> Profiler:
        exe = py_spy()
        if exe is None:
            log("profile: py-spy not found, not profiling")
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            out = self.out_dir / f"{name}.txt"
            self.procs[name] = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--subprocesses",
                    "--nonblocking",
                    "--gil",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(self.out_dir / f"{name}.err", "w"),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def summaries(self, top: int = 15) -> dict[str, dict]:
        return {name: summarize(self.out_dir / f"{name}.txt", top) for name in self.procs}


def _frame(f: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    name, _, where = f.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(where.split('/')[-2:])})" if where else name


def summarize(path: Path, top: int = 15) -> dict:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"samples": 0}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        # first element is the process/thread label; the rest are frames root -> leaf
        frames = [_frame(f) for f in stack.split(";")[1:]]
        if not frames:
            continue
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    pct = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "self_pct": {f: pct(c) for f, c in self_c.most_common(top)},
        "inclusive_pct": {f: pct(c) for f, c in incl.most_common(top * 2)},
    }
