"""One endpoint's share of the threads and worker processes that run its blocking function steps.

A sync function cannot be stopped once started: after its flow answered 504 the thread runs on.
Each endpoint therefore has its own bounded thread pool and counts its calls until their thread
really ends; when all of its share is taken the request gets 503 with Retry-After at once,
instead of queueing behind (or starving) the calls of other endpoints.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Awaitable, Callable, TypeVar

from flowlet.errors import HTTPError

T = TypeVar("T")

_RETRY_AFTER = ((b"retry-after", b"1"),)
DEFAULT_SIZE = 16          # `limits.concurrency`


class Bulkhead:
    __slots__ = ("name", "size", "busy", "_lock", "_pool")

    def __init__(self, name: str, size: int):
        self.name = name
        self.size = size
        self.busy = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None     # threads start on first use only

    def _enter(self) -> None:
        with self._lock:
            if self.busy >= self.size:
                raise HTTPError(503, "endpoint busy: too many calls in progress, retry later", _RETRY_AFTER)
            self.busy += 1

    def _leave(self, _done: object = None) -> None:
        with self._lock:
            self.busy -= 1

    async def call_in_thread(self, func: Callable[..., T], kwargs: dict[str, object]) -> T:
        """``func(**kwargs)`` on one of this endpoint's threads; its slot is freed when the
        thread is done, even if the flow stopped waiting (timeout) long before."""
        self._enter()
        try:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.size, thread_name_prefix=f"flowlet {self.name}")
            future: Future[T] = self._pool.submit(functools.partial(func, **kwargs))
        except BaseException:
            self._leave()
            raise
        future.add_done_callback(self._leave)
        return await asyncio.wrap_future(future)

    async def call(self, run: Callable[[], Awaitable[T]]) -> T:
        """``run()`` holding a slot until it returns (a worker process is killed on timeout,
        so nothing outlives the await)."""
        self._enter()
        try:
            return await run()
        finally:
            self._leave()
