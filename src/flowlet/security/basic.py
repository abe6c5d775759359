"""HTTP Basic authentication (RFC 7617) against a ``basic`` secret's argon2id hashes.

Request time has two paths:

- **cache hit** (microseconds): decode the header, HMAC the credentials under a per-process
  random key, find a fresh entry. Entries live ``CACHE_TTL`` seconds, at most ``CACHE_MAX`` of
  them, and all go when the secret object changes (SecretsView hands out a new object on
  every change, so ``is`` tells);
- **miss** (~0.2 s of CPU): one argon2id verification in a worker thread, never on the event
  loop. An unknown user costs the same verification against a dummy hash, so timing does not
  tell which users exist. Concurrent requests with the same credentials share one
  verification.

Every failure is ``401 {"error": ...}`` with ``WWW-Authenticate: Basic realm="<realm>",
charset="UTF-8"``. Passwords never reach a log line, an error message or a repr; the cache
keeps keyed hashes, never the credentials.
"""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets as _random
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Callable

from argon2 import Parameters, PasswordHasher, extract_parameters

from flowlet.errors import HTTPError
from flowlet.http import Request
from flowlet.secrets.view import recheck
from flowlet.security.expiring import remember
from flowlet.security.scopes import quote_realm

log = logging.getLogger("flowlet.auth")

CACHE_TTL = 60.0               # seconds a successful verification is remembered
CACHE_MAX = 4096               # remembered credentials per secret
MAX_HEADER = 4096              # longer Authorization values are refused before decoding
_CTL = re.compile(r"[\x00-\x1f\x7f]")

# argon2 needs ~64 MiB and ~0.2 s per verification: a small dedicated pool bounds memory and
# keeps a flood of wrong passwords from starving the default executor that flows use.
_POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="argon2")
# Password checks waiting or running in this process at most; more get 429 at once, so a
# flood of wrong passwords cannot queue minutes of argon2 work (64 MiB each) behind it.
MAX_QUEUED = 32
_queued = 0


def www_authenticate_basic(realm: str) -> bytes:
    return f'Basic realm="{quote_realm(realm)}", charset="UTF-8"'.encode("utf-8")


def parse_basic(value: str) -> tuple[str, str] | None:
    """``Basic <base64(user:password)>`` -> (user, password), or None when malformed.

    Scheme case-insensitive; strict, canonical base64 (no whitespace inside, exact padding);
    strict UTF-8; split at the first colon; no control characters (RFC 7617 section 2).
    """
    decoded = _decode(value)
    if decoded is None:
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None
    user, sep, password = text.partition(":")
    if not sep or _CTL.search(text):
        return None
    return user, password


def _decode(value: str) -> bytes | None:
    if len(value) > MAX_HEADER:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    credentials = credentials.lstrip(" ")
    if not credentials or not credentials.isascii():
        return None
    raw = credentials.encode("ascii")
    try:
        decoded = binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        return None
    if binascii.b2a_base64(decoded, newline=False) != raw:   # non-canonical (stray bits)
        return None
    return decoded


def _dummy_hash(params: Parameters) -> str:
    """A hash of a random password with ``params``: what an unknown user is verified against."""
    return _dummy_hash_for(dataclasses.astuple(params))


@lru_cache(maxsize=8)
def _dummy_hash_for(fields: tuple) -> str:
    return PasswordHasher.from_parameters(Parameters(*fields)).hash(_random.token_urlsafe(24))


def _params_of(users: dict) -> Parameters:
    """The argon2 parameters of the secret's hashes (so a dummy verification costs the same)."""
    for phc in users.values():
        try:
            return extract_parameters(phc)
        except Exception:
            continue
    ph = PasswordHasher()
    return Parameters(ph.type, 19, ph.salt_len, ph.hash_len, ph.time_cost, ph.memory_cost, ph.parallelism)


class _Verifier:
    """Per secret (shared by the endpoints that use it): the verification cache."""

    def __init__(self, name: str, secrets: Any, clock: Callable[[], float]):
        self.name = name
        self.secrets = secrets
        self.clock = clock
        # HMAC-SHA256 under a per-process random key (keyed once; copied per request)
        self.mac = hmac.new(os.urandom(32), digestmod=hashlib.sha256)
        self.secret: Any = None
        self.cache: dict[bytes, tuple[float, dict]] = {}
        self.inflight: dict[bytes, asyncio.Future] = {}
        self.hasher = PasswordHasher()
        self.dummy: str | None = None

    def sync(self) -> Any:
        """The current secret; drops the cache when it changed."""
        secret = self.secrets.get(self.name)
        if secret is not self.secret:
            self.secret = secret
            self.cache.clear()
            self.dummy = None
        return secret

    def prepare(self) -> None:
        """Load-time warm-up: the dummy hash costs one argon2 hash, better now than mid-request."""
        secret = self.sync()
        if secret is not None and getattr(secret, "type", None) == "basic":
            self.dummy = _dummy_hash(_params_of(secret.users))

    def check_password(self, users: dict, user: str, password: str) -> bool:
        """Runs in a worker thread. Always exactly one argon2 verification."""
        phc = users.get(user)
        if phc is None:
            dummy = self.dummy or _dummy_hash(_params_of(users))
            self.dummy = dummy
            _verify(self.hasher, dummy, password)
            return False
        return _verify(self.hasher, phc, password)

    def remember(self, key: bytes, auth: dict) -> None:
        now = self.clock()
        remember(self.cache, key, now + CACHE_TTL, auth, limit=CACHE_MAX, now=now)


