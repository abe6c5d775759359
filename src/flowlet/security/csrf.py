"""CSRF protection by double submit cookie with a keyed-hash cookie value.

``GET <api_prefix>/csrf`` hands out a random token T in the body and the cookie
C = base64url(HMAC-SHA256(server key, T)). A protected request must send T back in a custom
header together with the cookie; the server recomputes the HMAC. Because C is a keyed hash,
someone who can plant a cookie (a sibling subdomain, a man in the middle on plain HTTP)
still cannot forge a pair that verifies. The server key lives in the store, is shared by all
workers and servers, and can be rotated; the previous key stays valid for ``grace_s``.

Two halves, as every security module: :class:`CsrfSettings` (flowlet.yaml ``csrf:``,
validated at load) and :class:`CsrfPolicy` (per route, whose ``check`` runs per request).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from flowlet.errors import ConfigError, HTTPError
from flowlet.headers import TOKEN_CHARS, is_token
from flowlet.http import Request
from flowlet.secrets.store import StoreError
from flowlet.security.cors import parse_origin
from flowlet.source import YMap, check_keys, get_int, get_str

log = logging.getLogger("flowlet.csrf")

ERROR_MESSAGE = "CSRF token missing or invalid"
KEY_NAME = "csrf-keys"          # the store's internal key record (one JSON blob)
TOKEN_BYTES = 32
MAX_COOKIES = 4                  # cookies of the CSRF name tried at most (each costs an HMAC)
MAX_TOKEN_CHARS = 128           # T and C are 43 characters; anything longer is refused unread
MATCHED_MAX = 4096              # (T, C) pairs remembered as matching (per worker)

DEFAULT_COOKIE = "csrf"
DEFAULT_HEADER = "X-CSRF-TOKEN"
DEFAULT_GRACE_S = 86400

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")

METHOD_OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")

# Header names a browser's fetch() may not set (Fetch "forbidden request-header names") or
# that do not need a CORS preflight (CORS-safelisted): a CSRF header must be neither, since
# the defence rests on a cross-origin page being unable to send it without our consent.
_UNUSABLE_HEADERS = frozenset({
    "accept-charset", "accept-encoding", "access-control-request-headers",
    "access-control-request-method", "connection", "content-length", "cookie", "cookie2",
    "date", "dnt", "expect", "host", "keep-alive", "origin", "referer", "set-cookie", "te",
    "trailer", "transfer-encoding", "upgrade", "via",
    "accept", "accept-language", "content-language", "content-type", "range",
    "authorization", *METHOD_OVERRIDE_HEADERS,
})


class _PathCors(Protocol):
    def allows_origin(self, origin: str) -> bool: ...


class _KeySource(Protocol):          # SecretsView
    def get_key(self, name: str) -> bytes | None: ...


class _KeyStore(Protocol):           # Store
    def get_key(self, name: str) -> bytes | None: ...
    def put_key(self, name: str, value: bytes) -> None: ...
    def add_key_if_absent(self, name: str, value: bytes) -> bytes: ...


# ---- config model -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CsrfSettings:
    """flowlet.yaml ``csrf:``. ``header`` keeps the spelling the user wrote (it is what CORS
    answers in Access-Control-Allow-Headers); requests are matched case-insensitively."""

    cookie: str = DEFAULT_COOKIE
    header: str = DEFAULT_HEADER
    grace_s: int = DEFAULT_GRACE_S


def parse_csrf_settings(raw: YMap | None) -> CsrfSettings:
    """Validate the ``csrf:`` block; ``None`` (absent or empty) gives the defaults."""
    if raw is None:
        return CsrfSettings()
    if not isinstance(raw, YMap):
        raise ConfigError("'csrf' must be a mapping with cookie, header, grace_s")
    check_keys(raw, ("cookie", "header", "grace_s"), "csrf")
    cookie = get_str(raw, "cookie", DEFAULT_COOKIE)
    if not is_token(cookie):
        raise raw.error(f"'cookie' must be a cookie name ({TOKEN_CHARS}); "
                        f"got {cookie!r}", "cookie")
    if cookie.lower().startswith("__host-"):
        # Browsers only accept __Host- cookies with Path=/ and no Domain; ours has
        # Path=<api_prefix>, so the cookie would be dropped silently and every request refused.
        raise raw.error("'cookie' must not start with __Host- (the CSRF cookie is scoped to "
                        "Path=<api_prefix>, which browsers refuse for __Host- cookies)", "cookie")
    header = get_str(raw, "header", DEFAULT_HEADER)
    if not is_token(header):
        raise raw.error(f"'header' must be a header name ({TOKEN_CHARS}); "
                        f"got {header!r}", "header")
    lower = header.lower()
    if lower in _UNUSABLE_HEADERS or lower.startswith(("sec-", "proxy-")):
        raise raw.error(f"'header' cannot be {header!r}: the CSRF header must be a custom header "
                        "that browsers let scripts set and that needs a CORS preflight "
                        "(for example X-CSRF-TOKEN)", "header")
    grace_s = get_int(raw, "grace_s", DEFAULT_GRACE_S, minimum=0)
    return CsrfSettings(cookie=cookie, header=header, grace_s=grace_s)


# ---- server keys --------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _new_record(current: bytes, previous: bytes | None, rotated_at: float | None) -> bytes:
    return json.dumps({
        "v": 1,
        "current": _b64url(current),
        "previous": _b64url(previous) if previous is not None else None,
        "rotated_at": rotated_at,
    }, separators=(",", ":")).encode("ascii")


def _parse_record(blob: bytes) -> tuple[bytes, bytes | None, float | None]:
    """-> (current, previous, rotated_at); ValueError when the record is not ours."""
    try:
        data = json.loads(blob)
        current = _unb64url(data["current"])
        previous = _unb64url(data["previous"]) if data.get("previous") else None
        rotated_at = data.get("rotated_at")
    except (ValueError, KeyError, TypeError, binascii.Error, AttributeError):
        raise ValueError("unreadable CSRF key record") from None
    if len(current) != TOKEN_BYTES or (previous is not None and len(previous) != TOKEN_BYTES):
        raise ValueError("CSRF key record has keys of the wrong size")
    if rotated_at is not None and (isinstance(rotated_at, bool) or not isinstance(rotated_at, (int, float))):
        raise ValueError("CSRF key record has a bad rotation time")
    return current, previous, (float(rotated_at) if rotated_at is not None else None)


def rotate(store: _KeyStore, *, clock: Callable[[], float] = time.time) -> None:
    """Make a new current key; the old current becomes the previous one (valid for grace_s).

    Only two keys exist: a second rotation drops the first key at once. Used by
    ``flowlet secrets rotate-csrf``; running servers see it within their refresh interval.
    """
    previous = None
    try:
        blob = store.get_key(KEY_NAME)
        if blob is not None:
            previous = _parse_record(blob)[0]
    except (ValueError, StoreError) as exc:
        # rotating is also the way out of a damaged record: start afresh without a previous key
        log.warning("replacing an unreadable CSRF key record (%s)", exc)
    store.put_key(KEY_NAME, _new_record(os.urandom(TOKEN_BYTES), previous, clock()))


@dataclass(frozen=True, slots=True)
class _KeyState:
    """HMAC objects derived once per key change; requests only ``copy()`` them."""

    current: hmac.HMAC               # keyed with the current key
    previous: hmac.HMAC | None       # keyed with the previous key, if any
    rotated_at: float                # when ``current`` replaced ``previous``


def _mac(base: hmac.HMAC, token: bytes) -> str:
    h = base.copy()
    h.update(token)
    return _b64url(h.digest())


class CsrfKeys:
    """The current and previous server key, read through the worker's SecretsView.

    The key record is created on first use (``add_key_if_absent``, atomic, so every worker
    and server ends up with the same key). Each call looks the record up in the view (a dict
    lookup) and re-derives the HMAC objects only when the record object changed, so a
    rotation is seen within the view's refresh interval without a restart.
    """

    __slots__ = ("_secrets", "_store", "_blob", "_state", "_matched", "_matched_under")

    def __init__(self, secrets: _KeySource, store: _KeyStore):
        self._secrets = secrets
        self._store = store
        self._blob: bytes | None = None
        self._state: _KeyState | None = None
        # (T, C) pairs that matched under the current key, valid while that key state lasts: a
        # browser sends the same pair on every request of its session. No secret is kept:
        # both halves are what the client sent.
        self._matched: set[tuple[str, str]] = set()
        self._matched_under: _KeyState | None = None

    def __repr__(self) -> str:
        return f"CsrfKeys(loaded={self._state is not None})"

    def _derive(self, blob: bytes) -> _KeyState | None:
        if blob is self._blob or blob == self._blob:
            self._blob = blob
            return self._state
        try:
            current, previous, rotated_at = _parse_record(blob)
        except ValueError as exc:
            log.error("CSRF key record in the store is invalid (%s); CSRF tokens cannot be "
                      "issued or verified until `flowlet secrets rotate-csrf` replaces it", exc)
            state = None
        else:
            state = _KeyState(
                current=hmac.new(current, digestmod=hashlib.sha256),
                previous=hmac.new(previous, digestmod=hashlib.sha256) if previous else None,
                rotated_at=rotated_at if rotated_at is not None else 0.0,
            )
        self._blob, self._state = blob, state
        return state

    def state(self, *, create: bool = False) -> _KeyState | None:
        """The derived keys, or None when there is no (valid) key and ``create`` is off."""
        blob = self._secrets.get_key(KEY_NAME)
        if blob is None:
            if self._state is not None:
                return self._state        # created here; the view has not caught up yet
            if not create:
                return None
            try:
                blob = self._store.add_key_if_absent(KEY_NAME, _new_record(os.urandom(TOKEN_BYTES), None, None))
            except Exception as exc:   # any backend failure: no token now, never a traceback
                log.error("cannot create the CSRF server key in the store: %s", exc)
                return None
        elif blob is self._blob:
            return self._state
        return self._derive(blob)

    def sign(self, token: str) -> str:
        """C for T under the current key (creating the key on first use)."""
        state = self.state(create=True)
        if state is None:
            raise HTTPError(500, "CSRF key unavailable")
        return _mac(state.current, token.encode("ascii"))

    def matched(self, token: str, cookie: str) -> bool:
        """Whether this exact pair was verified under the key that is current now (a set
        lookup; the key record is still looked up, so a rotation is seen as before)."""
        return (token, cookie) in self._matched and self.state() is self._matched_under

    def verify(self, token: str, cookie: str, *, grace_s: float, now: float) -> str | None:
        """Which key ("current"/"previous") makes ``cookie`` the MAC of ``token``; else None.

        Both strings must already be checked to be short base64url (ASCII).
        """
        # create=True: before this worker's view has seen the key another worker or server
        # created, the store is asked once (and returns that key) instead of refusing.
        state = self.state(create=True)
        if state is None:
            return None
        raw = token.encode("ascii")
        if hmac.compare_digest(_mac(state.current, raw), cookie):
            if state is not self._matched_under or len(self._matched) >= MATCHED_MAX:
                self._matched = set()        # a new key, or a flood of sessions: start over
                self._matched_under = state
            self._matched.add((token, cookie))
            return "current"
        if state.previous is not None and now < state.rotated_at + grace_s \
                and hmac.compare_digest(_mac(state.previous, raw), cookie):
            return "previous"
        return None


# ---- issuing ------------------------------------------------------------------------------

def issue_token(settings: CsrfSettings, keys: CsrfKeys, *, api_prefix: str,
                domain: str | None) -> tuple[bytes, bytes]:
    """-> (JSON body ``{"token":"T"}``, Set-Cookie value). The caller adds no-store."""
    token = _b64url(os.urandom(TOKEN_BYTES))
    cookie_value = keys.sign(token)
    domain_attr = f"Domain={domain}; " if domain else ""
    set_cookie = (f"{settings.cookie}={cookie_value}; {domain_attr}Path={api_prefix or '/'}; "
                  "SameSite=Strict; Secure; HttpOnly")
    body = b'{"token":"' + token.encode("ascii") + b'"}'
    return body, set_cookie.encode("latin-1")


# ---- the per-route policy -----------------------------------------------------------------

_EXPIRED_KEY = "CSRF cookie made under the previous key, past its grace period"
# The refusal's words for metrics and the access log; any other refusal is a "mismatch".
_REASONS = {
    "CSRF header missing or empty": "missing",
    "CSRF cookie missing or empty": "missing",
    "Sec-Fetch-Site or Origin sent more than once": "origin",
    "Sec-Fetch-Site is cross-site": "origin",
    "Origin is neither this server nor allowed by the path's CORS": "origin",
    _EXPIRED_KEY: "expired_key",
}


class CsrfPolicy:
    """Refuses a request unless it proves it came from a page that fetched our token.

    Everything derivable from configuration is fixed here; ``check`` reads a few headers,
    computes one HMAC (two within a rotation's grace period) and compares in constant time.
    """

    __slots__ = ("cookie", "header", "grace_s", "keys", "path_cors", "clock")

    def __init__(self, settings: CsrfSettings, keys: CsrfKeys, path_cors: _PathCors | None, *,
                 clock: Callable[[], float] = time.time):
        self.cookie = settings.cookie
        self.header = settings.header.lower()
        self.grace_s = settings.grace_s
        self.keys = keys
        self.path_cors = path_cors
        self.clock = clock

    def check(self, req: Request) -> None:
        reason = self._refusal(req)
        if reason is not None:
            log.info("CSRF check refused %s %s: %s", req.method, req.path, reason)
            raise HTTPError(400, ERROR_MESSAGE, stage="csrf", reason=_REASONS.get(reason, "mismatch"))

    def _refusal(self, req: Request) -> str | None:
        """The name of the first failed check (never a token value), or None."""
        dups = req.duplicates
        headers = req.header_map()            # every header was read for the duplicates anyway
        for name in METHOD_OVERRIDE_HEADERS:
            if name in headers:
                return f"method override header {name} present"
        if dups and ("sec-fetch-site" in dups or "origin" in dups):
            return "Sec-Fetch-Site or Origin sent more than once"
        if headers.get("sec-fetch-site") == "cross-site":
            return "Sec-Fetch-Site is cross-site"
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(req, origin):
            return "Origin is neither this server nor allowed by the path's CORS"

        if self.header in dups:
            return "CSRF header sent more than once"
        token = headers.get(self.header)
        if not token:
            return "CSRF header missing or empty"
        # Usually one cookie. Several of that name (one planted by a sibling subdomain with
        # Domain=, or with another Path) are not refused outright, or a hostile sibling could
        # lock the real front end out: any one that is the keyed hash of the header will do.
        # A planted cookie cannot help an attacker, who still cannot send the header.
        values = req.cookie_values(self.cookie)
        if len(values) == 1 and self.keys.matched(token, values[0]):
            return None                       # this session's pair, checked before under this key
        if not any(values):
            return "CSRF cookie missing or empty"
        if len(values) > MAX_COOKIES:
            return "CSRF cookie sent too many times"
        if len(token) > MAX_TOKEN_CHARS:
            return "CSRF header or cookie too long"
        if not _B64URL_RE.fullmatch(token):
            return "CSRF header or cookie is not base64url"
        candidates = [c for c in values if len(c) <= MAX_TOKEN_CHARS and _B64URL_RE.fullmatch(c)]
        if not candidates:
            if any(len(c) > MAX_TOKEN_CHARS for c in values):
                return "CSRF header or cookie too long"
            return "CSRF header or cookie is not base64url"
        now = self.clock()
        for cookie in candidates:
            if self.keys.verify(token, cookie, grace_s=self.grace_s, now=now) is not None:
                return None
        if any(self.keys.verify(token, c, grace_s=math.inf, now=now) == "previous" for c in candidates):
            return _EXPIRED_KEY
        return "CSRF cookie does not match the header under a valid key"

    def _origin_allowed(self, req: Request, origin: str) -> bool:
        if origin == "null":
            return False
        host = req.host                       # as the browser sent it (a trusted proxy's X-Forwarded-Host)
        own = (("https://" if req.secure else "http://") + host) if host else None
        if origin == own:
            return True
        if self.path_cors is not None and self.path_cors.allows_origin(origin):
            return True
        if own is None:
            return False
        # rare: the same origin spelled differently (upper case, explicit default port)
        parsed = parse_origin(origin)
        return parsed is not None and parsed == parse_origin(own)
