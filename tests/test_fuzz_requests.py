"""No value a client controls gives a 5xx: generated requests against the demo workspace.

Methods, paths, query strings, headers, cookies, Authorization values and bodies of every
content type the server parses are generated (with valid credentials and CSRF tokens mixed
in, so requests also reach the flows) and sent as raw bytes on a real socket. The number of
examples is bounded and the search is derandomized: this runs in every test run.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEMO, flowlet, run_server

EXAMPLES = 400
PASSWORD = "fuzz-password"

SERVED = ["/api/hello", "/api/add", "/api/greet/ada", "/api/greet/%C3%A9", "/api/order/1", "/api/order/-7",
          "/api/private", "/api/reports", "/api/notes", "/api/csrf"]
PATHS = SERVED * 4 + ["/api/order/99999999999999999999", "/api/", "/", "/api/order/x", "/api/greet/", "/api//hello",
                      "/api/hello/", "/api/./hello", "/api/greet/%ff", "/api/%2e%2e/hello"]
METHODS = ["GET"] * 4 + ["POST"] * 2 + ["HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "get", "X-Y"]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", "application/vnd.a+json",
                 "application/json; charset=latin-1", "multipart/form-data; boundary=x", "", "*/*", "application/"]
HEADER_NAMES = ["origin", "access-control-request-method", "access-control-request-headers", "x-csrf-token",
                "sec-fetch-site", "x-request-id", "accept", "content-encoding", "expect", "range", "if-none-match",
                "x-forwarded-for", "forwarded", "host", "content-length", "transfer-encoding"]

text_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
header_value = st.one_of(
    st.sampled_from([b"", b"null", b"https://a.example.com", b"http://localhost:8000", b"https://evil.test",
                     b"cross-site", b"GET", b"PUT", b"Content-Type", b"*", b"0", b"-1", b"chunked", b"gzip"]),
    text_bytes)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"a": json_values, "b": json_values}).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"a": 2, "b": 3}', b'{"item": "tea"}', b'"\\ud800"', b'{"a": "\\udfff"}', b"[" * 50,
                     b"1e999", b"a=1&b=%ff&&=", b"%zz", b"\xff\xfe", b"\x00", b"{}", b"null"]),
    st.binary(max_size=200))


class Credentials:
    def __init__(self, url: str, ws):
        token = flowlet("token", "-w", str(ws), "--secret", "demo-jwt", "--scope", "read", "--sub", "fuzz")
        assert token.returncode == 0, token.stderr
        self.bearer = token.stdout.strip().encode()
        r = httpx.get(url + "/api/csrf")
        self.csrf_token = r.json()["token"].encode()
        self.csrf_cookie = r.headers["set-cookie"].split(";", 1)[0].encode()

    def authorization(self) -> st.SearchStrategy[bytes]:
        basic = base64.b64encode(f"demo:{PASSWORD}".encode())
        return st.one_of(
            st.sampled_from([b"Basic " + basic, b"Bearer " + self.bearer, b"Basic", b"Bearer", b"Basic !!!",
                             b"Basic " + base64.b64encode(b"\xff\xfe:\x00"), b"Bearer a.b.c", b"Bearer ...",
                             b"Bearer " + self.bearer[:-3], b"Bearer " + self.bearer + b"x", b"Digest x"]),
            text_bytes.map(lambda b: b"Basic " + base64.b64encode(b)),
            text_bytes.map(lambda b: b"Bearer " + base64.urlsafe_b64encode(b) + b"." + base64.urlsafe_b64encode(b)),
            text_bytes)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    ws = tmp_path_factory.mktemp("fuzz") / "demo"
    shutil.copytree(DEMO, ws, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    for args, stdin in ((("demo-users", "--type", "basic", "--user", "demo", "--password-stdin"), PASSWORD),
                        (("demo-jwt", "--type", "jwt", "--hs-key-stdin"), "k" * 48)):
        assert flowlet("secrets", "set", *args, "-w", str(ws), input=stdin).returncode == 0
    with run_server(ws, "--no-access-log") as srv:
        yield srv, Credentials(srv.url, ws)


def send(url: str, data: bytes) -> int | None:
    """The status of the answer, or None when the server closed the connection without one."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(data)
        try:
            head = s.recv(65536)
        except ConnectionResetError:
            return None
    return int(head.split(b" ", 2)[1]) if head else None


@st.composite
def requests(draw, creds: Credentials) -> bytes:
    method = draw(st.sampled_from(METHODS)).encode()
    path = draw(st.sampled_from(PATHS)).encode()
    if draw(st.integers(0, 4)) == 0:
        path += b"/" + draw(st.binary(max_size=12)).hex().encode()[: draw(st.integers(0, 12))]
    if draw(st.booleans()):
        pairs = draw(st.lists(st.tuples(text_bytes, st.one_of(text_bytes, st.sampled_from([b"%ff", b"%zz", b"%"]))),
                              max_size=4))
        path += b"?" + b"&".join(quote_from_bytes(k).encode() + b"=" + (v if v.startswith(b"%") else
                                 quote_from_bytes(v).encode()) for k, v in pairs)
    path = bytes(c for c in path if c > 0x20 and c != 0x7f)
    headers = [(b"Host", b"127.0.0.1")]
    if draw(st.booleans()):
        headers.append((b"Authorization", draw(creds.authorization())))
    if draw(st.booleans()):
        headers.append((b"Cookie", draw(st.sampled_from([creds.csrf_cookie, b"csrf=x; csrf=y", b"=;;a", b""])) + b"; "
                        + draw(text_bytes).replace(b";", b"")))
    if draw(st.booleans()):
        headers.append((b"X-CSRF-TOKEN", creds.csrf_token))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        headers.append((draw(st.sampled_from(HEADER_NAMES)).encode(), draw(header_value)))
    body = b""
    if draw(st.booleans()):
        body = draw(bodies)
        headers.append((b"Content-Type", draw(st.sampled_from(CONTENT_TYPES)).encode()))
    if not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers):
        headers.append((b"Content-Length", str(len(body)).encode()))
    head = b"".join(b"%s: %s\r\n" % (name, value.strip()) for name, value in headers)
    return method + b" " + (path or b"/") + b" HTTP/1.1\r\n" + head + b"Connection: close\r\n\r\n" + body


def test_no_generated_request_gets_a_server_error(demo):
    srv, creds = demo
    seen: dict[int | None, int] = {}

    @given(data=requests(creds))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    def run(data: bytes) -> None:
        status = send(srv.url, data)
        seen[status] = seen.get(status, 0) + 1
        assert status is None or status < 500, data

    run()
    # The generator reached the flows, not only the refusals.
    assert seen.get(200, 0) > EXAMPLES // 20, seen
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]
