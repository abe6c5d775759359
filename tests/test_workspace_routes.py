"""The compiled workspace: typed, frozen routes built once, and the pipeline's one answer type."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import pytest

from conftest import DEMO
from fakes import request, run
from flowlet.errors import ConfigError
from flowlet.flows.flow import Response
from flowlet.routing import RouteTable, parse_path
from flowlet.server.app import FlowletApp
from flowlet.workspace.builtin import CsrfTokenHandler
from flowlet.workspace.loader import Workspace, load_workspace
from flowlet.workspace.routes import PathEntry, Route


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    dest = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    loaded = load_workspace(dest)
    yield loaded
    loaded.close()


def _route(ws: Workspace, method: str, path: str) -> Route:
    entry, _ = next(ws.table.match(path))
    return entry.routes[method]


async def _no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_route_is_frozen(ws):
    route = _route(ws, "GET", "/api/reports")
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.csrf = None  # type: ignore[misc]


def test_scope_policy_is_named_apart_from_the_asgi_scope(ws):
    route = _route(ws, "GET", "/api/reports")
    assert route.auth is not None and route.scope_policy is not None
    assert route.config.auth is not None and route.config.auth.scope == "read"
    assert not hasattr(route, "scope")


def test_open_route_has_no_policies(ws):
    route = _route(ws, "GET", "/api/hello")
    assert (route.auth, route.scope_policy, route.csrf, route.cors) == (None, None, None, None)
    assert route.config.file == "flows/hello.yaml" and route.config.line > 0


def test_csrf_token_endpoint_is_a_route_with_a_builtin_handler(ws):
    route = _route(ws, "GET", "/api/csrf")
    assert isinstance(route.handler, CsrfTokenHandler)
    assert not route.reads_body
    assert ws.csrf_entry is not None and ws.csrf_entry.allow == b"GET, HEAD, OPTIONS"
    assert ws.table.exact("/api/csrf") is ws.csrf_entry


def test_development_secret_warning_has_warning_severity(ws):
    assert [w.severity for w in ws.warnings] == ["warning"] * len(ws.warnings)
    assert any(str(w).startswith("flowlet.yaml:1: warning: development secret") for w in ws.warnings)


def test_config_error_prints_its_severity():
    assert str(ConfigError("bad", "f.yaml", 3)) == "f.yaml:3: error: bad"
    assert str(ConfigError("odd", "f.yaml", 3).as_warning()) == "f.yaml:3: warning: odd"
    assert str(ConfigError("odd", severity="warning")) == "warning: odd"


def test_route_table_add_is_the_way_in():
    table: RouteTable[str] = RouteTable("/api")
    table.add(parse_path("/a", (None, 1)), "a")
    table.add(parse_path("/a/{id:int}", (None, 1)), "a-id")
    assert table.exact("/api/a") == "a"
    assert table.exact("/api/a/1") is None
    assert list(table.match("/api/a/7")) == [("a-id", {"id": 7})]


def test_pipeline_answers_with_a_response_for_every_outcome(ws):
    app = FlowletApp(ws, access_log=False)
    for method, path, status in [("GET", "/api/hello", 200), ("GET", "/api/nowhere", 404),
                                 ("DELETE", "/api/hello", 405), ("GET", "/api/reports", 401),
                                 ("OPTIONS", "/api/hello", 204), ("GET", "/api/csrf", 200)]:
        resp = run(app.pipeline(request(method=method, path=path, scheme="http", host="localhost"), _no_body))
        assert isinstance(resp, Response) and resp.status == status, (method, path, resp.status)


def test_csrf_token_answer_sets_the_cookie_and_no_store(ws):
    resp = run(FlowletApp(ws, access_log=False).pipeline(request(method="GET", path="/api/csrf", scheme="http", host="localhost"), _no_body))
    headers = dict(resp.headers)
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"set-cookie"].startswith(ws.settings.csrf.cookie.encode() + b"=")
    assert resp.body.startswith(b'{"token":"')


class _Broken:
    """A handler with a bug: the pipeline's one catch-all must answer 500, CORS headers kept."""

    fixed = None
    variables: frozenset[str] = frozenset()
    steps = ()

    async def run(self, env, ctx):
        raise KeyError("internals")


def test_a_bug_is_one_500_with_the_cors_headers_kept(ws, caplog):
    with_cors = next(e for e in ws.paths if e.cors is not None)
    method = next(m for m, r in with_cors.routes.items() if r.cors is not None)
    origin_route = with_cors.routes[method]
    broken = dataclasses.replace(origin_route, handler=_Broken(), auth=None, scope_policy=None, csrf=None)
    table: RouteTable[PathEntry] = RouteTable(ws.settings.api_prefix)
    table.add(with_cors.pattern, dataclasses.replace(with_cors, routes={method: broken}))
    app = FlowletApp(dataclasses.replace(ws, table=table), access_log=False)
    origin = with_cors.cors.describe()["domains"][0].replace("*.", "a.")
    req = request({"origin": origin}, method=method, path=with_cors.full_path, scheme="http", host="localhost")
    with caplog.at_level(logging.ERROR, logger="flowlet.server"):
        resp = run(app.pipeline(req, _no_body))
    assert resp.status == 500 and resp.body == b'{"error":"internal error"}'
    assert dict(resp.headers)[b"access-control-allow-origin"] == origin.encode()
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert "internals" not in resp.body.decode()


def test_a_body_is_read_unless_the_method_gives_it_no_meaning_and_nothing_reads_it(tmp_path):
    flows = {
        "get_plain": "endpoint: {method: GET, path: /a}\nrespond:\n  body: {ok: true}\n",
        "get_reads": "endpoint: {method: GET, path: /b}\nrespond:\n  body: {got: \"=body\"}\n",
        "get_schema": "endpoint:\n  method: GET\n  path: /c\n  input: {body: {type: object}}\nrespond:\n  body: {ok: true}\n",
        "delete_plain": "endpoint: {method: DELETE, path: /a}\nrespond:\n  status: 204\n",
        "post_plain": "endpoint: {method: POST, path: /a}\nrespond:\n  body: {ok: true}\n",
    }
    (tmp_path / "flows").mkdir()
    (tmp_path / "flowlet.yaml").write_text("name: t\n")
    for name, text in flows.items():
        (tmp_path / "flows" / f"{name}.yaml").write_text(text)
    loaded = load_workspace(tmp_path, open_secrets=False)
    try:
        reads = {(m, p): _route(loaded, m, f"/api{p}").reads_body
                 for m, p in [("GET", "/a"), ("GET", "/b"), ("GET", "/c"), ("DELETE", "/a"), ("POST", "/a")]}
    finally:
        loaded.close()
    assert reads == {("GET", "/a"): False, ("GET", "/b"): True, ("GET", "/c"): True,
                     ("DELETE", "/a"): False, ("POST", "/a"): True}
