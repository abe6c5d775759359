"""Stand-ins shared by the policy unit tests (the real ones are tested on their own)."""

from __future__ import annotations

import asyncio
from typing import Iterable, Mapping

import pytest

from flowlet.errors import HTTPError
from flowlet.http import Request


def request(headers: Iterable[tuple[str, str]] | Mapping[str, str] = (), *, method: str = "GET",
            path: str = "/api/x", query: bytes = b"", scheme: str = "https",
            host: str | None = None) -> Request:
    """A request as the server hands it to a policy: ``headers`` as (name, value) pairs or a dict,
    in order and repeatable; ``host`` becomes the first header when given."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    raw = [(b"host", host.encode())] if host is not None else []
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    return Request({"type": "http", "method": method, "path": path, "query_string": query,
                    "scheme": scheme, "headers": raw})


def run(coro):
    return asyncio.run(coro)


def refused(policy, req: Request, challenge: bytes | None = None) -> HTTPError:
    """The authentication policy answers 401 (with a challenge starting ``challenge``)."""
    with pytest.raises(HTTPError) as err:
        run(policy.authenticate(req))
    assert err.value.status == 401
    if challenge is not None:
        assert dict(err.value.headers)[b"www-authenticate"].startswith(challenge)
    return err.value


class Store:
    """In-memory store: only the internal-key part of the Store interface."""

    def __init__(self):
        self.keys: dict[str, bytes] = {}
        self._version = 0
        self.writes = 0

    def version(self) -> int:
        return self._version

    def get_key(self, name):
        return self.keys.get(name)

    def put_key(self, name, value):
        self.keys[name] = bytes(value)
        self._version += 1
        self.writes += 1

    def add_key_if_absent(self, name, value):
        if name not in self.keys:
            self.put_key(name, value)
        return self.keys[name]


class View:
    """The SecretsView contract: get(name) returns the same object until the secret changes;
    with a ``store``, internal keys are a worker's copy, re-read only by refresh()."""

    def __init__(self, *secrets, store: Store | None = None):
        self.secrets = {s.name: s for s in secrets}
        self.store = store
        self._keys: dict[str, bytes] = {}
        self._seen = -1
        if store is not None:
            self.refresh()

    def get(self, name):
        return self.secrets.get(name)

    def put(self, secret):
        self.secrets[secret.name] = secret

    def get_key(self, name):
        return self._keys.get(name)

    def refresh(self) -> bool:
        if self.store is None or self.store.version() == self._seen:
            return False
        self._seen = self.store.version()
        self._keys = {k: bytes(v) for k, v in self.store.keys.items()}
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
