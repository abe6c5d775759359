"""Scope rules: which tokens may call an endpoint once they are authenticated.

Two ways to say it, both checked when the workspace loads and compiled into one small closure:

- a JSON rule (``scope:``): ``"a"`` needs scope ``a``; ``["a", "b"]`` needs all of them;
  ``{"all": [...]}`` / ``{"any": [...]}`` nest. A rule may also be written as a string holding
  that JSON (``scope: '{"any": ["a", "b"]}'``);
- a CEL expression (``scope_expr:``) over ``claims``, ``scopes``, ``params`` and ``request``.
  It must return ``true``; any other result, or an evaluation error, refuses (403, logged),
  never a 500. ``secret()`` is not available here: a scope rule reads the token and the request only.

A refusal is ``403`` with ``WWW-Authenticate: Bearer realm="...", error="insufficient_scope"``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Iterable, Union

from flowlet.errors import ConfigError, HTTPError
from flowlet.headers import www_authenticate_bearer
from flowlet.http import Request
from flowlet.source import YList, YMap

log = logging.getLogger("flowlet.auth")

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_MAX_RULE_DEPTH = 16
EXPR_VARIABLES = ("claims", "scopes", "params", "request")
# Flow-level names a scope rule cannot see: naming one is a load error, not a 403 on every call.
_NOT_HERE = frozenset({"auth", "body", "query"})

Where = tuple[Union[str, None], int]
# A validated rule: a scope, a list of rules (all needed), or {"all" | "any": [rules]}.
ScopeRule = Union[str, list["ScopeRule"], dict[str, list["ScopeRule"]]]
# The result of an evaluation is whatever JSON the expression computes; only True passes.
Test = Callable[[dict, Request, dict], object]
# The loader's expression compiler: a program with evaluate(env) (a raw CEL one has execute).
CompileExpr = Callable[[str, Where], object]


# ---- JSON rules: validate at load ---------------------------------------------------------------

def parse_scope_rule(value: Any, where: Where) -> ScopeRule:
    """Validate a JSON scope rule and return it as plain JSON (str, list or one-key dict).

    ``where`` locates the ``scope:`` key; nested YAML items report their own line.
    """
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"scope is not valid JSON: {exc}", *where) from None
    return _rule(value, where, 0)


def _rule(value: Any, where: Where, depth: int) -> ScopeRule:
    if depth > _MAX_RULE_DEPTH:
        raise ConfigError(f"scope rule is nested more than {_MAX_RULE_DEPTH} levels deep", *where)
    if isinstance(value, str):
        if not _SCOPE_TOKEN.fullmatch(value):
            hint = " (use a list to require several scopes)" if " " in value.strip() else ""
            raise ConfigError(f"invalid scope {value!r}: a scope is one word of printable ASCII "
                              f"without spaces, quotes or backslashes{hint}", *where)
        return value
    if isinstance(value, list):
        if not value:
            raise ConfigError("an empty scope list would allow every token; name at least one scope", *where)
        return [_rule(item, _item_where(value, i, where), depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        keys = list(value)
        if len(keys) != 1 or keys[0] not in ("all", "any"):
            shown = ", ".join(repr(k) for k in keys) or "nothing"
            raise ConfigError(f"a scope object has exactly one key, 'all' or 'any'; got {shown}",
                              *_key_where(value, keys[0] if keys else None, where))
        key = keys[0]
        inner = value[key]
        inner_where = _key_where(value, key, where)
        if not isinstance(inner, list):
            raise ConfigError(f"'{key}' takes a list of scope rules", *inner_where)
        if not inner:
            raise ConfigError(f"'{key}' needs at least one scope rule", *inner_where)
        return {key: [_rule(item, _item_where(inner, i, inner_where), depth + 1)
                      for i, item in enumerate(inner)]}
    kind = "null" if value is None else type(value).__name__
    raise ConfigError(f"a scope rule is a string, a list or an object with 'all'/'any'; got {kind}", *where)


def _item_where(items: list, index: int, default: Where) -> Where:
    return items.where(index) if isinstance(items, YList) else default


def _key_where(mapping: dict, key: str | None, default: Where) -> Where:
    return mapping.where(key) if isinstance(mapping, YMap) and key is not None else default


# ---- JSON rules: compile ------------------------------------------------------------------------

def compile_rule(rule: ScopeRule) -> Callable[[Iterable[str]], bool]:
    """A validated rule -> ``match(scopes) -> bool``; ``scopes`` is any iterable of strings."""
    if isinstance(rule, str):
        return lambda scopes: rule in scopes
    if isinstance(rule, list):
        rule = {"all": rule}
    (mode, items), = rule.items()
    if all(isinstance(item, str) for item in items):
        required = frozenset(items)
        if mode == "all":
            return required.issubset
        return lambda scopes: not required.isdisjoint(scopes)
    parts = tuple(compile_rule(item) for item in items)
    if mode == "all":
        def match_all(scopes: Iterable[str]) -> bool:
            scopes = frozenset(scopes)
            return all(part(scopes) for part in parts)
        return match_all

    def match_any(scopes: Iterable[str]) -> bool:
        scopes = frozenset(scopes)
        return any(part(scopes) for part in parts)
    return match_any


# ---- CEL expressions: compile -------------------------------------------------------------------

def compile_scope_expr(source: str, where: Where, compile_expr: CompileExpr) -> Test:
    """Compile ``scope_expr`` with the loader's ``compile_expr`` and return its test.

    Refuses ``secret()`` and flow-level names that scope rules cannot see; any compile error
    becomes a ConfigError at ``where``.
    """
    import cel

    try:
        program = compile_expr(source, where)
    except ConfigError as exc:
        raise exc.located(*where)
    except Exception as exc:  # the CEL parser raises ValueError today; any kind is a load error
        raise ConfigError(f"invalid scope_expr: {_first_line(exc)}", *where) from None
    try:
        inspected = cel.compile(source)
        functions = set(inspected.functions())
        variables = set(inspected.variables())
    except Exception as exc:
        raise ConfigError(f"invalid scope_expr: {_first_line(exc)}", *where) from None
    if "secret" in functions:
        raise ConfigError("secret() is not available in scope_expr", *where)
    wrong = sorted(variables & _NOT_HERE)
    if wrong:
        raise ConfigError(f"scope_expr cannot use {', '.join(wrong)}; it sees "
                          f"{', '.join(EXPR_VARIABLES)}", *where)
    run = getattr(program, "execute", None) or getattr(program, "evaluate")
    needs = frozenset(variables) & frozenset(EXPR_VARIABLES)
    with_request = "request" in needs

    def test(auth: dict, req: Request, params: dict) -> object:
        env: dict[str, object] = {"claims": auth["claims"], "scopes": auth["scopes"], "params": params}
        if with_request:
            env["request"] = req.expr_view()
        return run(env)

    test.where = where  # type: ignore[attr-defined]
    return test


def _first_line(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).split("\n", 1)[0]


# ---- the policy -----------------------------------------------------------------------------------

class ScopePolicy:
    """The compiled scope check of one endpoint: ``check`` passes or raises 403."""

    __slots__ = ("_test", "_refusal", "_where", "description")

    def __init__(self, test: Test, realm: str, *, where: Where = (None, 0),
                 description: ScopeRule | None = None):
        self._test = test
        self._refusal = ((b"www-authenticate", www_authenticate_bearer(realm, "insufficient_scope")),)
        self._where = where
        self.description = description

    @classmethod
    def from_rule(cls, rule: ScopeRule, realm: str, *, where: Where = (None, 0)) -> "ScopePolicy":
        match = compile_rule(rule)
        return cls(lambda auth, req, params: match(auth["scopes"]), realm, where=where, description=rule)

    @classmethod
    def from_expr(cls, source: str, realm: str, *, where: Where,
                  compile_expr: CompileExpr) -> "ScopePolicy":
        return cls(compile_scope_expr(source, where, compile_expr), realm, where=where, description=source)

    def check(self, auth: dict, req: Request, params: dict) -> None:
        try:
            ok = self._test(auth, req, params)
        except Exception as exc:  # a CEL evaluation error refuses; it never becomes a 500
            file, line = self._where
            log.warning("scope_expr at %s:%s failed, request refused: %s", file, line, _first_line(exc))
            ok = False
        if ok is not True:
            if ok is not False:
                file, line = self._where
                log.warning("scope_expr at %s:%s returned %s, not a boolean; request refused",
                            file, line, type(ok).__name__)
            raise HTTPError(403, "insufficient scope", self._refusal, stage="scope", reason="insufficient")

    def __repr__(self) -> str:
        return f"ScopePolicy({self.description!r})"
