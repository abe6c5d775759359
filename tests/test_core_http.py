"""The core over real HTTP: routing, expressions, steps, limits and errors."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from conftest import JsonServer, assert_json_error, flowlet, make_workspace, run_server

FILES = {
    "flowlet.yaml": """
        name: core
        limits: {body_bytes: 1000, timeout_s: 1}
    """,
    "functions/__init__.py": "",
    "functions/f.py": """
        import asyncio, time

        def add(a, b):
            return a + b

        async def echo(value):
            await asyncio.sleep(0)
            return {"echo": value}

        def slow(seconds):
            time.sleep(seconds)
            return "late"

        def boom():
            raise RuntimeError("secret internals: /etc/passwd line 42")
    """,
    "flows/hello.yaml": """
        endpoint: {method: GET, path: /hello}
        respond: {body: {message: hi}}
    """,
    "flows/user.yaml": """
        endpoint: {method: GET, path: "/user/{id:int}"}
        respond:
          headers: {X-User: "=string(params.id)"}
          body: {id: "=params.id", next: "=params.id + 1", q: "=query", path: "=request.path"}
    """,
    "flows/user-me.yaml": """
        endpoint: {method: GET, path: /user/me}
        respond: {body: {me: true}}
    """,
    "flows/user-put.yaml": """
        endpoint: {method: PUT, path: "/user/{id:int}"}
        steps:
          - id: merged
            function: functions.f:echo
            input: {value: "=body"}
        respond: {status: 202, body: "=merged"}
    """,
    "flows/add.yaml": """
        endpoint: {method: POST, path: /add}
        steps:
          - id: total
            function: functions.f:add
            input: {a: "=body.a", b: "=body.b"}
        respond: {body: {sum: "=total"}}
    """,
    "flows/body.yaml": """
        endpoint: {method: POST, path: /body}
        respond: {body: {got: "=body"}}
    """,
    "flows/slow.yaml": """
        endpoint: {method: GET, path: /slow}
        steps:
          - {id: r, function: "functions.f:slow", input: {seconds: 5}}
        respond: {body: "=r"}
    """,
    "flows/boom.yaml": """
        endpoint: {method: GET, path: /boom}
        steps:
          - {function: "functions.f:boom"}
        respond: {body: never}
    """,
    "flows/badexpr.yaml": """
        endpoint: {method: GET, path: /badexpr}
        respond: {body: "=1 / 0"}      # a flow bug: nothing the client sent
    """,
    "flows/text.yaml": """
        endpoint: {method: GET, path: /text}
        respond:
          headers: {Content-Type: text/plain}
          body: plain words
    """,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("core"), FILES)
    with run_server(ws) as srv:
        yield srv


def test_fixed_get_answers_json(server):
    r = httpx.get(server.url + "/api/hello")
    assert r.status_code == 200
    assert r.json() == {"message": "hi"}
    assert r.headers["content-type"] == "application/json"


def test_head_for_get_flow_has_no_body(server):
    r = httpx.head(server.url + "/api/hello")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len(b'{"message":"hi"}'))


def test_unknown_path_is_404_json(server):
    assert_json_error(httpx.get(server.url + "/api/nope"), 404)
    assert_json_error(httpx.get(server.url + "/hello"), 404)


def test_undeclared_method_is_405_with_allow(server):
    r = httpx.delete(server.url + "/api/hello")
    assert_json_error(r, 405)
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


def test_options_without_preflight_lists_allow(server):
    r = httpx.options(server.url + "/api/user/3")
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, HEAD, PUT, OPTIONS"


def test_int_param_is_typed_in_expressions(server):
    r = httpx.get(server.url + "/api/user/41?x=1")
    assert r.json() == {"id": 41, "next": 42, "q": {"x": "1"}, "path": "/api/user/41"}
    assert r.headers["x-user"] == "41"


def test_wrong_param_type_is_404(server):
    assert_json_error(httpx.get(server.url + "/api/user/abc"), 404)


def test_static_segment_wins(server):
    assert httpx.get(server.url + "/api/user/me").json() == {"me": True}


def test_sync_function_step(server):
    r = httpx.post(server.url + "/api/add", json={"a": 2, "b": 3})
    assert r.status_code == 200 and r.json() == {"sum": 5}


def test_async_function_step_and_status(server):
    r = httpx.put(server.url + "/api/user/1", json={"name": "x"})
    assert r.status_code == 202 and r.json() == {"echo": {"name": "x"}}


def test_bad_json_is_400(server):
    r = httpx.post(server.url + "/api/body", content=b"{nope", headers={"content-type": "application/json"})
    assert_json_error(r, 400, "request body is not valid JSON")


def test_nan_and_deep_nesting_are_400_not_500(server):
    for raw in (b'{"a": NaN}', b"[" * 100000 + b"]" * 100000 if False else b"[" * 900 + b"]" * 900):
        r = httpx.post(server.url + "/api/body", content=raw[:1000], headers={"content-type": "application/json"})
        assert r.status_code == 400


def test_json_body_variants(server):
    r = httpx.post(server.url + "/api/body", content=b'{"a":[1,true,null]}',
                   headers={"content-type": "application/vnd.api+json"})
    assert r.json() == {"got": {"a": [1, True, None]}}
    r = httpx.post(server.url + "/api/body", data={"a": "1", "b": "two"})
    assert r.json() == {"got": {"a": "1", "b": "two"}}
    r = httpx.post(server.url + "/api/body", content=b"hello", headers={"content-type": "text/plain"})
    assert r.json() == {"got": "hello"}
    r = httpx.post(server.url + "/api/body")
    assert r.json() == {"got": None}


def test_body_over_limit_is_413(server):
    r = httpx.post(server.url + "/api/body", content=b"x" * 1001, headers={"content-type": "text/plain"})
    assert_json_error(r, 413)


def test_chunked_body_over_limit_is_413(server):
    def gen():
        for _ in range(20):
            yield b"x" * 100
    r = httpx.post(server.url + "/api/body", content=gen(), headers={"content-type": "text/plain"})
    assert_json_error(r, 413)


def test_slow_flow_is_504(server):
    started = time.monotonic()
    r = httpx.get(server.url + "/api/slow", timeout=10)
    assert_json_error(r, 504)
    assert time.monotonic() - started < 4


def test_raising_step_is_500_without_internals(server):
    r = httpx.get(server.url + "/api/boom")
    body = assert_json_error(r, 500, "internal error")
    assert "Traceback" not in r.text and "passwd" not in r.text
    rid = r.headers["x-request-id"]
    time.sleep(0.5)
    records = [json.loads(l) for l in server.stderr.splitlines() if l.startswith("{")]
    failure = [x for x in records if x.get("request_id") == rid and x["level"] == "error"]
    assert len(failure) == 1 and "RuntimeError" in failure[0]["exc"] and "Traceback" in failure[0]["exc"]
    assert body == {"error": "internal error"}


def test_expression_error_is_500(server):
    assert_json_error(httpx.get(server.url + "/api/badexpr"), 500, "internal error")


def test_text_response_with_content_type(server):
    r = httpx.get(server.url + "/api/text")
    assert r.text == "plain words" and r.headers["content-type"] == "text/plain"


def test_access_log_line_per_request(server):
    r = httpx.get(server.url + "/api/hello", headers={"x-request-id": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    time.sleep(0.5)
    lines = [json.loads(l) for l in server.stderr.splitlines() if '"flowlet.access"' in l]
    mine = [l for l in lines if l["request_id"] == "trace-123"]
    assert len(mine) == 1
    assert mine[0]["method"] == "GET" and mine[0]["path"] == "/api/hello" and mine[0]["status"] == 200
    assert mine[0]["duration_ms"] >= 0


def test_hostile_request_id_is_replaced(server):
    r = httpx.get(server.url + "/api/hello", headers={"x-request-id": "a b\"c"})
    assert r.headers["x-request-id"] != "a b\"c"


@pytest.fixture
def upstream_port():
    """A real HTTP server for http steps to call; it echoes the path and the X-Key header."""
    upstream = JsonServer(answer=lambda path, headers: {"upstream": path, "key": headers.get("x-key")})
    yield upstream.port
    upstream.close()


def test_http_step_calls_out_and_sees_the_result(tmp_path, upstream_port):
    port = upstream_port
    ws = make_workspace(tmp_path, {
        "flows/proxy.yaml": f"""
            endpoint: {{method: GET, path: "/proxy/{{name}}"}}
            steps:
              - id: up
                http:
                  url: "='http://127.0.0.1:{port}/item/' + params.name"
                  headers: {{X-Key: abc}}
                  timeout_s: 2
            respond: {{body: {{status: "=up.status", data: "=up.body"}}}}
        """})
    with run_server(ws) as srv:
        r = httpx.get(srv.url + "/api/proxy/tea")
        assert r.json() == {"status": 200, "data": {"upstream": "/item/tea", "key": "abc"}}


def test_sigterm_drains_in_flight_request_and_exits_0(tmp_path):
    ws = make_workspace(tmp_path, {
        "functions/w.py": "import time\ndef wait():\n    time.sleep(1.5)\n    return 'done'\n",
        "flows/wait.yaml": """
            endpoint: {method: GET, path: /wait}
            steps: [{id: r, function: "functions.w:wait"}]
            respond: {body: "=r"}
        """})
    with run_server(ws) as srv:
        result = {}
        t = threading.Thread(target=lambda: result.update(r=httpx.get(srv.url + "/api/wait", timeout=10)))
        t.start()
        time.sleep(0.5)
        code = srv.stop(signal.SIGTERM)
        t.join(10)
        assert result["r"].status_code == 200 and result["r"].json() == "done"
        assert code == 0


def test_two_workers_print_one_listening_line(tmp_path):
    ws = make_workspace(tmp_path, {"flows/h.yaml": "endpoint: {method: GET, path: /h}\nrespond: {body: 1}\n"})
    with run_server(ws, "--workers", "2") as srv:
        for _ in range(5):
            assert httpx.get(srv.url + "/api/h").json() == 1
        assert sum(1 for l in srv.stdout if l.startswith("listening on")) == 1


def test_secret_function_feeds_an_http_step_header(tmp_path, upstream_port):
    port = upstream_port
    ws = make_workspace(tmp_path, {
        "flows/call.yaml": f"""
            endpoint: {{method: GET, path: /call}}
            steps:
              - id: up
                http:
                  url: "http://127.0.0.1:{port}/x"
                  headers: {{X-Key: '=secret("upstream-key")'}}
            respond: {{body: {{key_seen_upstream: "=up.body.key"}}}}
        """})
    assert flowlet("secrets", "set", "upstream-key", "-w", str(ws), "--type", "value", "--value-stdin",
                   input="first-value\n").returncode == 0
    with run_server(ws) as srv:
        assert httpx.get(srv.url + "/api/call").json() == {"key_seen_upstream": "first-value"}
        flowlet("secrets", "set", "upstream-key", "-w", str(ws), "--type", "value", "--value-stdin",
                input="second-value\n")
        time.sleep(2.2)
        assert httpx.get(srv.url + "/api/call").json() == {"key_seen_upstream": "second-value"}
        assert "first-value" not in srv.stderr and "second-value" not in srv.stderr


@pytest.mark.parametrize("setup, message", [
    (None, "secret 'nope' does not exist"),
    (("secrets", "set", "nope", "--type", "jwt", "--hs-key-stdin"), "secret 'nope' is a jwt secret"),
])
def test_secret_function_needs_an_existing_value_secret(tmp_path, setup, message):
    ws = make_workspace(tmp_path, {"flows/a.yaml": """
        endpoint: {method: GET, path: /a}
        respond:
          body: '=secret("nope")'
    """})
    if setup:
        assert flowlet(*setup[:3], "-w", str(ws), *setup[3:], input="k" * 32 + "\n").returncode == 0
    r = flowlet("check", str(ws))
    assert r.returncode == 1 and "flows/a.yaml:4: error:" in r.stderr and message in r.stderr


def test_stalled_body_is_408(server):
    """A client that sends less body than it declared and then waits gets 408 after timeout_s."""
    import socket
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/body HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 20\r\n\r\n{\"a\":")
        started = time.monotonic()
        head = b""
        while b"in time" not in head:         # the head and the body may come in two reads
            chunk = s.recv(65536)
            if not chunk:
                break
            head += chunk
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"request body not received in time" in head
    assert time.monotonic() - started < 8
