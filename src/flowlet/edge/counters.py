"""Fixed-window counters: one table shared by every worker of a server, and Redis across servers.

:class:`LocalTable` is a hash table in shared memory (a ``memfd`` the serving process creates
before its workers start; they open it through ``/proc``). Each group of slots has its own
byte-range lock (``fcntl``, released by the kernel if a worker dies holding it), so an update
is exact across processes and costs two system calls; a table private to one process (one
event loop, updates never interleave) takes no lock at all.
Windows are aligned to the epoch (``floor(now / window)``), so every worker and every server
agrees on where a window starts.

:class:`RedisCounters` increments in Redis over a pipelined connection
(:mod:`flowlet.edge.resp`): the increments of one event-loop turn go out as one Lua script
call, and any number of those may be in flight. When Redis cannot be reached it reports
``None`` and the caller counts locally; the outage is logged once, shown by
:meth:`RedisCounters.health`, and Redis is tried again with a growing back-off.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import mmap
import os
import struct
import time
from typing import Any

from flowlet.edge.resp import ReplyError, RespConnection

log = logging.getLogger("flowlet.ratelimit")

ENV_TABLE = "FLOWLET_COUNTERS"       # the path workers open: /proc/<pid>/fd/<fd> of the memfd
_MAGIC = b"FLRLCNT1"
_HEADER = 64                         # magic, groups, slots per group, hash key (32 bytes), flags until
_FLAGS_UNTIL = struct.Struct("<Q")   # at offset 48: when the last flag set by ``flag`` ends (ms)
_SLOT = struct.Struct("<QQq")        # fingerprint (0 = free), window end in ms, count
GROUPS = 32768
PER_GROUP = 16                       # 512 Ki slots, 12 MiB of mostly untouched memory


def table_size(groups: int = GROUPS, per_group: int = PER_GROUP) -> int:
    return _HEADER + groups * per_group * _SLOT.size


def _new_table(groups: int, per_group: int) -> int:
    """An anonymous file holding an empty table: gone when the last process holding it exits."""
    fd = os.memfd_create("flowlet-counters", os.MFD_CLOEXEC) if hasattr(os, "memfd_create") else _temp_fd()
    os.ftruncate(fd, table_size(groups, per_group))
    os.pwrite(fd, _MAGIC + struct.pack("<II", groups, per_group) + os.urandom(32), 0)
    return fd


def create_shared_table(groups: int = GROUPS, per_group: int = PER_GROUP) -> str:
    """In the serving process, before workers start: a table its workers open through the
    returned path while this process lives (nothing is left behind after a crash)."""
    return f"/proc/{os.getpid()}/fd/{_new_table(groups, per_group)}"


def _temp_fd() -> int:
    import tempfile
    fd, path = tempfile.mkstemp(prefix="flowlet-counters-")
    os.unlink(path)
    return fd


class LocalTable:
    """Counters shared by the processes that open the same file (or private to one process)."""

    def __init__(self, path: str | None = None):
        # private to this process (one event loop, updates never interleave): no locks at all
        self.private = path is None
        self.fd = _new_table(4096, PER_GROUP) if path is None else os.open(path, os.O_RDWR | os.O_CLOEXEC)
        size = os.fstat(self.fd).st_size
        self.map = mmap.mmap(self.fd, size)
        if self.map[:8] != _MAGIC:
            raise ValueError(f"{path} is not a Flowlet counter table")
        self.groups, self.per_group = struct.unpack_from("<II", self.map, 8)
        self.hash_key = bytes(self.map[16:48])
        self._fps: dict[str, int] = {}
        self._slots: dict[str, tuple[int, int, int]] = {}     # key -> (fingerprint, group, offset)

    @classmethod
    def for_worker(cls) -> "LocalTable":
        """The server's shared table when ``flowlet serve`` made one, else a private one."""
        path = os.environ.get(ENV_TABLE)
        if path:
            try:
                return cls(path)
            except (OSError, ValueError) as exc:
                log.warning("shared rate-limit counters unavailable (%s); counting per worker", exc)
        return cls()

    def fingerprint(self, key: str) -> int:
        fp = self._fps.get(key)
        if fp is None:
            # keyed, so nobody can choose keys that collide with another client's counter
            fp = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8,
                                                key=self.hash_key).digest(), "little") or 1
            if len(self._fps) >= 8192:
                self._fps.clear()
            self._fps[key] = fp
        return fp

    def _remember(self, key: str | None, fp: int, group: int, off: int) -> None:
        if key is None:
            return
        if len(self._slots) >= 8192:
            self._slots.clear()
        self._slots[key] = (fp, group, off)

    def _lock(self, group: int, exclusive: bool = True) -> None:
        if not self.private:
            fcntl.lockf(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, 1, group)

    def _unlock(self, group: int) -> None:
        if not self.private:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, group)

    def add(self, key: str, delta: int, window_ms: int, now_ms: int | None = None) -> tuple[int, int]:
        """Add ``delta`` to the counter of ``key`` in the current window; returns (count, window end ms)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        end = (now // window_ms + 1) * window_ms
        hint = self._slots.get(key)
        if hint is not None:          # where this process last found the key: one slot to read
            fp, group, off = hint
            self._lock(group)
            try:
                slot_fp, slot_end, count = _SLOT.unpack_from(self.map, off)
                if slot_fp == fp:
                    if slot_end <= now:
                        count, slot_end = 0, end
                    count += delta
                    _SLOT.pack_into(self.map, off, fp, slot_end, count)
                    return count, slot_end
            finally:
                self._unlock(group)
        return self._update(self.fingerprint(key), delta, end, now, key=key)

    def mark(self, key: str, until_ms: int) -> None:
        """A flag that holds until ``until_ms`` (count 1)."""
        now = int(time.time() * 1000)
        fp = self.fingerprint(key)
        self._update(fp, 0, until_ms, now, set_to=1)

    def flag(self, key: str, until_ms: int) -> None:
        """A mark that is rare and read on hot paths (a blocked client): besides the mark, the
        header remembers when the last one ends, so :meth:`any_flags` answers "none" in one read."""
        self.mark(key, until_ms)
        self._lock(self.groups)               # a lock id no group uses
        try:
            if _FLAGS_UNTIL.unpack_from(self.map, 48)[0] < until_ms:
                _FLAGS_UNTIL.pack_into(self.map, 48, until_ms)
        finally:
            self._unlock(self.groups)

    def any_flags(self, now_ms: int) -> bool:
        return _FLAGS_UNTIL.unpack_from(self.map, 48)[0] > now_ms

    def get(self, key: str, now_ms: int | None = None) -> tuple[int, int]:
        """(count, window end ms) of ``key``; (0, 0) when absent or over."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        fp = self.fingerprint(key)
        group = fp % self.groups
        base = _HEADER + group * self.per_group * _SLOT.size
        self._lock(group, exclusive=False)
        try:
            for i in range(self.per_group):
                slot_fp, end, count = _SLOT.unpack_from(self.map, base + i * _SLOT.size)
                if slot_fp == fp:
                    return (count, end) if end > now else (0, 0)
        finally:
            self._unlock(group)
        return 0, 0

    def close(self) -> None:
        if not self.map.closed:
            self.map.close()
            os.close(self.fd)

    def peek(self, key: str, now_ms: int) -> int:
        """The count of ``key`` read without the lock: a hint for deciding whether to take the
        exact path (a torn read only sends a request there, or misses a write of this instant)."""
        fp = self.fingerprint(key)
        base = _HEADER + (fp % self.groups) * self.per_group * _SLOT.size
        for i in range(self.per_group):
            slot_fp, end, count = _SLOT.unpack_from(self.map, base + i * _SLOT.size)
            if slot_fp == fp:
                return count if end > now_ms else 0
        return 0

    def _update(self, fp: int, delta: int, end: int, now: int, set_to: int | None = None,
                key: str | None = None) -> tuple[int, int]:
        group = fp % self.groups
        base = _HEADER + group * self.per_group * _SLOT.size
        m, size = self.map, _SLOT.size
        self._lock(group)
        try:
            free = oldest = -1
            oldest_end = 1 << 62
            for i in range(self.per_group):
                off = base + i * size
                slot_fp, slot_end, count = _SLOT.unpack_from(m, off)
                if slot_fp == fp:
                    if slot_end <= now:                 # that window is over: start a new one
                        count, slot_end = 0, end
                    count = set_to if set_to is not None else count + delta
                    if set_to is not None:
                        slot_end = end
                    _SLOT.pack_into(m, off, fp, slot_end, count)
                    self._remember(key, fp, group, off)
                    return count, slot_end
                if free < 0 and (slot_fp == 0 or slot_end <= now):
                    free = i
                elif slot_end < oldest_end:
                    oldest, oldest_end = i, slot_end
            # a new key: a free (or finished) slot, else the one whose window ends first
            target = free if free >= 0 else oldest
            count = set_to if set_to is not None else delta
            _SLOT.pack_into(m, base + target * size, fp, end, count)
            self._remember(key, fp, group, base + target * size)
            return count, end
        finally:
            self._unlock(group)


