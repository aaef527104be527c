"""The compose deploy, run for real: `scripts/compose-smoke` against a Docker engine.

It builds the image, brings up the sim profile with two workers and beat, waits for
dispatch and the indicator, checks Flower's auth (401 without credentials, 200 with),
re-runs with a key the way the README says (the worker count must hold), and tears
everything down. Skipped, with the reason, where no Docker engine with Compose v2.26+
answers, or where BACKFILL_SKIP_COMPOSE_SMOKE=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scripts" / "compose-smoke"
BUDGET_S = 900  # the script's own bound (SMOKE_TIMEOUT_S); the test allows a margin


def _missing_prerequisite() -> str | None:
    """Why the smoke cannot run here, or None."""
    if os.environ.get("BACKFILL_SKIP_COMPOSE_SMOKE") == "1":
        return "BACKFILL_SKIP_COMPOSE_SMOKE=1"
    for tool in ("docker", "curl", "timeout"):
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)

    try:
        info = run("docker", "info", "--format", "{{.ServerVersion}}")
        if info.returncode != 0 or not info.stdout.strip():
            reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
            return f"no Docker engine answers `docker info`: {reason}"
        compose = run("docker", "compose", "version", "--short")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker did not answer: {exc}"
    if compose.returncode != 0:
        return "no Compose v2 (`docker compose version` failed)"
    match = re.match(r"v?(\d+)\.(\d+)", compose.stdout.strip())
    if not match or (int(match[1]), int(match[2])) < (2, 26):
        return f"Compose {compose.stdout.strip()!r} is older than v2.26"
    return None


@pytest.mark.slow
@pytest.mark.timeout(BUDGET_S + 180)
def test_compose_smoke():
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(f"compose smoke needs a Docker engine with Compose v2.26+: {reason}")
    env = {**os.environ, "SMOKE_TIMEOUT_S": str(BUDGET_S)}
    proc = subprocess.run(
        [str(SMOKE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUDGET_S + 120,
        check=False,
    )
    summary = "\n".join(
        line for line in proc.stdout.splitlines() if line.startswith("[compose-smoke")
    )
    print(summary)
    tail = f"{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{tail}"
    assert "flower /api/workers: 401 without credentials, 200 with them" in proc.stdout
    assert re.search(r"keyed re-run: 2 worker\(s\) running, 2 healthy; beat: 1", proc.stdout)
    assert re.search(r"--full re-run: 2 worker\(s\) running, 2 healthy; beat: 1", proc.stdout)
    assert "PASS:" in proc.stdout
