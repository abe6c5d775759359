"""Deadlines for request body reads, checked by one timer for all of them.

``asyncio.timeout`` schedules and cancels a timer per read, which costs more than everything
else a small POST does; here a read is a dict entry, and a timer that runs only while reads
are pending cancels the ones past their deadline (within a tenth of the timeout).
"""

from __future__ import annotations

import asyncio


class BodyDeadlines:
    __slots__ = ("timeout", "tick", "reads", "late", "timer")

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.tick = max(0.05, min(1.0, timeout / 10))
        self.reads: dict[asyncio.Task, float] = {}
        self.late: set[asyncio.Task] = set()
        self.timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task) -> None:
        loop = task.get_loop()
        self.reads[task] = loop.time() + self.timeout
        if self.timer is None:
            self.timer = loop.call_later(self.tick, self._check, loop)

    def stop(self, task: asyncio.Task) -> None:
        self.reads.pop(task, None)

    def expired(self, task: asyncio.Task) -> bool:
        """After a CancelledError: True when the deadline caused it (the cancel is withdrawn)."""
        if task not in self.late:
            return False
        self.late.discard(task)
        task.uncancel()
        return True

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, until in list(self.reads.items()):
            if now >= until:
                del self.reads[task]
                self.late.add(task)
                task.cancel()
        self.timer = loop.call_later(self.tick, self._check, loop) if self.reads else None
