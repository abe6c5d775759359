"""A change counter shared by every process of one machine that uses a workspace's store.

Each committed write to the store bumps an 8-byte counter in ``.flowlet/changes``; a server
maps the file and compares it with the value it saw at its last reload, a memory read per
request. So the request right after a `flowlet secrets ...` command returns sees the change,
without a query per request. Servers on other machines learn of changes from the store itself
(PostgreSQL notifications, the poll).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_COUNTER = struct.Struct("=Q")


class ChangeCounter:
    def __init__(self, path: Path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNTER.size:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    if os.fstat(fd).st_size < _COUNTER.size:
                        os.ftruncate(fd, _COUNTER.size)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, _COUNTER.size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def read(self) -> bytes:
        return self._map[:_COUNTER.size]

    def bump(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)      # a lock of its own kind: SQLite's are POSIX locks
        try:
            _COUNTER.pack_into(self._map, 0, (_COUNTER.unpack_from(self._map, 0)[0] + 1) % (1 << 64))
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def open_counter(state_dir: Path) -> ChangeCounter | None:
    """The workspace's counter, or None when its folder cannot hold one (read-only, missing)."""
    try:
        return ChangeCounter(state_dir / "changes")
    except (OSError, ValueError):
        return None