def _verify(hasher: PasswordHasher, phc: str, password: str) -> bool:
    try:
        return hasher.verify(phc, password)
    except Exception:   # mismatch, or a stored hash argon2 cannot read: both a refusal
        return False


_VERIFIERS: "weakref.WeakKeyDictionary[Any, dict[str, _Verifier]]" = weakref.WeakKeyDictionary()
_VERIFIERS_LOCK = threading.Lock()


def _shared_verifier(name: str, secrets: Any, clock: Callable[[], float]) -> _Verifier:
    """One verifier per (SecretsView, secret name) so endpoints sharing a secret share its cache."""
    if clock is not time.monotonic:
        return _Verifier(name, secrets, clock)
    with _VERIFIERS_LOCK:
        try:
            per_view = _VERIFIERS.setdefault(secrets, {})
        except TypeError:   # a view that cannot be weakly referenced: no sharing
            return _Verifier(name, secrets, clock)
        verifier = per_view.get(name)
        if verifier is None:
            verifier = per_view[name] = _Verifier(name, secrets, clock)
        return verifier


class BasicPolicy:
    """``auth: {type: basic, secret: NAME}`` compiled for one endpoint."""

    __slots__ = ("_v", "_missing", "_invalid", "_busy")

    def __init__(self, secret_name: str, *, realm: str, secrets: Any,
                 clock: Callable[[], float] = time.monotonic):
        self._v = _shared_verifier(secret_name, secrets, clock)
        challenge = ((b"www-authenticate", www_authenticate_basic(realm)),)
        self._missing = HTTPError(401, "authentication required", challenge)
        self._invalid = HTTPError(401, "invalid user name or password", challenge)
        self._busy = HTTPError(429, "too many password checks in progress; retry shortly",
                               ((b"retry-after", b"1"),))

    def prepare(self) -> None:
        self._v.prepare()

    async def authenticate(self, req: Request) -> dict:
        value = req.headers.get("authorization")
        if value is None:
            raise self._fail(self._missing)
        v = self._v
        secret = v.sync()
        decoded = _decode(value) if "authorization" not in req.duplicates else None
        if decoded is None:
            raise self._fail(self._invalid)
        mac = v.mac.copy()
        mac.update(decoded.replace(b":", b"\0", 1))      # user NUL password
        key = mac.digest()
        entry = v.cache.get(key)
        if entry is not None:
            if entry[0] > v.clock():
                return entry[1]
            v.cache.pop(key, None)
        try:
            return await self._verify_slow(secret, value, key)
        except HTTPError as exc:   # before refusing, look once for a change made a moment ago
            if exc.status != 401 or not await recheck(v.secrets, v.sync, secret):
                raise
        return await self._verify_slow(v.secret, value, key)

    async def _verify_slow(self, secret: Any, value: str, key: bytes) -> dict:
        v = self._v
        if secret is None or getattr(secret, "type", None) != "basic":
            log.error("basic auth: secret %r is missing or not a basic secret; request refused", v.name)
            raise self._fail(self._invalid)
        parsed = parse_basic(value)
        if parsed is None:
            raise self._fail(self._invalid)
        user, password = parsed
        loop = asyncio.get_running_loop()
        pending = v.inflight.get(key)
        if pending is not None and pending.get_loop() is loop:
            ok = await asyncio.shield(pending)
        else:
            global _queued
            if _queued >= MAX_QUEUED:
                log.warning("basic auth: %d password checks already queued; answering 429", _queued)
                raise self._fail(self._busy)
            pending = loop.create_future()
            v.inflight[key] = pending
            ok = False
            _queued += 1
            try:
                ok = await loop.run_in_executor(_POOL, v.check_password, secret.users, user, password)
            except Exception:
                log.exception("basic auth: verification failed unexpectedly (secret %r)", v.name)
            finally:
                _queued -= 1
                if v.inflight.get(key) is pending:
                    v.inflight.pop(key, None)
                if not pending.done():
                    pending.set_result(ok)
        if not ok:
            log.info("basic auth: refused credentials for secret %r", v.name)
            raise self._fail(self._invalid)
        auth = {"type": "basic", "user": user, "claims": {}, "scopes": []}
        if v.secret is secret:      # not remembered across a secret change that happened meanwhile
            v.remember(key, auth)
        return auth

    @staticmethod
    def _fail(template: HTTPError) -> HTTPError:
        return HTTPError(template.status, template.message, template.headers)

    def __repr__(self) -> str:
        return f"BasicPolicy(secret={self._v.name!r})"
