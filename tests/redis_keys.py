"""Test keys in the shared Redis: a random prefix per test, deleted afterwards (never FLUSHALL)."""

from __future__ import annotations

import asyncio
import uuid

from flowlet.edge.resp import RespConnection

URL = "redis://127.0.0.1:6379/0"


def new_prefix() -> str:
    return f"flowlet-test:{uuid.uuid4().hex}:"


def drop(prefix: str) -> None:
    """Delete every key under ``prefix`` (SCAN, then DEL in batches)."""
    async def go() -> None:
        conn = await RespConnection.open(URL, 2.0)
        try:
            cursor = b"0"
            while True:
                cursor, keys = await conn.call("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
                if keys:
                    await conn.call("DEL", *keys)
                if cursor in (b"0", "0"):
                    return
        finally:
            conn.close()
    try:
        asyncio.run(go())
    except OSError:
        pass                     # no Redis: nothing was written
