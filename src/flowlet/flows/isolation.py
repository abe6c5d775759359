"""`isolation: process`: a function step run in a pool of worker processes.

Each worker runs one call at a time under an address-space cap (RLIMIT_AS = ``memory_mb``).
Arguments and results cross as JSON. A call the flow stops waiting for (its timeout) has its
worker killed at once; a call that passes the cap fails (500) and its worker is replaced too.
Workers start on first use and stay for the next call; they die with the server.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

JSON = Any    # arguments and results: whatever JSON holds


class WorkerFailed(Exception):
    """The call failed in its worker; ``memory`` when it passed the cap (the worker is replaced)."""

    def __init__(self, message: str, memory: bool = False):
        super().__init__(message)
        self.memory = memory


class _Worker:
    __slots__ = ("proc", "_buffer")

    def __init__(self, root: Path, target: str, memory_mb: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowlet.flows.procworker", str(root), target, str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, close_fds=True)
        self._buffer = b""
        os.set_blocking(self.proc.stdout.fileno(), False)
        _LIVE.add(self.proc)

    async def call(self, kwargs: dict[str, JSON]) -> dict[str, JSON]:
        data = json.dumps({"kwargs": kwargs}, ensure_ascii=False).encode("utf-8", "surrogatepass")
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()
        return json.loads(await self._reply())

    async def _reply(self) -> bytes:
        loop = asyncio.get_running_loop()
        fd = self.proc.stdout.fileno()
        while True:
            if len(self._buffer) >= 4:
                size = struct.unpack(">I", self._buffer[:4])[0]
                if len(self._buffer) >= 4 + size:
                    reply, self._buffer = self._buffer[4:4 + size], self._buffer[4 + size:]
                    return reply
            readable = loop.create_future()
            loop.add_reader(fd, readable.set_result, None)
            try:
                await readable
            finally:
                loop.remove_reader(fd)
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise WorkerFailed(f"the worker process ended (exit code {self.proc.poll()})", memory=True)
            self._buffer += chunk

    def kill(self) -> None:
        _LIVE.discard(self.proc)
        self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(1)       # just killed: reaped at once, no zombie left behind
        except subprocess.TimeoutExpired:
            pass


class ProcessPool:
    """Worker processes for one function step; at most as many as its endpoint's bulkhead lets call."""

    def __init__(self, root: Path, target: str, memory_mb: int):
        self.root = root
        self.target = target
        self.memory_mb = memory_mb
        self._idle: list[_Worker] = []

    async def call(self, kwargs: dict[str, JSON]) -> JSON:
        worker = self._take()
        healthy = False
        try:
            reply = await worker.call(kwargs)
            healthy = not reply.get("memory")
        except OSError as exc:       # the pipe broke: the worker died under the call
            raise WorkerFailed(f"the worker process failed: {type(exc).__name__}") from None
        finally:
            # Cancelled (the flow timed out), broken pipe, over the cap: this worker goes.
            if healthy:
                self._idle.append(worker)
            else:
                worker.kill()
        if "ok" in reply:
            return reply["ok"]
        if "raise" in reply:       # an HTTPError the function raised on purpose, from our own worker
            raise pickle.loads(base64.b64decode(reply["raise"]))
        raise WorkerFailed(reply.get("error", "failed") + ("\n" + reply["trace"] if reply.get("trace") else ""),
                           memory=bool(reply.get("memory")))

    def _take(self) -> _Worker:
        """An idle worker still alive (one may have been killed from outside), or a new one."""
        while self._idle:
            worker = self._idle.pop()
            if worker.proc.poll() is None:
                return worker
            worker.kill()
        return _Worker(self.root, self.target, self.memory_mb)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().kill()


_LIVE: set[subprocess.Popen] = set()


@atexit.register
def _kill_all() -> None:
    for proc in list(_LIVE):
        proc.kill()
