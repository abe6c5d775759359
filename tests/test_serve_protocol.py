"""Protocol limits of the served port: silent connections, header block sizes, response headers."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from conftest import make_workspace, run_server

HELLO = {"flows/h.yaml": "endpoint: {method: GET, path: /h}\nrespond: {body: 1}\n"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    with run_server(make_workspace(tmp_path_factory.mktemp("plain"), HELLO)) as srv:
        yield srv


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    with run_server(make_workspace(tmp_path_factory.mktemp("tls"), HELLO), "--tls-self-signed") as srv:
        yield srv


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_a_plain_connection_that_sends_nothing_is_closed_after_the_header_timeout(plain):
    with socket.create_connection(_host_port(plain.url), timeout=30) as sock:
        started = time.monotonic()
        try:
            data = sock.recv(100)
        except socket.timeout:
            pytest.fail("a silent connection stayed open for 30 s")
        except ConnectionResetError:
            data = b""
        assert data == b""
        assert time.monotonic() - started >= 5      # not closed on sight either


def test_a_connection_that_sent_a_request_is_not_closed_by_the_silence_watch(plain):
    with httpx.Client(timeout=10) as client:
        assert client.get(plain.url + "/api/h").json() == 1
        time.sleep(6)
        assert client.get(plain.url + "/api/h").json() == 1


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_a_header_block_of_300_kb_is_refused(tls, http2):
    with httpx.Client(http2=http2, verify=False, timeout=20) as client:
        try:
            r = client.get(tls.url + "/api/h", headers={"x-big": "a" * 300_000})
        except httpx.TransportError:
            return                                   # refused at the connection level
        assert r.status_code == 431


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_a_header_block_of_32_kib_is_served(tls, http2):
    with httpx.Client(http2=http2, verify=False, timeout=20) as client:
        r = client.get(tls.url + "/api/h", headers={"x-big": "a" * (32 * 1024)})
    assert r.status_code == 200
    assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_responses_carry_nosniff_and_do_not_name_granian(tls, http2):
    with httpx.Client(http2=http2, verify=False, timeout=20) as client:
        for path in ("/api/h", "/api/missing"):
            r = client.get(tls.url + path)
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "granian" not in r.headers.get("server", "").lower()


def test_plain_responses_carry_nosniff_and_do_not_name_granian(plain):
    r = httpx.get(plain.url + "/api/h")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "granian" not in r.headers.get("server", "").lower()
