"""Structured logs: one JSON object per line on stderr (``--log-format text``: one readable line).

Every line has ``ts`` (Unix seconds), ``level``, ``logger`` and ``msg``, then its own fields.
Access lines are buffered and flushed by the event loop a few times a second, so a request
never waits on a write; any other line first flushes that buffer, so the timestamps of one
process's lines increase down the stream."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import sys
import time
from typing import Iterable

from flowlet.secrets.model import JwtSecret, Secret, ValueSecret
from flowlet.secrets.view import SecretsView

# Shorter pieces are not masked: they would blot out ordinary words (CI systems do the same).
MIN_MASKED = 4
MASK = "***"


class SecretMask:
    """Every current secret value (value secrets, HS keys), as it is written and as a repr or
    JSON string would escape it, replaced by ``***``. The matcher is compiled when the secrets
    change; a line without secrets costs one regex scan."""

    def __init__(self) -> None:
        self._pattern: re.Pattern[str] | None = None

    def update(self, secrets: Iterable[Secret]) -> None:
        pieces: set[str] = set()
        for secret in secrets:
            for text in _secret_texts(secret):
                pieces.update(_written_forms(text))
        pieces = {p for p in pieces if len(p) >= MIN_MASKED}
        # Longest first, so a value that contains another is masked whole.
        alternatives = "|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True))
        self._pattern = re.compile(alternatives) if pieces else None

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)


def _secret_texts(secret: Secret) -> list[str]:
    if isinstance(secret, ValueSecret):
        return [secret.value]
    if isinstance(secret, JwtSecret) and secret.hs_key is not None:
        key = secret.hs_key
        # As text, as a bytes repr, and as a key is shown in JSON Web Keys and hex dumps.
        return [key.decode("utf-8", "replace"), repr(key)[2:-1], key.hex(),
                base64.urlsafe_b64encode(key).decode().rstrip("="), base64.b64encode(key).decode().rstrip("=")]
    return []        # Basic secrets hold hashes; key material of other JWT secrets is public or never logged


def _written_forms(text: str) -> set[str]:
    """The text, its repr and JSON escapes, and each of its lines (a multi-line value is
    often printed a line at a time)."""
    forms = {text, repr(text)[1:-1], json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    forms.update(line for line in text.splitlines() if line.strip())
    return forms


secret_mask = SecretMask()     # one per process: every log line and the access log pass through it


def mask_secrets_of(view: SecretsView | None) -> None:
    """Mask the view's secrets from now on, and again after each change to them."""
    if view is None:
        return
    secret_mask.update(view.all())
    view.on_change(lambda _changed: secret_mask.update(view.all()))

from flowlet.errors import HTTPError

FORMAT_ENV = "FLOWLET_LOG_FORMAT"
_buffers: list["AccessLog"] = []          # the access logs of this process, flushed before other lines


def _text_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name,
               "msg": secret_mask(record.getMessage()), "pid": record.process}
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        if record.exc_info:
            out["exc"] = secret_mask(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_text_time(record.created)} {record.levelname:<7} {record.name}: {secret_mask(record.getMessage())}"
        rid = getattr(record, "request_id", None)
        if rid:
            line += f" [{rid}]"
        if record.exc_info:
            line += "\n" + secret_mask(self.formatException(record.exc_info))
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


def _ms(us: int) -> str:
    """Microseconds as milliseconds with three decimals."""
    return f"{us // 1000}.{us % 1000:03d}"


_DURATION_TABLE = 2000
_DURATION = tuple(_ms(us) for us in range(_DURATION_TABLE))
_STATUS = tuple(str(code) for code in range(600))


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
        self._clients: dict[str | None, str] = {}         # client -> its field: few distinct ones
        _buffers.append(self)

    def record(self, method: str, path: str, status: int, started: float, request_id: str,
               loop: asyncio.AbstractEventLoop | None = None, client: str | None = None,
               refusal: HTTPError | None = None) -> None:
        if not self.enabled:
            return
        # Formatting numbers is most of a line's cost: durations under 2 ms and statuses come
        # from tables. The wall clock is read as other lines read it, so the ts of one
        # process's lines increase down the stream.
        us = int((time.perf_counter() - started) * 1e6)
        now = time.time()
        # A refusal's stage and reason are fixed words; the message never holds a secret either.
        why = refusal.stage if refusal is not None else None
        if self.text:
            line = (f"{_text_time(now)} INFO    flowlet.access: {method} {json.dumps(path)[1:-1]} {status} "
                    f"{us / 1000:.1f}ms")
            if client is not None:
                line += f" from {json.dumps(client)[1:-1]}"
            if why is not None:
                line += f" refused by {why}: {refusal.reason}"
            self.lines.append(f"{line} [{request_id}]\n")
        else:
            # Paths are nearly always plain; only escape the ones that need it.
            quoted = f'"{path}"' if _plain(path) else json.dumps(path, ensure_ascii=False)
            code = _STATUS[status]
            extra = f',"stage":"{why}","reason":"{refusal.reason}"' if why is not None else ""
            self.lines.append(
                f'{{"ts":{now:.6f},"level":"info","logger":"flowlet.access","msg":"{method} {code}",'
                f'"method":"{method}","path":{quoted},"status":{code},'
                f'"duration_ms":{_DURATION[us] if us < _DURATION_TABLE else _ms(us)},"request_id":"{request_id}"'
                f'{self._clients.get(client) or self._client(client)}{extra}}}\n')
        if not self._scheduled:
            self._scheduled = True
            (loop or asyncio.get_running_loop()).call_later(0.2, self.flush)

    def _client(self, client: str | None) -> str:
        field = _client_field(client)
        if len(self._clients) >= 1024:
            self._clients.clear()
        self._clients[client] = field
        return field

    def flush(self) -> None:
        self._scheduled = False
        if not self.lines:
            return
        data = secret_mask("".join(self.lines)).encode("utf-8", "replace")
        self.lines.clear()
        try:
            os.write(self.fd, data)
        except OSError:
            pass
