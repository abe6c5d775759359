"""Fixtures of the browser suite: Debian's Chromium driven by Playwright, and the static origins.

- ``static_site``: one small HTTPS server in a thread that answers for several host names, so
  ``https://app.example.test:PORT`` (the trusted front end) and ``https://evil.test:PORT`` (a
  hostile site) are distinct origins on one socket. It serves a blank page per host and the
  demo page ``examples/demo/static/index.html``.
- ``browser``: one headless Chromium for the module, host names mapped to loopback.
- ``context``: a fresh browser context (an empty, incognito-like profile) per test.
"""

from __future__ import annotations

import http.server
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_PAGE = ROOT / "examples" / "demo" / "static" / "index.html"
CHROMIUM = os.environ.get("FLOWLET_CHROMIUM", "/usr/bin/chromium")

TRUSTED_HOST = "app.example.test"
HOSTILE_HOST = "evil.test"
SIBLING_HOST = "evil.example.test"     # same site as the API, but not allowed by its CORS
API_HOST = "api.example.test"
HOST_NAMES = (API_HOST, TRUSTED_HOST, HOSTILE_HOST, SIBLING_HOST)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--ignore-certificate-errors",
    "--host-resolver-rules=MAP *.example.test 127.0.0.1, MAP evil.test 127.0.0.1",
]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: end-to-end checks in headless Chromium (tests/browser; needs /usr/bin/chromium)")


# ---- the certificate shared by every origin ---------------------------------------------------

@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for all test host names (Flowlet's own development helper)."""
    from flowlet.server.tls import ensure_self_signed
    return ensure_self_signed(tmp_path_factory.mktemp("browser-tls"), HOST_NAMES)


# ---- static pages for the trusted and the hostile origin --------------------------------------

def _blank_page(host: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{host}</title></head>"
            f"<body><h1>{host}</h1></body></html>").encode()


class _PageHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "static-test"

    def setup(self) -> None:
        self.request.settimeout(10)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()    # in this handler's thread, never in the accept loop
        super().setup()

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        path = self.path.split("?", 1)[0]
        if path in ("/", "/blank.html"):
            self._send(200, "text/html; charset=utf-8", _blank_page(host))
        elif path == "/index.html":
            self._send(200, "text/html; charset=utf-8", DEMO_PAGE.read_bytes())
        elif path == "/favicon.ico":
            self._send(204, "image/x-icon", b"")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found")

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass


class _PageServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ctx: ssl.SSLContext | None):
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.ctx = ctx

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ctx is None:
            return sock, addr
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address) -> None:
        pass          # a browser dropping a speculative connection is not a test failure


@dataclass(frozen=True)
class StaticSite:
    port: int
    scheme: str = "https"

    def origin(self, host: str) -> str:
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def trusted(self) -> str:
        return self.origin(TRUSTED_HOST)

    @property
    def hostile(self) -> str:
        return self.origin(HOSTILE_HOST)

    @property
    def sibling(self) -> str:
        return self.origin(SIBLING_HOST)


def _serve_pages(ctx: ssl.SSLContext | None, scheme: str):
    server = _PageServer(ctx)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield StaticSite(server.server_address[1], scheme)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def static_site(tls_files):
    """The HTTPS origins: app.example.test (trusted), evil.test, evil.example.test."""
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    yield from _serve_pages(ctx, "https")


@pytest.fixture(scope="session")
def plain_site():
    """The same pages over plain HTTP, for http://localhost development checks."""
    yield from _serve_pages(None, "http")


# ---- the browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set FLOWLET_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30000)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def context(browser):
    """A fresh profile for one test: no cookies, no cache, no stored preflights."""
    ctx = browser.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(15000)
    try:
        yield ctx
    finally:
        ctx.close()
