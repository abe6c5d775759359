"""Rate limits: the ``rate_limits:`` settings, an endpoint's ``rate_limit:``, and the limiter.

.. code-block:: yaml

    # flowlet.yaml
    rate_limits:
      store: redis://10.0.0.5:6379/0      # omitted: counters shared by this server's workers
      key_prefix: "flowlet:"              # Redis keys start with it (several workspaces, one Redis)
      auth_failures:                      # built in, on by default
        per_client: 30/60s                # or false
        per_user: 10/60s                  # or false

    # flows/x.yaml
    endpoint:
      rate_limit: {limit: 100, window_s: 60, key: client}   # client | user | "=CEL"

Windows are fixed and aligned to the epoch. Over the limit: 429 JSON with ``Retry-After``,
``RateLimit-Policy`` and ``RateLimit`` (the IETF httpapi draft's structured fields).
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from flowlet.edge.counters import LocalTable, RedisCounters
from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.source import YMap, check_keys, expect_map, get_int, get_str

if TYPE_CHECKING:
    from flowlet.expr import Expr

Where = tuple[Union[str, None], int]

_RATE = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*(s|m|h)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}
_PREFIX = re.compile(r"^[\x21-\x7e]{0,64}$")
MAX_KEY = 200                 # longer keys (a CEL result, a user name) are hashed first
DEFAULT_PER_CLIENT = "30/60s"
DEFAULT_PER_USER = "10/60s"


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int
    window_s: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_s}s"


def parse_rate(text: Any, where: Where) -> Rate:
    """``"N/Ws"`` (also ``N/Wm``, ``N/Wh``; a bare number of seconds is read as seconds)."""
    m = _RATE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(f"a rate looks like \"30/60s\" (count / window with s, m or h); got {text!r}", *where)
    limit, window = int(m.group(1)), int(m.group(2)) * _UNIT[m.group(3)]
    if limit < 1 or not 1 <= window <= 86400:
        raise ConfigError("a rate needs a count of at least 1 and a window from 1 s to 24 h", *where)
    return Rate(limit, window)


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """flowlet.yaml ``rate_limits:``."""

    store: str | None = field(default=None, repr=False)     # may hold a password
    key_prefix: str = "flowlet:"
    per_client: Rate | None = Rate(30, 60)
    per_user: Rate | None = Rate(10, 60)


def parse_rate_limit_settings(raw: Any, parent: YMap | None = None) -> RateLimitSettings:
    if raw is None:
        return RateLimitSettings()
    m = expect_map(raw, parent, "rate_limits", "'rate_limits'")
    check_keys(m, ("store", "key_prefix", "auth_failures"), "rate_limits")
    store = get_str(m, "store", None)
    if store is not None and not store.startswith(("redis://", "rediss://", "unix://")):
        raise m.error("'store' must be a redis://, rediss:// or unix:// URL (omit it to count per server)",
                      "store")
    prefix = get_str(m, "key_prefix", "flowlet:")
    if not _PREFIX.match(prefix):
        raise m.error("'key_prefix' must be at most 64 printable characters without spaces", "key_prefix")
    per_client, per_user = Rate(30, 60), Rate(10, 60)
    af = m.get("auth_failures")
    if af is False:
        per_client = per_user = None
    elif af is not None:
        af = expect_map(af, m, "auth_failures", "'auth_failures'")
        check_keys(af, ("per_client", "per_user"), "auth_failures")
        per_client = _rate_or_off(af, "per_client", DEFAULT_PER_CLIENT)
        per_user = _rate_or_off(af, "per_user", DEFAULT_PER_USER)
    return RateLimitSettings(store, prefix, per_client, per_user)


def _rate_or_off(m: YMap, key: str, default: str) -> Rate | None:
    value = m.get(key, default)
    if value is False:
        return None
    return parse_rate(value, m.where(key))


@dataclass(frozen=True, slots=True)
class EndpointRateLimit:
    """An endpoint's ``rate_limit:`` block. ``key`` is ``client``, ``user`` or a CEL source."""

    limit: int
    window_s: int
    key: str = "client"
    where: Where = (None, 1)
    key_where: Where = (None, 1)


def parse_endpoint_rate_limit(raw: Any, parent: YMap) -> EndpointRateLimit:
    m = expect_map(raw, parent, "rate_limit", "'rate_limit'")
    check_keys(m, ("limit", "window_s", "key"), "rate_limit")
    limit = get_int(m, "limit", minimum=1)
    window = get_int(m, "window_s", minimum=1, maximum=86400)
    key = get_str(m, "key", "client")
    if key not in ("client", "user") and not key.startswith("="):
        raise m.error(f"'key' must be client, user or an expression starting with '='; got {key!r}", "key")
    if key.startswith("=") and not key[1:].strip():
        raise m.error("'key' expression is empty", "key")
    return EndpointRateLimit(limit, window, key, m.where(), m.where("key"))


# ---- the limiter (one per worker) ----------------------------------------------------------

class Limiter:
    """Counts in Redis when a store is set and reachable, else in the server's shared table."""

    def __init__(self, settings: RateLimitSettings, table: LocalTable | None = None):
        self.settings = settings
        self.table = table if table is not None else LocalTable.for_worker()
        self.redis = RedisCounters(settings.store, settings.key_prefix) if settings.store else None

    def health(self) -> dict:
        """For the admin listener: ``{"redis": "ok" | "down"}``, or ``{"counters": "local"}``."""
        if self.redis is None:
            return {"counters": "local"}
        return {"redis": self.redis.health()}

    async def hit(self, key: str, window_s: int, delta: int = 1) -> tuple[int, int]:
        """Add ``delta`` to ``key`` in the current window: (count, window end in ms)."""
        now = int(time.time() * 1000)
        if self.redis is not None:
            got = await self.redis.incr(key, delta, window_s * 1000, now)
            if got is not None:
                return got
        return self.table.add(key, delta, window_s * 1000, now)

    def close(self) -> None:
        """Let go of the counter table (the shared one lives on in the other workers) and Redis."""
        if self.redis is not None:
            self.redis.close()
        self.table.close()

    async def aclose(self) -> None:
        """At shutdown: the Redis connection only (a request still finishing may count locally)."""
        if self.redis is not None:
            self.redis.close()