# INCRBY each key, set its expiry when the window starts; one reply per key.
_BATCH_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, ARGV[2 * i - 1])
  if n == tonumber(ARGV[2 * i - 1]) then redis.call('PEXPIRE', key, ARGV[2 * i]) end
  out[i] = n
end
return out
"""


class RedisCounters:
    """Counters in Redis, batched (one batch in flight); ``None`` means "count locally"."""

    connect_timeout = 0.25
    op_timeout = 0.25
    max_backoff = 30.0

    def __init__(self, url: str, prefix: str = "flowlet:"):
        self.url = url
        self.prefix = prefix
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.backoff = 0.5
        self._conn: RespConnection | None = None
        self._opening: asyncio.Task | None = None
        self._sha = ""
        self._pending: list[tuple[str, int, int, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None

    def health(self) -> str:
        return "ok" if self.down_since is None else "down"

    def available(self) -> bool:
        """False while Redis is down and the back-off has not run out (no attempt is made)."""
        return self.down_since is None or time.monotonic() >= self.retry_at

    async def _connection(self) -> RespConnection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._opening is None or self._opening.done():
            self._opening = asyncio.get_running_loop().create_task(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> RespConnection:
        conn = await RespConnection.open(self.url, self.connect_timeout)
        try:
            async with asyncio.timeout(self.op_timeout):
                sha = await conn.call("SCRIPT", "LOAD", _BATCH_LUA)
        except BaseException:
            conn.close()
            raise
        self._sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        self._conn = conn
        return conn

    async def incr(self, key: str, delta: int, window_ms: int, now_ms: int) -> tuple[int, int] | None:
        """(count, window end ms) after adding ``delta`` in the current window; None when down."""
        if not self.available():
            return None
        conn = self._conn
        if conn is None or conn.closed:
            if self.down_since is not None:
                self.retry_at = time.monotonic() + self.backoff     # one probe at a time
            try:
                conn = await self._connection()
            except Exception as exc:                # unreachable: count locally
                self._failed(exc)
                return None
        end = (now_ms // window_ms + 1) * window_ms
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((f"{self.prefix}{key}:{now_ms // window_ms}", delta, end - now_ms + 1000, fut))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        count = await fut
        return None if count is None else (count, end)

    def _flush(self) -> None:
        # What reached Redis counting in one event-loop turn goes out in one script call, written
        # at once; replies come back in order, so any number of these may be in flight.
        batch, self._pending = self._pending, []
        conn = self._conn
        if not batch:
            return
        if conn is None or conn.closed:
            self._settle_all(batch, None)
            return
        args: list[Any] = [b[0] for b in batch]
        for _, delta, ttl, _ in batch:
            args += (delta, ttl)
        reply = conn.send("EVALSHA", self._sha, len(batch), *args)
        reply.add_done_callback(lambda done: self._settled(done, conn, batch, args))
        self._watch(conn)

    def _settled(self, reply: asyncio.Future, conn: RespConnection, batch: list, args: list[Any] | None) -> None:
        exc = reply.exception()
        if exc is None:
            self._recovered()
            self._settle_all(batch, reply.result())
            return
        if args is not None and isinstance(exc, ReplyError) and "NOSCRIPT" in str(exc) and not conn.closed:
            again = conn.send("EVAL", _BATCH_LUA, len(batch), *args)    # the script cache was flushed
            again.add_done_callback(lambda done: self._settled(done, conn, batch, None))
            return
        self._failed(exc)                           # every failure of the store means "count locally"
        self._settle_all(batch, None)

    @staticmethod
    def _settle_all(batch: list, counts: list[Any] | None) -> None:
        for i, (_, _, _, fut) in enumerate(batch):
            if not fut.done():
                fut.set_result(None if counts is None else int(counts[i]))

    def _watch(self, conn: RespConnection) -> None:
        """A reply overdue by ``op_timeout`` ends the connection (its waiters then count locally)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.op_timeout, self._check, conn, conn.replies)

    def _check(self, conn: RespConnection, replies_then: int) -> None:
        self._timer = None
        if not conn.closed and conn.waiters and conn.replies == replies_then:
            conn.fail(TimeoutError(f"Redis did not answer within {self.op_timeout} s"))
            return
        current = self._conn
        if current is not None and not current.closed and current.waiters:
            self._watch(current)

    async def call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script (auth throttle); None when Redis is down."""
        if not self.available():
            return None
        if self.down_since is not None:
            self.retry_at = time.monotonic() + self.backoff
        sha = hashlib.sha1(script.encode()).hexdigest()
        full = [len(keys), *[self.prefix + k for k in keys], *args]
        try:
            conn = await self._connection()
            async with asyncio.timeout(self.op_timeout):
                try:
                    result = await conn.send("EVALSHA", sha, *full)
                except ReplyError as exc:
                    if "NOSCRIPT" not in str(exc):
                        raise
                    result = await conn.send("EVAL", script, *full)     # Redis caches it from now on
        except Exception as exc:
            self._failed(exc)
            return None
        self._recovered()
        return result

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self.backoff = 0.5
            detail = (str(exc) or type(exc).__name__).splitlines()[0][:200]
            log.error("rate limits: Redis at %s unreachable (%s); counting on this server only until it is back",
                      _safe_url(self.url), detail)
        else:
            self.backoff = min(self.backoff * 2, self.max_backoff)
        self.retry_at = now + self.backoff
        if self._conn is not None:       # a fresh connection on the next attempt
            self._conn.close()
            self._conn = None

    def _recovered(self) -> None:
        if self.down_since is not None:
            log.warning("rate limits: Redis at %s reachable again after %.1f s; shared counting resumed",
                        _safe_url(self.url), time.monotonic() - self.down_since)
            self.down_since = None
            self.backoff = 0.5

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def aclose(self) -> None:
        self.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
