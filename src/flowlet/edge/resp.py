"""A small pipelined Redis connection for the rate-limit hot path.

redis-py's asyncio client spends 60-90 µs of CPU per command here (connection pool, locks,
stream reader): more than a whole Flowlet request. This connection is one asyncio
:class:`~asyncio.Protocol`: commands are written back to back, replies come back in order and
resolve futures in FIFO order. It speaks only what the counters need (RESP2 replies: simple
strings, errors, integers, bulk strings, arrays). Everything else stays with redis-py.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``)."""


def pack(*args: Any) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8", "surrogatepass")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse(buf: bytes, pos: int = 0) -> tuple[Any, int] | None:
    """One reply starting at ``pos`` -> (value, next position), or None when incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    pos = end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            return None
        return buf[pos:pos + size], pos + size + 2
    if kind == b"*":
        count = int(line)
        items = []
        for _ in range(max(count, 0)):
            got = parse(buf, pos)
            if got is None:
                return None
            item, pos = got
            items.append(item)
        return (items if count >= 0 else None), pos
    raise ReplyError(f"unexpected reply type {kind!r}")


class RespConnection(asyncio.Protocol):
    """One connection; :meth:`send` returns a future for the reply (an exception on error)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future] = deque()
        self.buf = b""
        self.closed = False
        self.replies = 0              # replies read so far: a watchdog sees whether Redis is answering

    @classmethod
    async def open(cls, url: str, timeout: float) -> "RespConnection":
        """Connect, authenticate and select the database named by a redis:// URL."""
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        proto = cls()
        async with asyncio.timeout(timeout):
            if parts.scheme == "unix":
                await loop.create_unix_connection(lambda: proto, parts.path)
            else:
                ctx = _ssl.create_default_context() if parts.scheme == "rediss" else None
                await loop.create_connection(lambda: proto, parts.hostname or "127.0.0.1", parts.port or 6379,
                                             ssl=ctx)
            if parts.password is not None:
                auth = (parts.username, parts.password) if parts.username else (parts.password,)
                await proto.call("AUTH", *(unquote(a) for a in auth))
            db = parts.path.strip("/") if parts.scheme != "unix" else ""
            if db and db != "0":
                await proto.call("SELECT", db)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        try:
            while self.waiters:
                got = parse(buf, pos)
                if got is None:
                    break
                value, pos = got
                self.replies += 1
                fut = self.waiters.popleft()
                if not fut.done():
                    if isinstance(value, ReplyError):
                        fut.set_exception(value)
                    else:
                        fut.set_result(value)
        except (ValueError, ReplyError) as exc:          # a garbled stream: this connection is done
            self.fail(ConnectionError(f"unreadable reply from Redis: {exc}"))
            return
        self.buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError("connection to Redis lost"))

    def fail(self, exc: Exception) -> None:
        self.closed = True
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, *args: Any) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            fut.set_exception(ConnectionError("connection to Redis closed"))
            return fut
        self.waiters.append(fut)
        self.transport.write(pack(*args))
        return fut

    async def call(self, *args: Any) -> Any:
        return await self.send(*args)

    def close(self) -> None:
        self.fail(ConnectionError("connection to Redis closed"))
