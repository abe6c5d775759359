"""A worker's in-memory copy of the store's secrets and keys.

Requests read secrets with a dict lookup. A background loop asks the store for its version
(one cheap read) every interval and reloads only when it changed; with PostgreSQL a listener
thread also reloads on each write's notification, so servers follow a change within
milliseconds and the poll is the fallback. A secret whose content did not change keeps the
very same object, so policies may cache work per secret keyed on identity. A failing reload
is logged (never with secret material), the store is reported down by ``health()``, and the
last good copy stays in use until the store answers again.

A policy about to refuse a credential calls ``await view.recheck()`` first: a change made a
moment ago (``flowlet secrets set`` just returned) is then seen by the very next request,
at the cost of one version read per refusal, never per request.

A secret sealed under a master key the ring lacks is not served (``get`` answers None) and
``unavailable(name)`` says so, with the missing key id, so a policy can answer 503 instead
of treating it as missing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

from flowlet.secrets.model import Secret, Unavailable
from flowlet.secrets.store import MissingKeyError, Store, StoreError

log = logging.getLogger("flowlet.secrets")

# A repeated failure (say, the database is down) is logged again at most this often.
_REPEAT_LOG_S = 60.0
# How long a refusal waits for its version check before refusing anyway.
RECHECK_TIMEOUT_S = 1.0


class SecretsView:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._version: int | None = None
        self._seen: bytes | None = None      # the store's change counter at the last reload
        self._secrets: dict[str, Secret] = {}
        self._sealed: dict[str, tuple] = {}
        self._unavailable: dict[str, Unavailable] = {}
        self._keys: dict[str, bytes] = {}
        self._callbacks: list[Callable[[frozenset[str]], None]] = []
        self._last_error: tuple[str, float] | None = None
        self._down_since: float | None = None
        self._checked_at = time.monotonic()
        self._token: object | None = None
        self.store_errors = 0          # failed reads of the store, for the metrics
        self.refresh(strict=True)

    def __repr__(self) -> str:
        return f"<SecretsView {len(self._secrets)} secrets, version {self._version}>"

    # -- request time: plain lookups

    def get(self, name: str) -> Secret | None:
        return self._secrets.get(name)

    def unavailable(self, name: str) -> Unavailable | None:
        """The secret exists but this server lacks its master key (answer 503, not 401)."""
        return self._unavailable.get(name)

    def get_key(self, name: str) -> bytes | None:
        return self._keys.get(name)

    def all(self) -> list[Secret]:
        """Every secret held (the log's secret mask is built from them)."""
        return list(self._secrets.values())

    @property
    def version(self) -> int | None:
        return self._version

    def health(self) -> dict:
        """``{"store": "ok" | "down", "age_s": seconds since the copy was last confirmed
        current, "unavailable": names sealed under a missing key}`` (for a readiness check)."""
        return {"store": "down" if self._down_since is not None else "ok",
                "age_s": round(time.monotonic() - self._checked_at, 3),
                "unavailable": sorted(self._unavailable)}

    def on_change(self, callback: Callable[[frozenset[str]], None]) -> None:
        """Call ``callback(changed_names)`` after a refresh that changed secrets or keys.

        Changed internal keys are reported as ``"key:NAME"``.
        """
        self._callbacks.append(callback)

    def stale(self) -> bool:
        """True when a process on this machine wrote to the store since the last reload: one
        memory read (see flowlet.secrets.changes)."""
        counter = self.store.changes
        return counter is not None and counter.read() != self._seen

    async def recheck(self) -> bool:
        """Before refusing: reload now if the store changed; True when anything changed.

        Skipped while the store is down; waits at most RECHECK_TIMEOUT_S.
        """
        if self._down_since is not None:
            return False
        token = self.store.change_token()
        if token is not None and token == self._token:
            return False  # nothing committed since the last load (SQLite: no query at all)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._refresh_logged), RECHECK_TIMEOUT_S)
        except asyncio.TimeoutError:
            return False

    # -- reloading

    def refresh(self, strict: bool = False) -> bool:
        """Reload if the store's version changed; True if any secret or key changed.

        With ``strict`` a row that does not decrypt raises StoreError; otherwise it is logged
        and the last good copy of that secret (if any) stays. A row under a key the ring
        lacks is never fatal: it is logged and reported by ``unavailable()``.
        """
        with self._lock:
            try:
                counter = self.store.changes
                seen = counter.read() if counter is not None else None   # before reading, too
                token = self.store.change_token()  # before reading: a later commit changes it
                if self._version is not None and self.store.version() == self._version:
                    self._token = token
                    self._seen = seen
                    self._mark_ok()
                    return False
                snapshot = self.store.snapshot()
            except StoreError:
                self._down_since = self._down_since or time.monotonic()
                raise
            self._mark_ok()
            self._token = token
            self._seen = seen
            changed = self._load_secrets(snapshot.secrets, strict)
            changed |= self._load_keys(snapshot.keys, strict)
            self._version = snapshot.version
        if changed:
            self._notify(frozenset(changed))
        return bool(changed)

    def _mark_ok(self) -> None:
        self._down_since = None
        self._checked_at = time.monotonic()

    def _load_secrets(self, rows: dict[str, tuple], strict: bool) -> set[str]:
        secrets: dict[str, Secret] = {}
        sealed: dict[str, tuple] = {}
        unavailable: dict[str, Unavailable] = {}
        changed: set[str] = set()
        for name, row in rows.items():
            old = self._secrets.get(name)
            if old is not None and self._sealed.get(name) == row:
                secrets[name], sealed[name] = old, row  # same ciphertext: skip decrypting
                continue
            try:
                secret = self.store.open_secret(name, *row)
            except MissingKeyError as exc:
                unavailable[name] = exc.unavailable
                if self._unavailable.get(name) != exc.unavailable:
                    log.error("%s; requests that need it are refused until that key is added",
                              exc.unavailable.message)
                    changed.add(name)
                continue
            except StoreError as exc:
                if strict:
                    raise
                log.error("%s", exc)
                if old is not None:
                    secrets[name], sealed[name] = old, self._sealed[name]
                continue
            if old is not None and old == secret:
                secret = old  # rewritten with the same content: keep the identity
            else:
                changed.add(name)
            secrets[name], sealed[name] = secret, row
        changed.update(set(self._secrets) - set(secrets) - set(unavailable))
        self._secrets, self._sealed, self._unavailable = secrets, sealed, unavailable
        return changed

    def _load_keys(self, rows: dict[str, tuple], strict: bool) -> set[str]:
        keys: dict[str, bytes] = {}
        changed: set[str] = set()
        for name, (kid, data) in rows.items():
            try:
                keys[name] = self.store.open_key(name, kid, data)
            except StoreError as exc:
                if strict and (kid is None or kid in self.store.ring):  # damaged, not unkeyed
                    raise
                log.error("%s", exc)
                if name in self._keys:
                    keys[name] = self._keys[name]
                continue
            if self._keys.get(name) != keys[name]:
                changed.add(f"key:{name}")
        changed.update(f"key:{name}" for name in set(self._keys) - set(keys))
        self._keys = keys
        return changed

    def _notify(self, changed: frozenset[str]) -> None:
        for callback in list(self._callbacks):
            try:
                callback(changed)
            except Exception as exc:  # a listener's bug must not stop the reloads
                log.error("secrets change listener failed: %s", type(exc).__name__)

    def _refresh_logged(self) -> bool:
        """refresh() that logs instead of raising (background threads)."""
        try:
            changed = self.refresh()
        except Exception as exc:
            self._log_failure(exc)
            return False
        if self._last_error is not None:
            log.warning("reloading secrets works again")
            self._last_error = None
        return changed

    async def run(self, interval: float = 1.0) -> None:
        """Refresh every ``interval`` seconds until cancelled; never stops on an error.

        When the store can notify (PostgreSQL), a listener thread reloads on every write too.
        """
        stop = threading.Event()
        if getattr(self.store, "listen", None) is not None:
            threading.Thread(target=self._listen, args=(stop,), name="flowlet-secrets-listen",
                             daemon=True).start()
        try:
            while True:
                await asyncio.sleep(interval)
                await asyncio.to_thread(self._refresh_logged)
        finally:
            stop.set()

    def _listen(self, stop: threading.Event) -> None:
        """Reload on each notification; reconnect with backoff while the store is down."""
        backoff = 0.2
        while not stop.is_set():
            try:
                for _ in self.store.listen(stop):
                    backoff = 0.2
                    self._refresh_logged()  # the first round after (re)connecting catches up
            except StoreError as exc:
                self._down_since = self._down_since or time.monotonic()
                self._log_failure(exc)
            except Exception as exc:  # never let the thread die: the poll still runs
                self._log_failure(exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _log_failure(self, exc: Exception) -> None:
        # StoreError messages are written to be safe; for anything else only the type is shown
        message = str(exc) if isinstance(exc, StoreError) else f"unexpected {type(exc).__name__}"
        self.store_errors += 1
        now = time.monotonic()
        if self._last_error is None or self._last_error[0] != message or \
                now - self._last_error[1] >= _REPEAT_LOG_S:
            log.error("reloading secrets failed, keeping the last good copy: %s", message)
            self._last_error = (message, now)


async def recheck(secrets: object, sync: Callable[[], object], used: object) -> bool:
    """For a policy about to refuse: reload ``secrets`` if the store changed, then True when
    ``sync()`` (the policy's look-up) now gives another secret than the one it ``used``.

    Stand-in views without ``recheck`` (unit tests) only compare.
    """
    method = getattr(secrets, "recheck", None)
    if method is not None:
        await method()
    return sync() is not used
