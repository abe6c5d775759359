"""The ASGI entry point (`flowlet.asgi:app`) on a real uvicorn answers as `flowlet serve` (RSGI on
granian) does: the core and CORS wire tests run against it, and the same requests sent to both
servers get the same status, headers and body."""

from __future__ import annotations

import ssl

import httpx
import pytest

import test_core_http as core
import test_cors_http as cors
from conftest import make_workspace, run_server, run_uvicorn

CORE_CHECKS = [
    core.test_fixed_get_answers_json, core.test_head_for_get_flow_has_no_body,
    core.test_unknown_path_is_404_json, core.test_undeclared_method_is_405_with_allow,
    core.test_options_without_preflight_lists_allow, core.test_int_param_is_typed_in_expressions,
    core.test_sync_function_step, core.test_async_function_step_and_status, core.test_bad_json_is_400,
    core.test_json_body_variants, core.test_body_over_limit_is_413, core.test_chunked_body_over_limit_is_413,
    core.test_slow_flow_is_504, core.test_raising_step_is_500_without_internals,
    core.test_text_response_with_content_type, core.test_access_log_line_per_request,
    core.test_hostile_request_id_is_replaced, core.test_stalled_body_is_408,
]
CORS_CHECKS = [
    cors.test_error_answers_carry_cors_headers, cors.test_head_carries_what_get_carries,
    cors.test_method_without_cors_on_a_shared_path_gets_no_cors_headers, cors.test_null_origin_is_never_allowed,
    cors.test_preflight_to_an_unknown_path_is_404, cors.test_options_without_request_method_is_not_a_preflight,
    cors.test_preflight_needs_no_credentials_on_a_csrf_protected_path,
    cors.test_csrf_endpoint_refuses_origins_no_protected_path_allows,
]


@pytest.fixture(scope="module")
def core_ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("core"), core.FILES)


@pytest.fixture(scope="module")
def core_uvicorn(core_ws):
    with run_uvicorn(core_ws) as srv:
        yield srv


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("doc") / "shop"
    for rel, text in cors.doc_workspace().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture(scope="module")
def cors_uvicorn(shop):
    with run_uvicorn(shop) as srv:
        yield srv


@pytest.mark.parametrize("check", CORE_CHECKS, ids=lambda f: f.__name__[5:])
def test_core_on_uvicorn(core_uvicorn, check):
    check(core_uvicorn)


@pytest.mark.parametrize("check", CORS_CHECKS, ids=lambda f: f.__name__[5:])
def test_cors_on_uvicorn(cors_uvicorn, check):
    check(cors_uvicorn)


@pytest.mark.parametrize("command, shown", cors.CURL_EXAMPLES[:4],
                         ids=[c.split("\n")[0][:60] for c, _ in cors.CURL_EXAMPLES[:4]])
def test_cors_doc_examples_on_uvicorn(cors_uvicorn, command, shown):
    cors.test_doc_curl_example_answers_as_shown(cors_uvicorn, command, shown)


# ---- the same request to both entry points --------------------------------------------------------

ORIGIN = {"Origin": "https://app.example.com"}
SAME = [
    ("GET", "/api/hello", {}, b""),
    ("HEAD", "/api/hello", {}, b""),
    ("OPTIONS", "/api/user/3", {}, b""),                                   # 204, no length
    ("GET", "/api/nope", {}, b""),
    ("DELETE", "/api/hello", {}, b""),
    ("POST", "/api/body", {"content-type": "application/json"}, b'{"a": [1, 2.5, "x"]}'),
    ("POST", "/api/body", {"content-type": "application/json"}, b"{not json"),
    ("POST", "/api/body", {"content-type": "application/json"}, b"[" + b"1," * 600 + b"1]"),   # 413
    ("GET", "/api/boom", {}, b""),
    ("GET", "/api/user/3?a=1&b=%C3%A9", {}, b""),
    ("GET", "/api/text", {"x-request-id": "given-id"}, b""),
]
# Headers that differ by design: the server's own, the clock, a generated id, and connection
# management (granian closes a connection whose request body went unread, as after a 413).
VARYING = {"date", "server", "x-request-id", "connection"}


def _wire(client: httpx.Client, url: str, method: str, path: str, headers: dict, body: bytes):
    r = client.request(method, url + path, headers=headers, content=body or None)
    kept = sorted((k, v) for k, v in r.headers.multi_items() if k not in VARYING)
    rid = r.headers.get("x-request-id")
    return r.status_code, kept, r.content, rid if rid == headers.get("x-request-id") else "generated"


def test_both_entry_points_answer_alike(core_ws, core_uvicorn):
    with run_server(core_ws) as rsgi, httpx.Client() as client:
        for method, path, headers, body in SAME:
            on_rsgi = _wire(client, rsgi.url, method, path, headers, body)
            on_asgi = _wire(client, core_uvicorn.url, method, path, headers, body)
            assert on_rsgi == on_asgi, (method, path)
    assert "transfer-encoding" not in dict(on_rsgi[1])


def test_cors_answers_alike(shop, cors_uvicorn):
    requests = [
        ("GET", "/api/user/7", {"Origin": "https://test.example.com"}, b""),
        ("OPTIONS", "/api/user/7", {"Origin": "https://test.example.com", "Access-Control-Request-Method": "PUT",
                                    "Access-Control-Request-Headers": "content-type"}, b""),
        ("OPTIONS", "/api/user/7", {"Origin": "null", "Access-Control-Request-Method": "GET"}, b""),
        ("GET", "/api/csrf", {"Origin": "https://test.example.com"}, b""),
    ]
    with run_server(shop) as rsgi, httpx.Client() as client:
        for method, path, headers, body in requests:
            a = _wire(client, rsgi.url, method, path, headers, body)
            b = _wire(client, cors_uvicorn.url, method, path, headers, body)
            if path == "/api/csrf":        # a fresh token and cookie each time: compare the names only
                a, b = [(x[0], [h[0] for h in x[1]]) for x in (a, b)]
            assert a == b, (method, path)


def test_hsts_on_uvicorn_with_tls(tmp_path):
    root = make_workspace(tmp_path, {"flowlet.yaml": "name: t\nhsts:\n  max_age: 600\n  include_subdomains: false\n"})
    with run_server(root, "--tls-self-signed"):       # creates the development certificate
        pass
    tls = root / ".flowlet" / "tls"
    with run_uvicorn(root, "--ssl-certfile", str(tls / "dev-cert.pem"), "--ssl-keyfile", str(tls / "dev-key.pem")) as srv:
        ctx = ssl.create_default_context(cafile=str(tls / "dev-cert.pem"))
        r = httpx.get(srv.url.replace("127.0.0.1", "localhost") + "/api/no-such-flow", verify=ctx)
        assert r.status_code == 404 and r.headers["strict-transport-security"] == "max-age=600"
        assert r.json() == {"error": "not found"}
