"""Scope rules: JSON rules and CEL scope_expr, validated at load and checked per request."""

from __future__ import annotations

import logging

import cel
import pytest

from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.secrets.model import JwtSecret, ValueSecret
from flowlet.security.auth import compile_auth, parse_auth
from flowlet.security.runtime import AuthRuntime
from flowlet.security.scopes import ScopePolicy, compile_rule, parse_scope_rule
from flowlet.source import load_yaml
from fakes import View, request

WHERE = ("flows/a.yaml", 7)


def raw_cel(src, where):
    return cel.compile(src)


def lead_cel(src, where):
    """The loader's own compiler (flowlet.expr), as it is passed in by the workspace loader."""
    from flowlet.expr import compile_expr
    return compile_expr(src, where, allow_secret=False)


COMPILERS = [pytest.param(raw_cel, id="cel"), pytest.param(lead_cel, id="flowlet.expr")]


def auth(scopes=(), **claims) -> dict:
    return {"type": "jwt", "user": claims.get("sub"), "claims": claims, "scopes": list(scopes)}


def rule_policy(rule) -> ScopePolicy:
    return ScopePolicy.from_rule(parse_scope_rule(rule, WHERE), "shop", where=WHERE)


def passes(policy: ScopePolicy, a: dict, req: Request | None = None, params: dict | None = None) -> bool:
    try:
        policy.check(a, req or request(), params or {})
    except HTTPError as err:
        assert err.status == 403
        assert dict(err.headers)[b"www-authenticate"] == b'Bearer realm="shop", error="insufficient_scope"'
        assert err.message == "insufficient scope"
        return False
    return True


# ---- JSON rules: meaning ------------------------------------------------------------------------

@pytest.mark.parametrize("rule,scopes,expected", [
    ("a", ["a"], True),
    ("a", ["b"], False),
    ("a", [], False),
    (["a", "b"], ["a", "b", "c"], True),
    (["a", "b"], ["a"], False),
    ({"all": ["a", "b"]}, ["b", "a"], True),
    ({"all": ["a", "b"]}, ["b"], False),
    ({"any": ["a", "b"]}, ["b"], True),
    ({"any": ["a", "b"]}, ["c"], False),
    ({"any": ["admin", {"all": ["orders:read", "orders:write"]}]}, ["orders:read", "orders:write"], True),
    ({"any": ["admin", {"all": ["orders:read", "orders:write"]}]}, ["orders:read"], False),
    ({"any": ["admin", {"all": ["orders:read", "orders:write"]}]}, ["admin"], True),
    ({"all": [{"any": ["a", "b"]}, {"any": ["c", "d"]}]}, ["b", "c"], True),
    ({"all": [{"any": ["a", "b"]}, {"any": ["c", "d"]}]}, ["b"], False),
    (["a", ["b", {"any": ["c"]}]], ["a", "b", "c"], True),
    (["a", ["b", {"any": ["c"]}]], ["a", "b"], False),
])
def test_json_rule_meaning(rule, scopes, expected):
    assert passes(rule_policy(rule), auth(scopes)) is expected
    assert compile_rule(parse_scope_rule(rule, WHERE))(frozenset(scopes)) is expected


def test_scope_matching_is_exact_and_case_sensitive():
    assert not passes(rule_policy("users:write"), auth(["users:writer", "Users:write", "users"]))


def test_rule_may_be_a_string_holding_json():
    assert parse_scope_rule('{"any": ["a", "b"]}', WHERE) == {"any": ["a", "b"]}
    assert parse_scope_rule('["a", "b"]', WHERE) == ["a", "b"]


def test_rule_as_yaml_is_plain_json_for_describe():
    cfg = parse_auth(load_yaml("type: jwt\nsecret: s\nscope:\n  any: [a, {all: [b, c]}]\n", "flows/a.yaml"))
    assert cfg.scope == {"any": ["a", {"all": ["b", "c"]}]}
    assert type(cfg.scope) is dict and type(cfg.scope["any"]) is list


# ---- JSON rules: load errors --------------------------------------------------------------------

@pytest.mark.parametrize("rule,fragment", [
    ([], "empty scope list"),
    ({"any": []}, "at least one"),
    ({"all": "a"}, "takes a list"),
    ({"one": ["a"]}, "exactly one key"),
    ({"all": ["a"], "any": ["b"]}, "exactly one key"),
    ({}, "exactly one key"),
    ("", "invalid scope"),
    ("a b", "use a list"),
    ('a"b', "invalid scope"),
    (5, "got int"),
    (None, "got null"),
    (True, "got bool"),
    ([["a"], []], "empty scope list"),
    ("{not json", "not valid JSON"),
])
def test_bad_rules_are_load_errors(rule, fragment):
    with pytest.raises(ConfigError) as err:
        parse_scope_rule(rule, WHERE)
    assert fragment in err.value.message and (err.value.file, err.value.line) == WHERE


def test_rule_nesting_is_bounded():
    rule = "a"
    for _ in range(40):
        rule = {"all": [rule]}
    with pytest.raises(ConfigError):
        parse_scope_rule(rule, WHERE)


def test_nested_error_names_the_line_of_the_item():
    text = "type: jwt\nsecret: s\nscope:\n  any:\n    - a\n    - all: []\n"
    with pytest.raises(ConfigError) as err:
        parse_auth(load_yaml(text, "flows/a.yaml"))
    assert err.value.line == 6