async def probe(settings: RateLimitSettings, timeout: float = 0.5) -> dict[str, str]:
    """For a health check outside the workers (the supervisor's admin listener): one PING.
    ``{"redis": "ok" | "down"}``, or ``{"counters": "local"}`` when no store is set."""
    if settings.store is None:
        return {"counters": "local"}
    from flowlet.edge.resp import RespConnection
    try:
        conn = await RespConnection.open(settings.store, timeout)
    except Exception:                     # refused, timed out, bad password: all "down"
        return {"redis": "down"}
    try:
        import asyncio
        async with asyncio.timeout(timeout):
            answer = await conn.call("PING")
        return {"redis": "ok" if answer == "PONG" else "down"}
    except Exception:
        return {"redis": "down"}
    finally:
        conn.close()


def too_many(message: str, policy: str, rate_limit: int, window_s: int, end_ms: int, *,
             stage: str = "limits", reason: str = "rate_limit") -> HTTPError:
    """429 with Retry-After and the draft's RateLimit-Policy / RateLimit fields."""
    wait = max(1, math.ceil((end_ms - time.time() * 1000) / 1000))
    return HTTPError(429, message, (
        (b"retry-after", str(wait).encode()),
        (b"ratelimit-policy", f'"{policy}";q={rate_limit};w={window_s}'.encode()),
        (b"ratelimit", f'"{policy}";r=0;t={wait}'.encode()),
    ), stage=stage, reason=reason)


_V6_KEYS: dict[str, str] = {}


def client_key(client: str | None) -> str:
    """IPv6 clients are counted per /64: one host usually holds a whole /64 and could otherwise
    spread its attempts over 2**64 addresses."""
    if client is None:
        return "-"
    if ":" not in client:
        return client
    key = _V6_KEYS.get(client)
    if key is None:
        try:
            key = str(ipaddress.ip_network(f"{client}/64", strict=False))
        except ValueError:
            key = client
        if len(_V6_KEYS) > 4096:
            _V6_KEYS.clear()
        _V6_KEYS[client] = key
    return key


def bounded(text: str) -> str:
    if len(text) <= MAX_KEY:
        return text
    import hashlib
    return "h:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EndpointLimit:
    """``rate_limit:`` compiled for one route: the pipeline's one call is :meth:`check`."""

    __slots__ = ("limiter", "limit", "window_s", "window_ms", "name", "key", "key_of", "policy")

    def __init__(self, cfg: EndpointRateLimit, route_id: str, limiter: Limiter,
                 key_of: Callable[[Request, dict, dict], str]):
        self.limiter = limiter
        self.limit = cfg.limit
        self.window_s = cfg.window_s
        self.window_ms = cfg.window_s * 1000
        self.name = f"ep:{route_id}:"
        self.key = cfg.key
        self.key_of = key_of
        self.policy = "endpoint"

    def describe(self) -> dict:
        return {"limit": self.limit, "window_s": self.window_s, "key": self.key}

    async def check(self, req: Request, auth: dict, params: dict) -> None:
        key = self.name + self.key_of(req, auth, params)
        if self.limiter.redis is None:        # the common case: no await, no clock call of our own
            count, end = self.limiter.table.add(key, 1, self.window_ms)
        else:
            count, end = await self.limiter.hit(key, self.window_s)
        if count > self.limit:
            raise too_many("rate limit exceeded", self.policy, self.limit, self.window_s, end)


def compile_endpoint_limit(cfg: EndpointRateLimit, *, route_id: str, limiter: Limiter, uses_auth: bool,
                           compile_expr: Callable[[str, Where], Expr]) -> EndpointLimit:
    """Load time: the key function. ``user`` needs authentication; an expression is compiled now."""
    if cfg.key == "client":
        key_of = _by_client
    elif cfg.key == "user":
        if not uses_auth:
            raise ConfigError("rate_limit key 'user' needs an 'auth' block on this endpoint", *cfg.key_where)
        key_of = _by_user
    else:
        expr = compile_expr(cfg.key[1:].strip(), cfg.key_where)
        key_of = _by_expr(expr)
    return EndpointLimit(cfg, route_id, limiter, key_of)


def _by_client(req: Request, auth: dict, params: dict) -> str:
    return client_key(req.client)


def _by_user(req: Request, auth: dict, params: dict) -> str:
    user = auth.get("user")
    return "u:" + bounded(str(user)) if user is not None else "c:" + client_key(req.client)


def _by_expr(expr: Expr) -> Callable[[Request, dict, dict], str]:
    from flowlet.expr import ExprError

    def key_of(req: Request, auth: dict, params: dict) -> str:
        env = {"request": req.expr_view(), "auth": auth, "params": params, "query": req.query}
        try:
            value = expr.evaluate(env)
        except ExprError:
            value = None
        if value is None:                 # a missing claim or header: counted per client, never a 500
            return "c:" + client_key(req.client)
        return "x:" + bounded(value if isinstance(value, str) else repr(value))
    return key_of

