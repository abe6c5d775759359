"""The request id and an incoming traceparent reach http steps; `--log-format text`."""

from __future__ import annotations

import time

import httpx

from conftest import JsonServer, make_workspace, run_server
from flowlet.flows.steps import outbound_headers

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def upstream_workspace(tmp_path, url: str):
    return make_workspace(tmp_path, {
        "flows/call.yaml": f"""
            endpoint: {{method: GET, path: /call}}
            steps:
              - id: up
                http: {{method: GET, url: "{url}"}}
            respond: {{body: "=up.body"}}
        """,
    })


def test_http_steps_carry_the_request_id_and_the_incoming_traceparent(tmp_path):
    upstream = JsonServer(answer=lambda path, headers: {"rid": headers.get("x-request-id"),
                                                        "tp": headers.get("traceparent")})
    try:
        with run_server(upstream_workspace(tmp_path, upstream.url)) as server:
            resp = httpx.get(server.url + "/api/call", headers={"x-request-id": "abc-123", "traceparent": TRACEPARENT})
            assert resp.json() == {"rid": "abc-123", "tp": TRACEPARENT}
            resp = httpx.get(server.url + "/api/call")
            assert resp.json() == {"rid": resp.headers["x-request-id"], "tp": None}
    finally:
        upstream.close()


def test_a_malformed_traceparent_is_not_passed_on():
    assert outbound_headers("r1", "00-xyz") == (("x-request-id", "r1"),)
    assert outbound_headers("r1", "ff-" + TRACEPARENT[3:]) == (("x-request-id", "r1"),)
    assert outbound_headers("r1", TRACEPARENT) == (("x-request-id", "r1"), ("traceparent", TRACEPARENT))


def test_log_format_text_gives_readable_lines(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a, auth: {type: basic, secret: s}}\n"
                                                   "respond: {body: {}}\n",
                                   "flowlet.yaml": "name: t\ndev_secrets: {s: {type: basic}}\n"})
    with run_server(ws, "--log-format", "text") as server:
        assert httpx.get(server.url + "/api/a", headers={"x-request-id": "text-1"}).status_code == 401
        deadline = time.monotonic() + 5
        while "text-1" not in server.stderr and time.monotonic() < deadline:
            time.sleep(0.2)
        line = next(l for l in server.stderr.splitlines() if "text-1" in l)
    assert not line.startswith("{")
    assert "flowlet.access: GET /api/a 401" in line and "refused by auth: missing" in line
