"""The console's audit log: one JSON object per line in the workspace's .flowlet/audit.jsonl.

Each saved change names who, when, which file (or secret) and what changed. Secret material
never reaches it: a Basic user change names the user, a key change the key's ids.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

TAIL_BYTES = 256 * 1024        # how much of the end of the log is read back for the pages


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def write(self, user: str, **entry: object) -> dict:
        record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "user": user, **entry}
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))     # one write per record: lines never interleave
            finally:
                os.close(fd)
        return record

    def recent(self, limit: int = 20, **match: object) -> list[dict]:
        """The newest records (newest first) whose fields equal ``match``."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - TAIL_BYTES))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        out = []
        for line in reversed(lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue                     # a line cut by the tail window
            if isinstance(record, dict) and all(record.get(k) == v for k, v in match.items()):
                out.append(record)
                if len(out) >= limit:
                    break
        return out
