"""The ``auth:`` block of an endpoint: its config model, and the dispatch to Basic or JWT.

.. code-block:: yaml

    auth:
      type: jwt              # none | basic | jwt (required)
      secret: users-jwt      # a secret of the matching type (required unless type none)
      scope: users:write     # JSON scope rule (jwt only), or:
      scope_expr: "..."      # CEL over claims, scopes, params, request (jwt only)
      token_cookie: session  # also read the JWT from this cookie (jwt only)

:func:`parse_auth` validates the block (load errors name FILE:LINE); :func:`compile_auth`
looks the secret up and builds the endpoint's :class:`AuthPolicy` and :class:`ScopePolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Union

from flowlet.errors import ConfigError
from flowlet.headers import is_token
from flowlet.http import Request
from flowlet.secrets.model import SecretsSource
from flowlet.security.basic import BasicPolicy
from flowlet.security.jwt import JwtPolicy
from flowlet.security.runtime import AuthRuntime
from flowlet.security.scopes import CompileExpr, ScopePolicy, ScopeRule, parse_scope_rule
from flowlet.source import YMap, check_keys, get_str

OPEN_AUTH = {"type": "none", "user": None, "claims": {}, "scopes": []}

AUTH_TYPES = ("none", "basic", "jwt")
_KEYS = ("type", "secret", "scope", "scope_expr", "token_cookie")

Where = tuple[Union[str, None], int]


class AuthPolicy(Protocol):
    async def authenticate(self, req: Request) -> dict: ...


@dataclass(frozen=True)
class AuthConfig:
    """One endpoint's validated ``auth:`` block. ``scope`` is plain JSON (str, list or dict)."""

    type: str
    secret: str | None = None
    scope: ScopeRule | None = None
    scope_expr: str | None = None
    token_cookie: str | None = None
    where: Where = (None, 1)           # the block
    secret_where: Where = (None, 1)
    scope_where: Where = (None, 1)

    @property
    def uses_auth(self) -> bool:
        return self.type != "none"

    def describe(self) -> dict | None:
        """For ``flowlet routes``: what a reader needs, never key material."""
        if self.type == "none":
            return None
        out: dict[str, Any] = {"type": self.type, "secret": self.secret}
        for key in ("scope", "scope_expr", "token_cookie"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def parse_auth(raw: YMap) -> AuthConfig:
    """Validate an ``auth:`` mapping; every mistake is a ConfigError at its line."""
    if not isinstance(raw, YMap):
        raise ConfigError("'auth' must be a mapping")
    check_keys(raw, _KEYS, "auth")
    kind = get_str(raw, "type", choices=AUTH_TYPES)
    if kind == "none":
        extra = [k for k in _KEYS if k != "type" and k in raw]
        if extra:
            raise raw.error(f"{extra[0]!r} has no effect with type none", extra[0])
        return AuthConfig("none", where=raw.where())
    secret = get_str(raw, "secret")
    if not secret.strip():
        raise raw.error("'secret' must name a secret", "secret")
    if kind != "jwt":
        for key in ("scope", "scope_expr", "token_cookie"):
            if key in raw:
                raise raw.error(f"{key!r} needs type jwt (scopes and cookies come from a token)", key)
    if "scope" in raw and "scope_expr" in raw:
        raise raw.error("use either 'scope' or 'scope_expr', not both", "scope_expr")
    scope = None
    scope_where = raw.where()
    if "scope" in raw:
        scope_where = raw.where("scope")
        scope = parse_scope_rule(raw["scope"], scope_where)
    scope_expr = get_str(raw, "scope_expr", None)
    if scope_expr is not None:
        scope_where = raw.where("scope_expr")
        if not scope_expr.strip():
            raise raw.error("'scope_expr' is empty", "scope_expr")
        if scope_expr.lstrip().startswith("="):
            scope_expr = scope_expr.lstrip()[1:]     # the flow-value habit: "=expr" means expr here too
    token_cookie = get_str(raw, "token_cookie", None)
    if token_cookie is not None and not is_token(token_cookie):     # RFC 6265 cookie-name
        raise raw.error(f"invalid cookie name {token_cookie!r}", "token_cookie")
    return AuthConfig(kind, secret, _plain(scope), scope_expr, token_cookie, where=raw.where(),
                      secret_where=raw.where("secret"), scope_where=scope_where)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def compile_auth(cfg: AuthConfig, *, realm: str, secrets: SecretsSource, runtime: AuthRuntime,
                 compile_expr: CompileExpr) -> tuple[AuthPolicy | None, ScopePolicy | None]:
    """Build the endpoint's policies. The secret must exist and be of the matching type;
    ``runtime`` (the workspace's) keeps what endpoints sharing a secret share."""
    if cfg.type == "none":
        return None, None
    secret = secrets.get(cfg.secret)
    sealed = getattr(secrets, "unavailable", None)
    locked = sealed(cfg.secret) if secret is None and sealed is not None else None
    if locked is not None:            # stored, but under a master key this server lacks: 503 until it has it
        if locked.stored_type != cfg.type:
            raise ConfigError(f"secret {cfg.secret!r} is a {locked.stored_type} secret; auth type {cfg.type} "
                              f"needs a {cfg.type} secret", *cfg.secret_where)
    elif secret is None:
        hint = ("--type basic --user USER --password-stdin" if cfg.type == "basic"
                else "--type jwt --hs-key-stdin (or --public-key, --jwks)")
        raise ConfigError(f"secret {cfg.secret!r} does not exist (create it with: flowlet secrets set "
                          f"{cfg.secret} -w DIR {hint})", *cfg.secret_where)
    actual = getattr(secret, "type", None) if locked is None else cfg.type
    if actual != cfg.type:
        raise ConfigError(f"secret {cfg.secret!r} is a {actual} secret; auth type {cfg.type} needs a "
                          f"{cfg.type} secret", *cfg.secret_where)
    policy: AuthPolicy
    if cfg.type == "basic":
        basic = BasicPolicy(cfg.secret, realm=realm, secrets=secrets, runtime=runtime)
        if locked is None:
            basic.prepare()
        policy = basic
    else:
        jwt = JwtPolicy(cfg.secret, realm=realm, secrets=secrets, runtime=runtime, token_cookie=cfg.token_cookie)
        try:
            if locked is None:
                jwt.prepare()
        except ValueError as exc:
            raise ConfigError(f"secret {cfg.secret!r}: {exc}", *cfg.secret_where) from None
        policy = jwt
    scope = None
    if cfg.scope is not None:
        scope = ScopePolicy.from_rule(cfg.scope, realm, where=cfg.scope_where)
    elif cfg.scope_expr is not None:
        scope = ScopePolicy.from_expr(cfg.scope_expr, realm, where=cfg.scope_where, compile_expr=compile_expr)
    return policy, scope
