"""Live settings and minted keys, shared by every serving process.

A POST /_sim/config or /_sim/keys lands in one process but must hold in all,
so both live in a SharedDocument: a JSON value in an anonymous shared mmap,
replaced whole under a lock and stamped with a generation.  Readers compare
the generation (one memory read) per request and re-parse only when it moved.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import multiprocessing
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization

from coinbase_sim.config import ConfigError, Settings, SettingsStore, apply_changes, settings_of
from coinbase_sim.keys import KeyRegistry, PrivateKey, PublicKey
from coinbase_sim.shared_limits import WINDOW_CAPACITY


class _Header(ctypes.Structure):
    _fields_ = [("generation", ctypes.c_uint64), ("length", ctypes.c_uint64)]


class SharedDocument:
    """One JSON value every forked process reads and replaces atomically."""

    def __init__(self, value: Any, size: int = 1 << 20) -> None:
        self._lock = multiprocessing.get_context("fork").Lock()
        self._memory = mmap.mmap(-1, size)
        self._header = _Header.from_buffer(self._memory)
        self._offset = ctypes.sizeof(_Header)
        self._write(value)

    @property
    def generation(self) -> int:
        """Bumped on every replacement."""
        return self._header.generation

    def read(self) -> tuple[int, Any]:
        """(generation, value) as of now."""
        with self._lock:
            end = self._offset + self._header.length
            return self._header.generation, json.loads(self._memory[self._offset : end])

    def update(self, change: Callable[[Any], Any]) -> Any:
        """Replace the value by change(value) under the lock; return the new value."""
        with self._lock:
            end = self._offset + self._header.length
            value = change(json.loads(self._memory[self._offset : end]))
            self._write(value)
            return value

    def _write(self, value: Any) -> None:
        data = json.dumps(value).encode()
        if self._offset + len(data) > len(self._memory):
            raise ConfigError("shared document full")
        self._memory[self._offset : self._offset + len(data)] = data
        self._header.length = len(data)
        self._header.generation += 1


class SharedSettingsStore(SettingsStore):
    """SettingsStore whose updates reach every process sharing `document`."""

    def __init__(self, settings: Settings, document: SharedDocument) -> None:
        super().__init__(settings)
        _check_rates(settings)
        self._document = document
        self._seen = document.generation

    @property
    def current(self) -> Settings:
        """The settings in force in all processes (re-read when another process changed them)."""
        if self._document.generation != self._seen:
            generation, public = self._document.read()
            self._settings, self._seen = settings_of(public), generation
        return self._settings

    def update(self, changes: dict[str, Any]) -> Settings:
        """Apply a partial update for every process; raise ConfigError on any bad entry."""

        def change(public: dict[str, Any]) -> dict[str, Any]:
            settings = apply_changes(settings_of(public), changes)
            _check_rates(settings)
            return settings.public()

        self._document.update(change)
        return self.current


def _check_rates(settings: Settings) -> None:
    """The shared windows keep WINDOW_CAPACITY timestamps: beyond, limits would not be exact."""
    if max(settings.key_rate, settings.ip_rate) > WINDOW_CAPACITY:
        raise ConfigError(f"rates above {WINDOW_CAPACITY}/s need --processes 1")


class SharedKeyRegistry(KeyRegistry):
    """KeyRegistry where a key minted in one process is trusted by all (public keys shared)."""

    def __init__(self, document: SharedDocument) -> None:
        super().__init__()
        self._document = document
        self._seen = -1

    def add(self, name: str, private_key: PrivateKey) -> None:
        """Trust tokens signed by this key under this name, in every process."""
        pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        super().add(name, private_key)
        self._document.update(lambda keys: {**keys, name: pem.decode()})

    def names(self) -> list[str]:
        """Names of the keys trusted in every process."""
        self._sync()
        return super().names()

    def verify(self, token: str, path: str, host: str | None) -> str | None:
        """KeyRegistry.verify after picking up keys minted by other processes."""
        self._sync()
        return super().verify(token, path, host)

    def _sync(self) -> None:
        if self._document.generation == self._seen:
            return
        generation, keys = self._document.read()
        loaded: dict[str, PublicKey] = {}
        for name, pem in keys.items():
            if name not in self._keys:
                loaded[name] = serialization.load_pem_public_key(pem.encode())  # type: ignore[assignment]
        with self._lock:
            self._keys.update(loaded)
        self._seen = generation
