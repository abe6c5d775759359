"""Structured logs: one JSON object per line on stderr (``--log-format text``: one readable line).

Every line has ``ts`` (Unix seconds), ``level``, ``logger`` and ``msg``, then its own fields.
Access lines are buffered and flushed by the event loop a few times a second, so a request
never waits on a write; any other line first flushes that buffer, so the timestamps of one
process's lines increase down the stream."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from flowlet.errors import HTTPError

FORMAT_ENV = "FLOWLET_LOG_FORMAT"
_buffers: list["AccessLog"] = []          # the access logs of this process, flushed before other lines


def _text_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage(), "pid": record.process}
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_text_time(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        rid = getattr(record, "request_id", None)
        if rid:
            line += f" [{rid}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _Handler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        for buffer in _buffers:
            buffer.flush()
        super().emit(record)


def log_format() -> str:
    return "text" if os.environ.get(FORMAT_ENV) == "text" else "json"


def setup_logging(level: str = "info") -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format() == "text" else JsonFormatter())
    root = logging.getLogger("flowlet")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def granian_log_config() -> dict:
    """granian's own lines (its warnings and errors) in the same style, on stderr."""
    formatter = "flowlet.server.log.TextFormatter" if log_format() == "text" else "flowlet.server.log.JsonFormatter"
    handler = {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {"formatters": {"generic": {"()": formatter}}, "handlers": {"console": handler, "access": handler}}


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


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
        self.text = log_format() == "text"
        self.lines: list[str] = []
        self._scheduled = False
        _buffers.append(self)

    def record(self, method: str, path: str, status: int, started: float, request_id: str, loop,
               client: str | None = None, refusal: HTTPError | None = None) -> None:
        if not self.enabled:
            return
        ms = (time.perf_counter() - started) * 1000
        now = time.time()
        # A refusal's stage and reason are fixed words; the message never holds a secret either.
        why = refusal.stage if refusal is not None else None
        if self.text:
            line = f"{_text_time(now)} INFO    flowlet.access: {method} {json.dumps(path)[1:-1]} {status} {ms:.1f}ms"
            if client is not None:
                line += f" from {json.dumps(client)[1:-1]}"
            if why is not None:
                line += f" refused by {why}: {refusal.reason}"
            self.lines.append(f"{line} [{request_id}]\n")
        else:
            # Paths are nearly always plain; only escape the ones that need it.
            quoted = f'"{path}"' if _plain(path) else json.dumps(path, ensure_ascii=False)
            extra = f',"stage":"{why}","reason":"{refusal.reason}"' if why is not None else ""
            self.lines.append(
                f'{{"ts":{now:.6f},"level":"info","logger":"flowlet.access","msg":"{method} {status}",'
                f'"method":"{method}","path":{quoted},"status":{status},"duration_ms":{ms:.3f},'
                f'"request_id":"{request_id}"{_client_field(client)}{extra}}}\n')
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