def test_unknown_key_in_a_nested_rule_names_its_line():
    text = "type: jwt\nsecret: s\nscope:\n  any:\n    - a\n    - alll: [b]\n"
    with pytest.raises(ConfigError) as err:
        parse_auth(load_yaml(text, "flows/a.yaml"))
    assert err.value.line == 6 and "'alll'" in err.value.message


# ---- CEL scope_expr -----------------------------------------------------------------------------

def expr_policy(source: str, compiler=raw_cel) -> ScopePolicy:
    return ScopePolicy.from_expr(source, "shop", where=WHERE, compile_expr=compiler)


@pytest.mark.parametrize("compiler", COMPILERS)
def test_expr_over_scopes_and_claims(compiler):
    policy = expr_policy("'admin' in scopes || claims.sub == string(params.id)", compiler)
    assert passes(policy, auth(["admin"], sub="x"), params={"id": 1})
    assert passes(policy, auth([], sub="7"), params={"id": 7})
    assert not passes(policy, auth([], sub="8"), params={"id": 7})


@pytest.mark.parametrize("compiler", COMPILERS)
def test_expr_sees_the_request(compiler):
    policy = expr_policy("request.method == 'PUT' && request.path == '/api/orders/7' && "
                         "request.headers['x-tenant'] == claims.tenant && request.query.dry == '1' && "
                         "request.cookies.theme == 'dark'", compiler)
    req = request([("X-Tenant", "acme"), ("cookie", "theme=dark")], query=b"dry=1", method="PUT",
                  path="/api/orders/7")
    assert passes(policy, auth(tenant="acme"), req)
    assert not passes(policy, auth(tenant="other"), req)


@pytest.mark.parametrize("compiler", COMPILERS)
def test_expr_with_a_non_boolean_result_refuses(compiler, caplog):
    policy = expr_policy("claims.sub", compiler)
    with caplog.at_level(logging.WARNING, logger="flowlet.auth"):
        assert not passes(policy, auth(sub="alice"))
    assert "not a boolean" in caplog.text or "failed" in caplog.text
    assert "flows/a.yaml:7" in caplog.text


@pytest.mark.parametrize("compiler", COMPILERS)
def test_expr_evaluation_error_refuses_and_is_logged(compiler, caplog):
    policy = expr_policy("claims.org.id == 'x'", compiler)
    with caplog.at_level(logging.WARNING, logger="flowlet.auth"):
        assert not passes(policy, auth(sub="alice"))
    assert "flows/a.yaml:7" in caplog.text


def test_expr_division_by_zero_refuses():
    assert not passes(expr_policy("1 / (size(scopes) - size(scopes)) == 1"), auth(["a"]))


@pytest.mark.parametrize("compiler", COMPILERS)
def test_expr_syntax_error_is_a_load_error_at_its_line(compiler):
    with pytest.raises(ConfigError) as err:
        expr_policy("'admin' in scopes ||", compiler)
    assert (err.value.file, err.value.line) == WHERE


@pytest.mark.parametrize("compiler", COMPILERS)
def test_secret_is_never_available_to_scope_rules(compiler):
    with pytest.raises(ConfigError) as err:
        expr_policy("secret('api') == claims.key", compiler)
    assert "secret()" in err.value.message and (err.value.file, err.value.line) == WHERE


@pytest.mark.parametrize("name", ["auth", "body", "query"])
def test_flow_level_names_are_load_errors_in_scope_expr(name):
    with pytest.raises(ConfigError) as err:
        expr_policy(f"{name} != null")
    assert "sees claims, scopes, params, request" in err.value.message


def test_comprehension_variables_are_fine():
    policy = expr_policy("scopes.exists(s, s.startsWith('orders:'))")
    assert passes(policy, auth(["orders:read"]))
    assert not passes(policy, auth(["users:read"]))


# ---- through the auth: block ----------------------------------------------------------------------

def test_scope_expr_line_is_reported_through_compile_auth():
    text = "type: jwt\nsecret: j\nscope_expr: \"'a' in\"\n"
    cfg = parse_auth(load_yaml(text, "flows/a.yaml"))
    with pytest.raises(ConfigError) as err:
        compile_auth(cfg, realm="r", secrets=View(JwtSecret("j", hs_key=b"k" * 32)), runtime=AuthRuntime(),
                     compile_expr=raw_cel)
    assert (err.value.file, err.value.line) == ("flows/a.yaml", 3)


def test_secret_in_scope_expr_is_refused_even_when_the_value_secret_exists():
    text = "type: jwt\nsecret: j\nscope_expr: \"secret('v') == 'x'\"\n"
    cfg = parse_auth(load_yaml(text, "flows/a.yaml"))
    view = View(JwtSecret("j", hs_key=b"k" * 32), ValueSecret("v", "x"))
    for compiler in (raw_cel, lead_cel):
        with pytest.raises(ConfigError) as err:
            compile_auth(cfg, realm="r", secrets=view, runtime=AuthRuntime(), compile_expr=compiler)
        assert err.value.line == 3


def test_compiled_scope_policy_uses_the_workspace_realm():
    cfg = parse_auth(load_yaml("type: jwt\nsecret: j\nscope: a\n", "flows/a.yaml"))
    _, scope = compile_auth(cfg, realm='my "shop"', secrets=View(JwtSecret("j", hs_key=b"k" * 32)),
                            runtime=AuthRuntime(), compile_expr=raw_cel)
    with pytest.raises(HTTPError) as err:
        scope.check(auth(["b"]), request(), {})
    assert dict(err.value.headers)[b"www-authenticate"] == b'Bearer realm="my \\"shop\\"", error="insufficient_scope"'
