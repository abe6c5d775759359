"""HTTP framing on a real socket: Host (RFC 9112 3.2), transfer codings, paths that are not UTF-8."""

from __future__ import annotations

import json
import socket

import pytest

from conftest import make_workspace, run_server
from flowlet.errors import HTTPError
from flowlet.http import Request
from flowlet.server.wire import check_wire

FILES = {
    "flowlet.yaml": "name: wire\n",
    "flows/echo.yaml": """
        endpoint: {method: POST, path: "/echo/{name}"}
        respond: {body: {name: "=params.name", body: "=body"}}
    """,
    "flows/header.yaml": """
        endpoint: {method: GET, path: /header}
        respond: {headers: {X-Next: "=query.next"}, body: ok}
    """,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("wire"), FILES)
    with run_server(ws, "--no-access-log") as srv:
        yield srv


def exchange(server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; the status, headers and body of the answer."""
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {got!r}"
            got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict((k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split(" ")[1]), headers, body


def post(path: bytes, headers: bytes = b"Host: x\r\n", body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    framing = b"" if b"transfer-encoding" in headers.lower() else b"Content-Length: %d\r\n" % len(body)
    return b"POST " + path + b" " + version + b"\r\n" + headers + framing + b"\r\n" + body


def assert_error(answer, status: int) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error"}


def test_well_formed_request_is_served(server):
    status, _, body = exchange(server, post(b"/api/echo/a"))
    assert status == 200 and json.loads(body)["name"] == "a"


def test_http11_without_host_is_400(server):
    assert_error(exchange(server, post(b"/api/echo/a", headers=b"")), 400)


def test_http11_with_empty_host_is_400(server):
    assert_error(exchange(server, post(b"/api/echo/a", headers=b"Host: \r\n")), 400)


def test_two_host_headers_are_400(server):
    assert_error(exchange(server, post(b"/api/echo/a", headers=b"Host: x\r\nHost: y\r\n")), 400)


def test_http10_without_host_is_served(server):
    status, _, _ = exchange(server, post(b"/api/echo/a", headers=b"", version=b"HTTP/1.0"))
    assert status == 200


def test_gzip_then_chunked_is_refused_not_served_as_plain(server):
    data = post(b"/api/echo/a", headers=b"Host: x\r\nTransfer-Encoding: gzip, chunked\r\n"
                b"Content-Type: text/plain\r\n", body=b"3\r\nabc\r\n0\r\n\r\n")
    assert_error(exchange(server, data), 501)


def test_chunked_twice_is_refused(server):
    data = post(b"/api/echo/a", headers=b"Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                body=b"3\r\nabc\r\n0\r\n\r\n")
    status, _, _ = exchange(server, data)
    assert status in (400, 501)


def test_plain_chunked_body_is_served(server):
    data = post(b"/api/echo/a", headers=b"Host: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n",
                body=b"3\r\nabc\r\n0\r\n\r\n")
    status, _, body = exchange(server, data)
    assert status == 200 and json.loads(body)["body"] == "abc"


@pytest.mark.parametrize("path", [b"/api/echo/%ff%fe", b"/api/echo/a%C3", b"/api/%ff/echo/a"])
def test_path_that_is_not_utf8_is_400(server, path):
    assert_error(exchange(server, post(path)), 400)


@pytest.mark.parametrize("path, name", [(b"/api/echo/%C3%A9", "\u00e9")])
def test_path_that_is_utf8_is_served(server, path, name):
    status, _, body = exchange(server, post(path))
    assert status == 200 and json.loads(body)["name"] == name


def test_a_sent_replacement_character_is_refused_under_rsgi(server):
    """granian's RSGI scope has no raw path: a U+FFFD sent as such cannot be told from one that
    replaced bytes that were not UTF-8, so `flowlet serve` refuses both (the ASGI entry point,
    which has the raw path, serves it: see test_wire_checks_use_the_raw_path_when_there_is_one)."""
    assert_error(exchange(server, post(b"/api/echo/%EF%BF%BD")), 400)


def scope(headers: list[tuple[bytes, bytes]], path: str = "/x", raw_path: bytes | None = None,
          version: str = "1.1") -> Request:
    s = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": headers,
         "http_version": version}
    if raw_path is not None:
        s["raw_path"] = raw_path
    return Request(s)


def test_http2_has_no_host_header_and_passes():
    check_wire(scope([], version="2"))


def test_replacement_character_without_raw_path_is_400():
    # An interface that only hands over the decoded path: the bytes were not UTF-8.
    with pytest.raises(HTTPError) as err:
        check_wire(scope([(b"host", b"x")], path="/\ufffd"))
    assert err.value.status == 400


def test_wire_checks_use_the_raw_path_when_there_is_one():
    check_wire(scope([(b"host", b"x")], path="/\ufffd", raw_path=b"/%EF%BF%BD"))     # ASGI: served


def test_transfer_encoding_chunked_in_any_case_passes():
    check_wire(scope([(b"host", b"x"), (b"transfer-encoding", b" Chunked ")]))


@pytest.mark.parametrize("host", [b"a b", b"x/y", b"a@b", b"x:80x"])
def test_invalid_host_is_400(server, host):
    assert_error(exchange(server, post(b"/api/echo/a", headers=b"Host: " + host + b"\r\n")), 400)


@pytest.mark.parametrize("host", [b"example.com", b"127.0.0.1:8080", b"[::1]:80", b"xn--bcher-kva.example"])
def test_valid_host_is_served(server, host):
    status, _, _ = exchange(server, post(b"/api/echo/a", headers=b"Host: " + host + b"\r\n"))
    assert status == 200


def test_content_encoded_body_is_415_not_read_as_plain(server):
    data = post(b"/api/echo/a", headers=b"Host: x\r\nContent-Encoding: gzip\r\nContent-Type: text/plain\r\n",
                body=b"abc")
    assert_error(exchange(server, data), 415)


@pytest.mark.parametrize("coding", [b"gzip", b"identity", b"chunked, gzip", b"deflate, chunked", b"x-custom, chunked"])
def test_any_other_transfer_coding_is_refused(server, coding):
    # Some never reach the application (the HTTP library answers 400 itself); the rest get 501.
    data = post(b"/api/echo/a", headers=b"Host: x\r\nTransfer-Encoding: " + coding + b"\r\n",
                body=b"3\r\nabc\r\n0\r\n\r\n")
    status, _, _ = exchange(server, data)
    assert status in (400, 501)


def test_an_rsgi_style_scope_is_read_too():
    class Scope:                       # what an RSGI server hands over: attributes, no raw path
        http_version = "1.1"
        path = "/x"

    req = scope([(b"host", b"x")])
    req.scope = Scope()
    check_wire(req)
    req.headers = {}
    with pytest.raises(HTTPError):
        check_wire(req)


@pytest.mark.parametrize("value", [b"a%0D%0ASet-Cookie:%20x=1", b"a%0Ab", b"a%00b"])
def test_a_request_value_with_a_line_break_in_an_answer_header_is_400(server, value):
    assert_error(exchange(server, b"GET /api/header?next=" + value + b" HTTP/1.1\r\nHost: x\r\n\r\n"), 400)


def test_a_request_value_in_an_answer_header_is_passed_on(server):
    status, headers, _ = exchange(server, b"GET /api/header?next=%2Fhome HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and headers["x-next"] == "/home"


@pytest.mark.parametrize("path", [b"/api/echo/a%00b", b"/api/echo/%00", b"/api%00/echo/a"])
def test_a_path_that_decodes_to_nul_is_400(server, path):
    status, _, body = exchange(server, post(path))
    assert status == 400 and b"NUL" in body


def test_nul_in_an_asgi_path_is_400():
    with pytest.raises(HTTPError) as err:
        check_wire(scope([(b"host", b"x")], path="/a\x00b", raw_path=b"/a%00b"))
    assert err.value.status == 400
