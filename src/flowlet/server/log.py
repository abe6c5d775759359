"""Structured logs: one JSON object per line on stderr. Access lines are buffered and flushed
by the event loop a few times a second, so a request never waits on a write."""

from __future__ import annotations

import json
import logging
import os
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("flowlet")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _client_field(client: str | None) -> str:
    # an address, or an obfuscated RFC 7239 identifier (token characters): no escaping needed
    if client is None:
        return ""
    return f',"client":"{client}"' if client.isprintable() and '"' not in client and "\\" not in client \
        else f',"client":{json.dumps(client)}'


class AccessLog:
    """Buffered access log: ``record`` appends a line; ``flush`` writes them in one call."""

    def __init__(self, enabled: bool = True, fd: int = 2):
        self.enabled = enabled
        self.fd = fd
        self.lines: list[str] = []
        self._scheduled = False

    def record(self, method: str, path: str, status: int, started: float, request_id: str, loop,
               client: str | None = None) -> None:
        if not self.enabled:
            return
        ms = (time.perf_counter() - started) * 1000
        # Paths are nearly always plain; only escape the ones that need it.
        quoted = f'"{path}"' if path.isascii() and path.isprintable() and '"' not in path and "\\" not in path \
            else json.dumps(path, ensure_ascii=False)
        self.lines.append(
            f'{{"ts":{time.time():.3f},"level":"info","logger":"flowlet.access","method":"{method}",'
            f'"path":{quoted},"status":{status},"duration_ms":{ms:.3f},"request_id":"{request_id}"'
            f'{_client_field(client)}}}\n')
        if not self._scheduled:
            self._scheduled = True
            loop.call_later(0.2, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self.lines:
            return
        data = "".join(self.lines).encode("utf-8", "replace")
        self.lines.clear()
        try:
            os.write(self.fd, data)
        except OSError:
            pass
