"""Run the simulator as a subprocess: for tests, demos and the benchmark."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from coinbase_sim.cli import LISTENING
from coinbase_sim.keys import load_key_file, write_key_file

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class SimProcess:
    """`python -m coinbase_sim` in a child process, started on construction.

    Without key_files a fresh EC key is minted into a temporary file; the
    first key's name and secret are exposed as `key_name` / `key_secret`.
    Extra keyword arguments are /_sim/config settings applied at start.
    processes > 1 serves from that many forked processes sharing limits and stats.
    """

    def __init__(
        self,
        port: int = 0,
        seed: int = 1,
        key_files: list[str] | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 20.0,
        processes: int = 1,
        **config: Any,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="coinbase-sim-")
        if not key_files:
            key_path = os.path.join(self._tmp.name, "cdp_api_key.json")
            write_key_file(key_path, "ec")
            key_files = [key_path]
        self.key_files: list[str] = [str(f) for f in key_files]
        first = load_key_file(self.key_files[0])
        self.key_name: str = first.name
        self.key_secret: str = first.secret
        self._stderr = open(os.path.join(self._tmp.name, "stderr.log"), "w+b")  # noqa: SIM115
        command = [sys.executable, "-m", "coinbase_sim", "--host", host, "--port", str(port)]
        command += ["--seed", str(seed), "--processes", str(processes)]
        for path in self.key_files:
            command += ["--key-file", path]
        if config:
            command += ["--config", json.dumps(config)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        try:
            self.url: str = self._read_url(startup_timeout_s)
            self._wait_healthy(startup_timeout_s)
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------- lifecycle
    def _read_url(self, timeout_s: float) -> str:
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._proc.poll() is not None:
                    raise RuntimeError(f"simulator did not start: {self._stderr_text()}")
                if selector.select(min(remaining, 0.5)):
                    chunk = os.read(self._proc.stdout.fileno(), 4096)
                    if not chunk:
                        raise RuntimeError(f"simulator exited: {self._stderr_text()}")
                    buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode().strip()
        if not line.startswith(LISTENING + " "):
            raise RuntimeError(f"unexpected simulator output: {line!r}")
        return line.split(" ", 1)[1]

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._request("GET", "/_sim/health", timeout_s=2.0).get("status") == "ok":
                    return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError(f"simulator not healthy: {self._stderr_text()}")
            time.sleep(0.05)

    def _stderr_text(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the child, waiting up to timeout_s before killing it."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout_s)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()
        self._tmp.cleanup()

    @property
    def pid(self) -> int:
        """Process id of the simulator."""
        return self._proc.pid

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------- control API
    def _request(
        self, method: str, path: str, body: object | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """Counters of /_sim/stats."""
        return self._request("GET", "/_sim/stats")

    def reset(self) -> None:
        """Zero the stats (and rate windows, fault streams)."""
        self._request("POST", "/_sim/reset", {})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Partially update the run-time settings; returns all settings."""
        return self._request("POST", "/_sim/config", settings)

    def config(self) -> dict[str, Any]:
        """Current settings."""
        return self._request("GET", "/_sim/config")

    def mint_key(self, key_type: str = "ec", path: str | None = None) -> dict[str, str]:
        """Have the running simulator mint and trust a new key ({"name", "privateKey"})."""
        body: dict[str, str] = {"key_type": key_type}
        if path:
            body["path"] = str(path)
        return self._request("POST", "/_sim/keys", body)

    def klines(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list]:
        """The Binance personality's truth: every closed kline opened in [start, end]."""
        query = f"?interval={interval}&startTime={start_ms}&endTime={end_ms}"
        return self._request("GET", f"/_sim/klines/{symbol}{query}", timeout_s=60.0)

    def truth(self, product: str, granularity: str, start: int, end: int) -> list[dict[str, str]]:
        """All closed candles with start in [start, end], newest first."""
        query = f"?granularity={granularity}&start={start}&end={end}"
        return self._request("GET", f"/_sim/truth/{product}{query}", timeout_s=60.0)["candles"]
