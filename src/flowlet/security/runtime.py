"""The state the authentication policies keep while a workspace serves, in one object the
workspace owns and closes.

- one verifier per secret, shared by every endpoint that names the secret, so they share its
  verified-credential cache and (JWT) its fetched key set;
- the bounded pool that runs password hashes off the event loop;
- the clocks: ``clock`` (wall time, what token ``exp`` is measured against) and
  ``monotonic`` (cache lifetimes, refresh intervals). Tests pass hand-moved ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Protocol, TypeVar

from flowlet.errors import HTTPError

if TYPE_CHECKING:
    from flowlet.edge.authlimit import AuthThrottle

R = TypeVar("R")

# argon2 needs ~64 MiB and ~0.2 s per verification: a small dedicated pool bounds memory and
# keeps a flood of wrong passwords from starving the default executor that flows use.
HASH_WORKERS = max(1, min(4, os.cpu_count() or 1))
# Password checks waiting or running at most; more are refused at once, so a flood of wrong
# passwords cannot queue minutes of argon2 work (64 MiB each) behind it.
MAX_QUEUED = 32


class Busy(Exception):
    """The pool already has its bound of jobs waiting or running."""


class Verifier(Protocol):
    """What the runtime keeps per secret; ``close`` ends its background work."""

    def close(self) -> None: ...


V = TypeVar("V", bound=Verifier)


class BoundedPool:
    """A thread pool that refuses work past ``max_queued`` jobs instead of queueing it.

    The threads start with the first job, so a workspace without passwords starts none.
    """

    __slots__ = ("max_workers", "max_queued", "queued", "_executor", "_prefix")

    def __init__(self, max_workers: int, max_queued: int, thread_name_prefix: str):
        self.max_workers = max_workers
        self.max_queued = max_queued
        self.queued = 0
        self._executor: ThreadPoolExecutor | None = None
        self._prefix = thread_name_prefix

    async def run(self, fn: Callable[..., R], *args: object) -> R:
        """Run ``fn(*args)`` in the pool; raises :class:`Busy` when the bound is reached."""
        if self.queued >= self.max_queued:
            raise Busy(f"{self.queued} jobs already queued")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self._prefix)
        self.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.queued -= 1

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class AuthRuntime:
    """Per-workspace state of the Basic and JWT policies (see the module docstring)."""

    __slots__ = ("clock", "monotonic", "hashing", "throttle", "_shared")

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 hash_workers: int = HASH_WORKERS, max_queued: int = MAX_QUEUED,
                 throttle: AuthThrottle | None = None):
        self.clock = clock
        # failed authentications per client and per user name (flowlet.edge.authlimit), or None
        self.throttle = throttle
        self.monotonic = monotonic
        self.hashing = BoundedPool(hash_workers, max_queued, "argon2")
        self._shared: dict[tuple[str, str], Verifier] = {}

    def shared(self, kind: str, name: str, make: Callable[[], V]) -> V:
        """The one ``kind`` verifier of secret ``name``, made on first use."""
        key = (kind, name)
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = make()
        return found  # type: ignore[return-value]

    def verifiers(self) -> list[tuple[tuple[str, str], Verifier]]:
        """``((kind, secret name), verifier)`` of every verifier made so far (for the metrics)."""
        return list(self._shared.items())

    def close(self) -> None:
        """Stop the hashing threads and let the verifiers go (their caches with them)."""
        self.hashing.close()
        shared, self._shared = self._shared, {}
        for verifier in shared.values():
            verifier.close()

    def __repr__(self) -> str:
        return f"AuthRuntime({len(self._shared)} verifiers)"


def unavailable_error(secrets: object, name: str) -> HTTPError | None:
    """503 when the secret exists but this server lacks the master key it is sealed under
    (a key-ring change that has not reached this server yet); None when it is really missing."""
    probe = getattr(secrets, "unavailable", None)
    if probe is None or probe(name) is None:
        return None
    return HTTPError(503, "authentication is unavailable on this server: its secret cannot be opened",
                     stage="auth", reason="unavailable")
