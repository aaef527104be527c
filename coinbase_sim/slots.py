"""A fixed-capacity string-keyed table in shared memory, visible to every forked process.

Serving processes must agree on per-name state (counters, sliding windows)
without a round trip to a coordinator, so the state lives in an anonymous
shared mmap created before fork.  Open addressing by a stable hash (crc32,
not the per-process `hash`), and an epoch stamp per slot so `clear()` is O(1).
Pages are zero-filled on first touch, so a large capacity costs only what is used.

Callers hold `table.lock` around `get`, the payload access and `clear`.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import zlib
from collections.abc import Iterator
from typing import Any

NAME_BYTES = 120  # longer names are truncated (key names are ~100 bytes)


class _Header(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_uint64), ("used", ctypes.c_uint64)]


class SlotTable:
    """Maps names to zero-initialised `payload` ctypes structures in shared memory."""

    def __init__(self, capacity: int, payload: type[ctypes.Structure]) -> None:
        class Slot(ctypes.Structure):
            _fields_ = [
                ("epoch", ctypes.c_uint64),
                ("length", ctypes.c_uint32),
                ("name", ctypes.c_char * NAME_BYTES),
                ("data", payload),
            ]

        self.capacity = capacity
        self.lock = multiprocessing.get_context("fork").Lock()
        header_size = ctypes.sizeof(_Header)
        order_size = ctypes.sizeof(ctypes.c_uint32) * capacity
        size = header_size + order_size + ctypes.sizeof(Slot) * capacity
        self._memory = mmap.mmap(-1, size)  # MAP_SHARED | MAP_ANONYMOUS: survives fork
        self._header = _Header.from_buffer(self._memory)
        self._order = (ctypes.c_uint32 * capacity).from_buffer(self._memory, header_size)
        self._slots = (Slot * capacity).from_buffer(self._memory, header_size + order_size)
        self._header.epoch = 1
        self._cache: dict[str, Any] = {}
        self._cache_epoch = 1

    def get(self, name: str) -> Any | None:
        """The payload of `name`, claiming a zeroed slot if new; None when the table is full."""
        header = self._header
        if self._cache_epoch != header.epoch:
            self._cache.clear()
            self._cache_epoch = header.epoch
        data = self._cache.get(name)
        if data is not None:
            return data
        raw = name.encode()[:NAME_BYTES]
        index = zlib.crc32(raw) % self.capacity
        for _ in range(self.capacity):
            slot = self._slots[index]
            if slot.epoch != header.epoch:
                if header.used >= self.capacity:
                    return None
                ctypes.memset(ctypes.addressof(slot.data), 0, ctypes.sizeof(slot.data))
                slot.name = raw
                slot.length = len(raw)
                slot.epoch = header.epoch
                self._order[header.used] = index
                header.used += 1
                break
            if slot.length == len(raw) and slot.name == raw:
                break
            index = (index + 1) % self.capacity
        else:
            return None
        self._cache[name] = slot.data
        return slot.data

    def items(self) -> Iterator[tuple[str, Any]]:
        """(name, payload) of every live slot, in order of first use."""
        for i in range(self._header.used):
            slot = self._slots[self._order[i]]
            yield slot.name[: slot.length].decode(errors="replace"), slot.data

    def clear(self) -> None:
        """Forget every name (slots are re-zeroed when claimed again)."""
        self._header.epoch += 1
        self._header.used = 0
