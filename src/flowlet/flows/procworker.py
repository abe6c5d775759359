"""A worker process for `isolation: process` function steps (run as ``python -m``).

Started with the workspace root, the ``module:callable`` and the memory cap. Reads calls on
stdin and writes replies on stdout, each a 4-byte big-endian length and a JSON document:
``{"kwargs": {...}}`` -> ``{"ok": result}`` or ``{"error": "Type: message", "trace": "...",
"memory": bool}``. It dies with its parent (parent-death signal, and end of stdin).
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import importlib
import inspect
import json
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
from typing import BinaryIO, Callable

from flowlet.errors import HTTPError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass          # not Linux: the end of stdin still ends an idle worker


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _resolve(root: str, target: str) -> Callable:
    sys.path.insert(0, root)
    module_name, _, attr = target.partition(":")
    func = importlib.import_module(module_name)
    for part in attr.split("."):
        func = getattr(func, part)
    return func


def _call(func: Callable, kwargs: dict) -> dict:
    try:
        result = func(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except MemoryError:
        return {"error": "MemoryError: the step passed its memory_mb", "memory": True}
    except HTTPError as exc:
        # An answer the function chose (a 4xx): it crosses whole, as the thread default would raise it.
        return {"raise": base64.b64encode(pickle.dumps(exc)).decode("ascii")}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return {"error": f"the result is not JSON: {exc}"}
    return {"ok": result}


async def _await(awaitable):
    return await awaitable


def main() -> None:
    root, target, memory_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _die_with_parent()
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)             # the function's print() goes to stderr, not into the replies
    calls = sys.stdin.buffer
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        func = _resolve(root, target)
        failure = None
    except Exception as exc:
        func, failure = None, {"error": f"cannot load {target}: {type(exc).__name__}: {exc}"}
    while True:
        head = _read_exact(calls, 4)
        if head is None:
            return
        body = _read_exact(calls, struct.unpack(">I", head)[0])
        if body is None:
            return
        reply = failure or _call(func, json.loads(body)["kwargs"])
        try:
            data = json.dumps(reply, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")
        except MemoryError:
            data = b'{"error": "MemoryError: the step passed its memory_mb", "memory": true}'
        replies.write(struct.pack(">I", len(data)) + data)
        replies.flush()


if __name__ == "__main__":
    main()
