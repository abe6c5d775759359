"""JWT bearer authentication (RFC 7519, RFC 6750) against a ``jwt`` secret.

Three layers, each usable alone (the Wycheproof and RFC vectors run against the first):

1. :func:`verify_signature` -- the compact JWS: size cap, strict base64url, strict JSON header
   (no duplicate keys, bounded nesting and numbers), refusals (``none`` in any case, embedded
   ``jwk``/``jku``/``x5u``/``x5c``, any ``crit``, a ``typ`` other than JWT), key selection by
   ``kid``, and the signature check with joserfc's algorithm for an algorithm *the key set*
   allows. The token's ``alg`` only chooses among those; it never widens them.
2. :func:`decode_claims` / :func:`check_claims` -- strict JSON claims; ``exp`` required;
   ``nbf``/``iat`` with the secret's leeway; ``iss``/``aud`` when the secret names them.
3. :class:`JwtPolicy` -- reads the token (``Authorization: Bearer`` or the configured cookie,
   nothing else), keeps a verified-token cache (key: SHA-256 of the token; entries end when the
   token does; dropped when the secret object changes; bounded in entries and in estimated
   bytes, and a token with bulky claims is verified every time instead of kept) so a repeated
   token costs a hash and a dict lookup, and fetches a ``jwks_url`` key set in the background.

Every failure is a 401 carrying ``WWW-Authenticate: Bearer realm="..."`` (plus
``error="invalid_token"`` when a token was sent). No library exception escapes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from joserfc.jwk import Key
from joserfc.jws import JWSAlgModel, JWSRegistry

from flowlet.errors import HTTPError
from flowlet.headers import www_authenticate_bearer
from flowlet.http import Request
from flowlet.jose import SUPPORTED_ALGORITHMS, import_jwk, import_oct, import_pem, key_algorithms
from flowlet.jsonutil import StrictJSON
from flowlet.secrets.model import JwtSecret, Secret, SecretsSource
from flowlet.secrets.view import recheck
from flowlet.security.expiring import ExpiringCache, json_cost
from flowlet.security.runtime import AuthRuntime, unavailable_error

if TYPE_CHECKING:
    from flowlet.edge.authlimit import AuthThrottle

log = logging.getLogger("flowlet.auth")

MAX_TOKEN = 8192               # bytes; longer tokens are refused before any parsing
MAX_JSON_DEPTH = 32            # nesting of the header and claims JSON
MAX_INT_DIGITS = 40            # JSON integers longer than this are refused
CACHE_MAX = 10_000             # verified tokens remembered per secret
CACHE_MAX_BYTES = 32 << 20     # their estimated size at most, per secret
MAX_CACHED_BYTES = 32 << 10    # a token whose claims take more is verified every time, not kept
MAX_JWKS_BYTES = 1 << 20       # a key set document larger than this is refused

# Header members that would let a token choose its own key or change what a signature means.
FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit", "b64")

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_JSON = StrictJSON(max_int_digits=MAX_INT_DIGITS, unique_keys=True, max_depth=MAX_JSON_DEPTH)


# ---- errors -----------------------------------------------------------------------------------

class InvalidToken(HTTPError):
    """A refused token: 401. The policy re-raises it with its realm's challenge header."""

    def __init__(self, detail: str, reason: str = "malformed"):
        super().__init__(401, f"invalid token: {detail}", stage="auth", reason=reason)
        self.detail = detail


class UnknownKey(InvalidToken):
    """No key of the set matches the token's ``kid`` (a ``jwks_url`` set may be refreshed)."""

    def __init__(self, detail: str):
        super().__init__(detail, "bad_signature")


# ---- strict base64url and JSON ----------------------------------------------------------------

