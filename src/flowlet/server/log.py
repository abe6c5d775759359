"""Structured logs: one JSON object per line on stderr. Access lines are buffered and flushed
by the event loop a few times a second, so a request never waits on a write."""

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": secret_mask(record.getMessage())}
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        if record.exc_info:
            out["exc"] = secret_mask(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("flowlet")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


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
        self.lines: list[str] = []
        self._scheduled = False
        self._ms = 0
        self._ts = ""
        self._wall = time.time() - time.perf_counter()   # re-read at each flush: no drift to speak of
        self._clients: dict[str | None, str] = {}         # client -> its field: few distinct ones

    def record(self, method: str, path: str, status: int, started: float, request_id: str,
               loop: asyncio.AbstractEventLoop | None = None, client: str | None = None) -> None:
        if not self.enabled:
            return
        # Formatting numbers is most of a line's cost: durations under 2 ms and statuses come
        # from tables, and the timestamp text is made once per millisecond.
        now = time.perf_counter()
        us = int((now - started) * 1e6)
        now_ms = int((now + self._wall) * 1000)    # one clock read: wall time from the monotonic one
        if now_ms != self._ms:
            self._ms = now_ms
            self._ts = f"{now_ms // 1000}.{now_ms % 1000:03d}"
        # Paths are nearly always plain; only escape the ones that need it.
        quoted = f'"{path}"' if path.isascii() and path.isprintable() and '"' not in path and "\\" not in path \
            else json.dumps(path, ensure_ascii=False)
        self.lines.append(
            f'{{"ts":{self._ts},"level":"info","logger":"flowlet.access","method":"{method}",'
            f'"path":{quoted},"status":{_STATUS[status]},'
            f'"duration_ms":{_DURATION[us] if us < _DURATION_TABLE else _ms(us)},"request_id":"{request_id}"'
            f'{self._clients.get(client) or self._client(client)}}}\n')
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
        self._wall = time.time() - time.perf_counter()
        if not self.lines:
            return
        data = secret_mask("".join(self.lines)).encode("utf-8", "replace")
        self.lines.clear()
        try:
            os.write(self.fd, data)
        except OSError:
            pass
