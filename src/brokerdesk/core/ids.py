"""Identifiers: UUIDv7, time-ordered so that new rows land at the end of an index.

Built here rather than by a library call because ids are made on the ledger's hot path (two
or three per transfer): RFC 9562 layout — 48 bits of Unix milliseconds, version 7, a 12-bit
counter that keeps ids made in the same millisecond by this process increasing (method 1 of
§6.2, starting at a random value in its lower half), the variant, and 62 random bits.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_VERSION_7 = 0x7000
_VARIANT = 0x8000_0000_0000_0000
_RANDOM_62 = (1 << 62) - 1
_COUNTER_MAX = 0xFFF

_POOL_IDS = 512  # random bytes are read from the OS for this many ids at a time

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_pool = b""
_offset = 0
_new_uuid = object.__new__
_set = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _random_bytes() -> bytes:
    """Ten bytes from the operating system's CSPRNG, read in blocks (one system call per
    512 ids instead of one per id)."""
    global _pool, _offset
    if _offset >= len(_pool):
        _pool, _offset = os.urandom(10 * _POOL_IDS), 0
    chunk = _pool[_offset : _offset + 10]
    _offset += 10
    return chunk


def _forget_pool() -> None:
    """After a fork: the child reads its own bytes (never the parent's, never twice)."""
    global _pool, _offset, _lock
    _pool, _offset, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def new_id() -> uuid.UUID:
    """Return a new UUIDv7, greater than every id this process made before."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    with _lock:
        rand = int.from_bytes(_random_bytes(), "big")
        if ms > _last_ms:
            _last_ms, _counter = ms, rand >> 69  # 11 random bits: room to count up
        elif _counter < _COUNTER_MAX:
            _counter += 1
        else:  # 4,096 ids in one millisecond: borrow the next millisecond
            _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    # The fields set directly (what uuid.UUID(int=…) does after checks this value passes).
    value = _new_uuid(uuid.UUID)
    _set(value, "int", (ms << 80) | ((_VERSION_7 | counter) << 64) | _VARIANT | (rand & _RANDOM_62))
    _set(value, "is_safe", _SAFE_UNKNOWN)
    return value