def b64url_decode(segment: str) -> bytes:
    """RFC 7515 base64url without padding, canonical only (no stray bits, no other characters)."""
    if len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        raise InvalidToken("malformed base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise InvalidToken("malformed base64url")
    return raw


def strict_json(raw: bytes, what: str) -> Any:
    """UTF-8 JSON with no duplicate keys, no NaN/Infinity, bounded nesting, numbers and strings
    that are valid Unicode; anything else is an :class:`InvalidToken`."""
    try:
        return _JSON.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise InvalidToken(f"malformed {what}") from None


# ---- keys ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class VerifyKey:
    """One verification key and the algorithms it may verify (name -> joserfc algorithm)."""

    kid: str | None
    key: Key = field(repr=False)
    algs: dict[str, JWSAlgModel] = field(repr=False)


class KeySet:
    """The keys of one secret, with their pinned algorithms; selects by ``kid``."""

    __slots__ = ("keys", "by_kid")

    def __init__(self, keys: Iterable[VerifyKey]):
        self.keys = tuple(keys)
        by_kid: dict[str, list[VerifyKey]] = {}
        for k in self.keys:
            if k.kid is not None:
                by_kid.setdefault(k.kid, []).append(k)
        self.by_kid = {kid: tuple(ks) for kid, ks in by_kid.items()}

    def select(self, kid: str | None) -> tuple[VerifyKey, ...]:
        if kid is not None:
            found = self.by_kid.get(kid)
            if found:
                return found
            if len(self.keys) == 1 and self.keys[0].kid is None:
                return self.keys      # a single key without a kid (PEM, shared key) ignores kids
            raise UnknownKey("unknown key id")
        if len(self.keys) == 1:
            return self.keys
        if not self.keys:
            raise UnknownKey("no verification keys available")
        raise InvalidToken("kid required: the key set has several keys")

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:   # key ids and algorithms only, never key material
        return "KeySet(" + ", ".join(f"{k.kid or '-'}:{'/'.join(k.algs)}" for k in self.keys) + ")"


_MODELS = {name: model for name, model in JWSRegistry.algorithms.items() if name in SUPPORTED_ALGORITHMS}


def _possible_algorithms(key: Key) -> tuple[str, ...]:
    """Every algorithm this key may verify, the default (when nothing pins one) first."""
    kty = key.key_type
    return key_algorithms(kty, key.curve_name if kty in ("EC", "OKP") else None)


def pin_key(key: Key, algorithms: tuple[str, ...], kid: str | None = None) -> VerifyKey | None:
    """The key with the algorithms it may verify, or None when it may verify nothing.

    ``algorithms`` (the secret's) wins; else a JWK's own ``alg``; else the key type's default.
    joserfc then checks each against the key (type, curve, ``use``, ``alg``), and a
    ``key_ops`` without ``verify`` disables the key.
    """
    possible = _possible_algorithms(key)
    if algorithms:
        names = [a for a in algorithms if a in possible]
    elif key.get("alg") in possible:
        names = [key.get("alg")]
    else:
        names = list(possible[:1])
    try:
        key.check_key_op("verify")
    except Exception:
        return None
    algs = {}
    for name in names:
        model = _MODELS.get(name)
        if model is None:
            continue
        try:
            model.check_key(key)
        except Exception:
            continue
        algs[name] = model
    if not algs:
        return None
    return VerifyKey(kid if kid is not None else key.get("kid"), key, algs)


def jwk_list(jwks: Any) -> list[dict]:
    """The keys of a JWK Set (``{"keys": [...]}``), or a single JWK."""
    if isinstance(jwks, dict) and isinstance(jwks.get("keys"), list):
        return [k for k in jwks["keys"] if isinstance(k, dict)]
    if isinstance(jwks, dict) and "kty" in jwks:
        return [jwks]
    raise ValueError("not a JWK set: expected an object with a 'keys' list")


def keyset_from_jwks(jwks: Any, algorithms: tuple[str, ...] = ()) -> KeySet:
    """Pin every usable key of a JWK set; keys that cannot verify anything are skipped."""
    keys = []
    for jwk in jwk_list(jwks):
        try:
            pinned = pin_key(import_jwk(jwk), algorithms)
        except Exception as exc:
            log.warning("jwt: skipping a key of the key set (kid %r): %s", jwk.get("kid"), _short(exc))
            continue
        if pinned is not None:
            keys.append(pinned)
    return KeySet(keys)


def keyset_from_secret(secret: JwtSecret, fetched: dict | None = None) -> KeySet:
    """Build the key set of a JwtSecret (``fetched``: the last JWK set read from ``jwks_url``).

    Raises ValueError (or a library error) for unusable key material; the caller reports it.
    """
    algorithms = tuple(secret.algorithms)
    for alg in algorithms:
        if alg.lower() == "none":
            raise ValueError("algorithm 'none' is never accepted")
        if alg not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported algorithm {alg!r} (supported: {', '.join(sorted(SUPPORTED_ALGORITHMS))})")
    key: Key | None
    if secret.hs_key is not None:
        key = import_oct(secret.hs_key)
    elif secret.private_pem is not None:
        key = import_pem(secret.private_pem)
    elif secret.public_pem is not None:
        key = import_pem(secret.public_pem)
    else:
        key = None
    if key is not None:
        pinned = pin_key(key, algorithms, kid=None)
        if pinned is None:
            raise ValueError(f"the key of this secret cannot verify {', '.join(algorithms)}")
        return KeySet([pinned])
    source = fetched if fetched is not None else secret.jwks
    if source is None:
        if secret.jwks_url:
            return KeySet(())     # nothing fetched yet
        raise ValueError("the secret has no key")
    keyset = keyset_from_jwks(source, algorithms)
    if not keyset.keys and fetched is None:
        raise ValueError("no key of the key set can verify signatures"
                         + (f" with {', '.join(algorithms)}" if algorithms else ""))
    return keyset


# ---- layer 1: the signature ----------------------------------------------------------------------

def verify_signature(token: str, keyset: KeySet) -> tuple[dict, bytes]:
    """Verify a compact JWS against ``keyset``; returns (header, payload bytes).

    Raises :class:`InvalidToken` (an HTTPError, 401) and nothing else.
    """
    try:
        return _verify_signature(token, keyset)
    except InvalidToken:
        raise
    except Exception as exc:   # a library surprise is a refusal, never a 500
        log.info("jwt: verification error %s", type(exc).__name__)
        raise InvalidToken("signature check failed", "bad_signature") from None


def _verify_signature(token: str, keyset: KeySet) -> tuple[dict, bytes]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN or not token.isascii():
        raise InvalidToken("malformed token")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWS")
    h_seg, p_seg, s_seg = parts
    header = strict_json(b64url_decode(h_seg), "header")
    payload = b64url_decode(p_seg)
    signature = b64url_decode(s_seg)
    if not isinstance(header, dict):
        raise InvalidToken("header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise InvalidToken("header has no alg")
    if alg.lower() == "none":
        raise InvalidToken("unsigned tokens are not accepted")
    for name in FORBIDDEN_HEADERS:
        if name in header:
            raise InvalidToken(f"header member {name!r} is not accepted")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise InvalidToken("typ must be JWT")
    cty = header.get("cty")
    if cty is not None and (not isinstance(cty, str) or cty.upper() == "JWT"):
        raise InvalidToken("nested tokens are not accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("kid must be a string")
    candidates = keyset.select(kid)
    signing_input = token[: len(h_seg) + 1 + len(p_seg)].encode("ascii")
    allowed = False
    for key in candidates:
        model = key.algs.get(alg)
        if model is None:
            continue
        allowed = True
        if model.verify(signing_input, signature, key.key):
            return header, payload
    if not allowed:
        raise InvalidToken(f"algorithm {alg!r} is not accepted for this key", "bad_signature")
    raise InvalidToken("bad signature", "bad_signature")


# ---- layer 2: the claims -------------------------------------------------------------------------

def decode_claims(payload: bytes) -> dict:
    claims = strict_json(payload, "claims")
    if not isinstance(claims, dict):
        raise InvalidToken("claims are not a JSON object")
    return claims


def _number(claims: dict, name: str) -> float | int | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"{name} must be a number")
    return value


def check_claims(claims: dict, *, issuer: str | None, audience: str | None, leeway: float,
                 now: float) -> float:
    """Check the registered claims; returns the time until which the token stays acceptable."""
    exp = _number(claims, "exp")
    if exp is None:
        raise InvalidToken("exp is required")
    if now >= exp + leeway:
        raise InvalidToken("expired", "expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and now < nbf - leeway:
        raise InvalidToken("not valid yet", "expired")
    iat = _number(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise InvalidToken("issued in the future", "expired")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise InvalidToken("sub must be a string")
    if issuer is not None and claims.get("iss") != issuer:
        raise InvalidToken("wrong issuer", "issuer_audience")
    if audience is not None:
        aud = claims.get("aud")
        if isinstance(aud, str):
            ok = aud == audience
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            ok = audience in aud
        else:
            ok = False
        if not ok:
            raise InvalidToken("wrong audience", "issuer_audience")
    return float(exp + leeway)


def token_scopes(claims: dict, scope_claim: str | None) -> list[str]:
    """Scopes from the secret's claim (absent -> none), else the first of scope, scp, scopes."""
    names = (scope_claim,) if scope_claim else ("scope", "scp", "scopes")
    for name in names:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, str):     # RFC 6749 section 3.3: separated by spaces, nothing else
            return [scope for scope in value.split(" ") if scope]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InvalidToken(f"{name} must be a string or a list of strings")
    return []


# ---- layer 3: key sets from a URL, the verified-token cache, the policy ------------------------

async def fetch_jwks(url: str, timeout: float) -> list[dict]:
    """GET a JWK set (no redirects, size-capped, strict JSON); the keys as dicts."""
    import httpx

    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        async with client.stream("GET", url, headers={"accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("key set too large")
    try:
        doc = strict_json(bytes(body), "key set")
    except InvalidToken:
        raise ValueError("key set is not valid JSON") from None
    return jwk_list(doc)


class _Verifier:
    """Per secret, shared by every endpoint using the secret (kept by the AuthRuntime)."""

    refresh_interval = 300.0       # seconds between background refreshes of a jwks_url
    refresh_cooldown = 30.0        # minimum seconds between fetches (unknown kid, failures)
    fetch_timeout = 5.0

    def __init__(self, name: str, secrets: SecretsSource, runtime: AuthRuntime):
        self.name = name
        self.secrets = secrets
        self.clock = runtime.clock
        self.monotonic = runtime.monotonic
        self.secret: Secret | None = None
        self.keyset: KeySet | None = None
        self.problem: str | None = None
        self.cache: ExpiringCache[bytes, dict] = ExpiringCache(CACHE_MAX, CACHE_MAX_BYTES)
        # jwks_url state survives secret changes while the URL stays the same
        self.url: str | None = None
        self.fetched: list[dict] | None = None
        self.fetched_at = -math.inf
        self.attempted_at = -math.inf
        self.task: asyncio.Task[None] | None = None
        self.fetches = {"ok": 0, "error": 0}     # key-set fetches by outcome, for the metrics

    # -- the secret --
    def sync(self) -> Secret | None:
        secret = self.secrets.get(self.name)
        if secret is not self.secret:
            self._load(secret)
        return secret

    def _load(self, secret: Secret | None) -> None:
        self.secret = secret
        self.cache.clear()
        self.keyset = None
        self.problem = None
        if not isinstance(secret, JwtSecret):
            self.problem = "the secret is missing or not a jwt secret"
            return
        url = None if (secret.hs_key or secret.public_pem or secret.private_pem) else secret.jwks_url
        if url != self.url:
            self.url, self.fetched = url, None
            self.fetched_at = self.attempted_at = -math.inf
        try:
            self.keyset = keyset_from_secret(secret, {"keys": self.fetched} if self.fetched is not None else None)
        except Exception as exc:
            self.problem = f"unusable key material: {_short(exc)}"

    # -- jwks_url --
    async def refresh(self) -> None:
        """Fetch the key set now (coalesced with a fetch already running); keeps the last good set."""
        loop = asyncio.get_running_loop()
        task = self.task
        if task is None or task.done() or task.get_loop() is not loop:
            task = self.task = loop.create_task(self._fetch())
        await asyncio.shield(task)

    def schedule_refresh(self) -> None:
        task = self.task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            return
        self.task = asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> None:
        url = self.url
        if url is None:
            return
        self.attempted_at = self.monotonic()
        algorithms = tuple(getattr(self.secret, "algorithms", ()))
        try:
            keys = await fetch_jwks(url, self.fetch_timeout)
            keyset = keyset_from_jwks({"keys": keys}, algorithms)
            if not keyset.keys:
                raise ValueError("no usable key in the key set")
        except Exception as exc:
            log.warning("jwt: fetching the key set of secret %r failed (%s); keeping the last good keys",
                        self.name, _short(exc))
            self.fetches["error"] += 1
            return
        self.fetches["ok"] += 1
        if url == self.url:
            if self.fetched is not None and keys != self.fetched:
                self.cache.clear()      # a key the issuer dropped must stop working for cached tokens too
            self.fetched, self.keyset, self.fetched_at = keys, keyset, self.monotonic()
            self.problem = None

    def may_fetch(self) -> bool:
        return self.monotonic() - self.attempted_at >= self.refresh_cooldown

    # -- verification --
    async def verify(self, token: str, throttle: AuthThrottle | None = None, client: str | None = None) -> dict:
        secret = self.sync()
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        auth = self.cache.get(key, self.clock())
        if auth is not None:
            if throttle is not None and throttle.suspect(client, None):
                await throttle.confirm(client, None)
            return auth
        if throttle is None:
            return await self._verify_fresh(token, key, secret)
        ticket = await throttle.admit(client, None)     # 429 before any signature check
        try:
            auth = await self._verify_fresh(token, key, secret)
        except Exception:
            throttle.failed(ticket)
            raise
        await throttle.succeeded(ticket)
        return auth

    async def _verify_fresh(self, token: str, key: bytes, secret: Secret | None) -> dict:
        try:
            return await self._verify_slow(token, key, secret)
        except InvalidToken:   # before refusing, look once for a change made a moment ago
            if not await recheck(self.secrets, self.sync, secret):
                raise
        return await self._verify_slow(token, key, self.secret)

    async def _verify_slow(self, token: str, key: bytes, secret: Secret | None) -> dict:
        if not isinstance(secret, JwtSecret) or (self.problem is not None and self.keyset is None):
            log.error("jwt: secret %r: %s; request refused", self.name, self.problem)
            raise unavailable_error(self.secrets, self.name) or InvalidToken("authentication is not available",
                                                                          "unavailable")
        if self.url is not None:
            if self.fetched is None and self.may_fetch():
                await self.refresh()
            elif self.monotonic() - self.fetched_at >= self.refresh_interval and self.may_fetch():
                self.schedule_refresh()
        keyset = self.keyset or KeySet(())
        try:
            header, payload = verify_signature(token, keyset)
        except UnknownKey:
            if self.url is None or not self.may_fetch():
                raise
            await self.refresh()
            header, payload = verify_signature(token, self.keyset or KeySet(()))
        claims = decode_claims(payload)
        until = check_claims(claims, issuer=secret.issuer, audience=secret.audience,
                             leeway=secret.leeway, now=self.clock())
        auth = {"type": "jwt", "user": claims.get("sub"), "claims": claims,
                "scopes": token_scopes(claims, secret.scope_claim)}
        size = len(token) + json_cost(payload)
        if self.secret is secret and size <= MAX_CACHED_BYTES:
            self.cache.put(key, until, auth, size=size, now=self.clock())
        return auth

    def close(self) -> None:
        self.cache.clear()
        task, self.task = self.task, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.get_loop().call_soon_threadsafe(task.cancel)


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).split("\n", 1)[0][:200]


def bearer_token(req: Request, cookie: str | None) -> str | None:
    """The token from ``Authorization: Bearer`` (scheme case-insensitive), else from ``cookie``.

    None when neither carries one; ``""`` when what was sent is ambiguous (repeated header or cookie).
    """
    value = req.headers.get("authorization")
    if value is not None:
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            return "" if req.repeated("authorization") else rest.strip(" ")
    if cookie is not None:
        token = req.cookies.get(cookie)
        if token is not None:
            return "" if cookie in req.duplicate_cookies else token
    return None


class JwtPolicy:
    """``auth: {type: jwt, secret: NAME[, token_cookie: C]}`` compiled for one endpoint."""

    __slots__ = ("_v", "_cookie", "_missing", "_invalid_header", "_throttle")

    def __init__(self, secret_name: str, *, realm: str, secrets: SecretsSource, runtime: AuthRuntime,
                 token_cookie: str | None = None):
        self._v = runtime.shared("jwt", secret_name, lambda: _Verifier(secret_name, secrets, runtime))
        self._cookie = token_cookie
        self._throttle = runtime.throttle
        self._missing = ((b"www-authenticate", www_authenticate_bearer(realm)),)
        self._invalid_header = ((b"www-authenticate", www_authenticate_bearer(realm, "invalid_token")),)

    def prepare(self) -> None:
        """Load time: build the keys now; raises ValueError when the key material is unusable."""
        self._v.sync()
        if self._v.problem is not None:
            raise ValueError(self._v.problem)

    async def authenticate(self, req: Request) -> dict:
        token = bearer_token(req, self._cookie)
        if token is None:
            raise HTTPError(401, "bearer token required", self._missing, stage="auth", reason="missing")
        if not token:
            raise HTTPError(401, "invalid token: sent more than once or empty", self._invalid_header,
                            stage="auth", reason="malformed")
        if len(token) > MAX_TOKEN:
            raise HTTPError(401, "invalid token: too large", self._invalid_header, stage="auth", reason="malformed")
        v = self._v
        try:
            # a repeated token, inline: one hash and one dict lookup, no coroutine; else verify()
            v.sync()
            auth = v.cache.get(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest(), v.clock())
            throttle = self._throttle
            if auth is not None and (throttle is None or throttle.quiet() or not throttle.suspect(req.client, None)):
                return auth
            return await v.verify(token, throttle, req.client)
        except InvalidToken as exc:
            log.debug("jwt: token refused for secret %r: %s", v.name, exc.detail)
            raise HTTPError(401, exc.message, self._invalid_header, stage="auth", reason=exc.reason) from None
        except HTTPError:
            raise                       # 429 from the throttle
        except Exception:
            log.exception("jwt: unexpected error while verifying a token (secret %r)", v.name)
            raise HTTPError(401, "invalid token", self._invalid_header, stage="auth", reason="malformed") from None

    def __repr__(self) -> str:
        return f"JwtPolicy(secret={self._v.name!r})"
