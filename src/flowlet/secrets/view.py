"""A worker's in-memory copy of the store's secrets and keys.

Requests read secrets with a dict lookup. A background loop asks the store for its version
(one cheap read) every interval and reloads only when it changed; a secret whose content did
not change keeps the very same object, so policies may cache work per secret keyed on
identity. A failing reload is logged (never with secret material) and the last good copy
stays in use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

from flowlet.secrets.model import Secret
from flowlet.secrets.store import Store, StoreError

log = logging.getLogger("flowlet.secrets")

# A repeated failure (say, the database is down) is logged again at most this often.
_REPEAT_LOG_S = 60.0


class SecretsView:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._version: int | None = None
        self._secrets: dict[str, Secret] = {}
        self._sealed: dict[str, tuple[str, bytes]] = {}
        self._keys: dict[str, bytes] = {}
        self._callbacks: list[Callable[[frozenset[str]], None]] = []
        self._last_error: tuple[str, float] | None = None
        # For the metrics: when the copy was last confirmed current, and the store's failures.
        self.checked_at = time.monotonic()
        self.store_up = True
        self.store_errors = 0
        self.refresh(strict=True)

    def __repr__(self) -> str:
        return f"<SecretsView {len(self._secrets)} secrets, version {self._version}>"

    # -- request time: plain lookups

    def get(self, name: str) -> Secret | None:
        return self._secrets.get(name)

    def get_key(self, name: str) -> bytes | None:
        return self._keys.get(name)

    @property
    def version(self) -> int | None:
        return self._version

    def on_change(self, callback: Callable[[frozenset[str]], None]) -> None:
        """Call ``callback(changed_names)`` after a refresh that changed secrets or keys.

        Changed internal keys are reported as ``"key:NAME"``.
        """
        self._callbacks.append(callback)

    # -- reloading

    def refresh(self, strict: bool = False) -> bool:
        """Reload if the store's version changed; True if any secret or key changed.

        With ``strict`` a row that does not decrypt raises StoreError; otherwise it is logged
        and the last good copy of that secret (if any) stays.
        """
        with self._lock:
            if self._version is not None and self.store.version() == self._version:
                return False
            snapshot = self.store.snapshot()
            secrets: dict[str, Secret] = {}
            sealed: dict[str, tuple[str, bytes]] = {}
            changed: set[str] = set()
            for name, row in snapshot.secrets.items():
                old = self._secrets.get(name)
                if old is not None and self._sealed.get(name) == row:
                    secrets[name], sealed[name] = old, row  # same ciphertext: skip decrypting
                    continue
                try:
                    secret = self.store.open_secret(name, row[0], row[1])
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
            changed.update(set(self._secrets) - set(secrets))
            keys: dict[str, bytes] = {}
            for name, data in snapshot.keys.items():
                try:
                    keys[name] = self.store.open_key(name, data)
                except StoreError as exc:
                    if strict:
                        raise
                    log.error("%s", exc)
                    if name in self._keys:
                        keys[name] = self._keys[name]
                    continue
                if self._keys.get(name) != keys[name]:
                    changed.add(f"key:{name}")
            changed.update(f"key:{name}" for name in set(self._keys) - set(keys))
            self._secrets, self._sealed, self._keys = secrets, sealed, keys
            self._version = snapshot.version
        if changed:
            self._notify(frozenset(changed))
        return bool(changed)

    def _notify(self, changed: frozenset[str]) -> None:
        for callback in list(self._callbacks):
            try:
                callback(changed)
            except Exception as exc:  # a listener's bug must not stop the reloads
                log.error("secrets change listener failed: %s", type(exc).__name__)

    async def run(self, interval: float = 1.0) -> None:
        """Refresh every ``interval`` seconds until cancelled; never stops on an error."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.store_up = False
                self.store_errors += 1
                self._log_failure(exc)
            else:
                self.checked_at = time.monotonic()
                self.store_up = True
                if self._last_error is not None:
                    log.warning("reloading secrets works again")
                    self._last_error = None

    def _log_failure(self, exc: Exception) -> None:
        # StoreError messages are written to be safe; for anything else only the type is shown
        message = str(exc) if isinstance(exc, StoreError) else f"unexpected {type(exc).__name__}"
        now = time.monotonic()
        if self._last_error is None or self._last_error[0] != message or \
                now - self._last_error[1] >= _REPEAT_LOG_S:
            log.error("reloading secrets failed, keeping the last good copy: %s", message)
            self._last_error = (message, now)
