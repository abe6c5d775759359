"""HTTP Basic authentication (RFC 7617) against a ``basic`` secret's argon2id hashes.

Request time has two paths:

- **cache hit** (microseconds): hash the header value with keyed BLAKE2b under a per-process
  random key (no decoding: a repeat of an accepted value is found as sent), find a fresh entry. Entries live ``CACHE_TTL`` seconds, at most ``CACHE_MAX`` of
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
from hashlib import blake2b
import logging
import os
import re
import secrets as _random
from functools import lru_cache
from typing import Mapping

from argon2 import Parameters, PasswordHasher, extract_parameters

from flowlet.errors import HTTPError
from flowlet.headers import www_authenticate_basic
from flowlet.http import Request
from flowlet.secrets.model import BasicSecret, Secret, SecretsSource
from flowlet.secrets.view import recheck
from flowlet.security.expiring import ExpiringCache
from flowlet.security.runtime import AuthRuntime, unavailable_error

log = logging.getLogger("flowlet.auth")

CACHE_TTL = 60.0               # seconds a successful verification is remembered
CACHE_MAX = 4096               # remembered credentials per secret
CACHE_MAX_BYTES = 8 << 20      # their estimated size at most (a user name may be long)
MAX_HEADER = 4096              # longer Authorization values are refused before decoding
_CTL = re.compile(r"[\x00-\x1f\x7f]")


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


def _params_of(users: Mapping[str, str]) -> Parameters:
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

    def __init__(self, name: str, secrets: SecretsSource, runtime: AuthRuntime):
        self.name = name
        self.secrets = secrets
        self.clock = runtime.monotonic
        self.hashing = runtime.hashing
        # keyed BLAKE2b (a MAC) under a per-process random key: one C call per request
        self.mac_key = os.urandom(32)
        self.secret: Secret | None = None
        self.cache: ExpiringCache[bytes, dict] = ExpiringCache(CACHE_MAX, CACHE_MAX_BYTES)
        self.inflight: dict[bytes, asyncio.Future[bool]] = {}
        self.hasher = PasswordHasher()
        self.dummy: str | None = None

    def sync(self) -> Secret | None:
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
        if isinstance(secret, BasicSecret):
            self.dummy = _dummy_hash(_params_of(secret.users))

    def check_password(self, users: Mapping[str, str], user: str, password: str) -> bool:
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
        self.cache.put(key, now + CACHE_TTL, auth, size=len(auth["user"]), now=now)

    def close(self) -> None:
        self.cache.clear()


def _verify(hasher: PasswordHasher, phc: str, password: str) -> bool:
    try:
        return hasher.verify(phc, password)
    except Exception:   # mismatch, or a stored hash argon2 cannot read: both a refusal
        return False


class BasicPolicy:
    """``auth: {type: basic, secret: NAME}`` compiled for one endpoint."""

    __slots__ = ("_v", "_missing", "_invalid", "_busy", "_throttle")

    def __init__(self, secret_name: str, *, realm: str, secrets: SecretsSource, runtime: AuthRuntime):
        self._v = runtime.shared("basic", secret_name, lambda: _Verifier(secret_name, secrets, runtime))
        self._throttle = runtime.throttle
        challenge = ((b"www-authenticate", www_authenticate_basic(realm)),)
        self._missing = HTTPError(401, "authentication required", challenge, stage="auth", reason="missing")
        self._invalid = HTTPError(401, "invalid user name or password", challenge, stage="auth", reason="malformed")
        self._busy = HTTPError(429, "too many password checks in progress; retry shortly",
                               ((b"retry-after", b"1"),), stage="auth", reason="throttled")

    def prepare(self) -> None:
        self._v.prepare()

    async def authenticate(self, req: Request) -> dict:
        value = req.headers.get("authorization")
        if value is None:
            raise self._fail(self._missing)
        if len(value) > MAX_HEADER or req.repeated("authorization"):
            raise self._fail(self._invalid)
        v = self._v
        secret = v.sync()
        key = blake2b(value.encode("utf-8", "surrogatepass"), key=v.mac_key, digest_size=32).digest()
        auth = v.cache.get(key, v.clock())
        if auth is not None:
            if self._throttle is not None and self._throttle.suspect(req.client, auth["user"]):
                await self._throttle.confirm(req.client, auth["user"])
            return auth
        if _decode(value) is None:
            raise self._fail(self._invalid)
        try:
            return await self._verify_slow(secret, value, key, req.client)
        except HTTPError as exc:   # before refusing, look once for a change made a moment ago
            if exc.status != 401 or not await recheck(v.secrets, v.sync, secret):
                raise
        return await self._verify_slow(v.secret, value, key, req.client)

    async def _verify_slow(self, secret: Secret | None, value: str, key: bytes, client: str | None = None) -> dict:
        v = self._v
        if not isinstance(secret, BasicSecret):
            log.error("basic auth: secret %r is missing or not a basic secret; request refused", v.name)
            raise unavailable_error(v.secrets, v.name) or self._fail(self._invalid, "unavailable")
        parsed = parse_basic(value)
        if parsed is None:
            raise self._fail(self._invalid)
        user, password = parsed
        # before any argon2 work: 429 when this client or this user name is over its limit
        ticket = await self._throttle.admit(client, user) if self._throttle is not None else None
        loop = asyncio.get_running_loop()
        pending = v.inflight.get(key)
        if pending is not None and pending.get_loop() is loop:
            ok = await asyncio.shield(pending)
        else:
            if v.hashing.queued >= v.hashing.max_queued:
                log.warning("basic auth: %d password checks already queued; answering 429", v.hashing.queued)
                raise self._fail(self._busy)
            pending = loop.create_future()
            v.inflight[key] = pending
            ok = False
            try:
                ok = await v.hashing.run(v.check_password, secret.users, user, password)
            except Exception:
                log.exception("basic auth: verification failed unexpectedly (secret %r)", v.name)
            finally:
                if v.inflight.get(key) is pending:
                    v.inflight.pop(key, None)
                if not pending.done():
                    pending.set_result(ok)
        if ticket is not None:
            if ok:
                await self._throttle.succeeded(ticket)
            else:
                self._throttle.failed(ticket)
        if not ok:
            log.info("basic auth: refused credentials for secret %r", v.name)
            raise self._fail(self._invalid, "wrong_password" if user in secret.users else "unknown_user")
        auth = {"type": "basic", "user": user, "claims": {}, "scopes": []}
        if v.secret is secret:      # not remembered across a secret change that happened meanwhile
            v.remember(key, auth)
        return auth

    @staticmethod
    def _fail(template: HTTPError, reason: str | None = None) -> HTTPError:
        return HTTPError(template.status, template.message, template.headers, stage=template.stage,
                         reason=reason or template.reason)

    def __repr__(self) -> str:
        return f"BasicPolicy(secret={self._v.name!r})"
