"""TLS helpers: the development certificate, HSTS, and granian serving HTTP/2 over TLS."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flowlet.errors import ConfigError
from flowlet.security.hsts import HstsSettings, hsts_header, parse_hsts_settings
from flowlet.server.tls import ensure_self_signed
from flowlet.source import load_yaml
from conftest import free_port


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def san_names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(e.value) for e in san}


# ---- HSTS -----------------------------------------------------------------------------------

def hsts(text: str):
    return parse_hsts_settings(load_yaml(text, "flowlet.yaml")["hsts"])


def test_hsts_defaults_when_absent():
    assert parse_hsts_settings(None) == HstsSettings(31536000, True, False)
    assert hsts_header(parse_hsts_settings(None)) == (b"strict-transport-security",
                                                      b"max-age=31536000; includeSubDomains")


def test_hsts_without_subdomains():
    s = hsts("hsts:\n  max_age: 600\n  include_subdomains: false\n")
    assert hsts_header(s) == (b"strict-transport-security", b"max-age=600")


def test_hsts_max_age_zero_is_sent():
    assert hsts_header(hsts("hsts:\n  max_age: 0\n")) == (b"strict-transport-security",
                                                          b"max-age=0; includeSubDomains")


def test_hsts_preload():
    s = hsts("hsts:\n  max_age: 63072000\n  include_subdomains: true\n  preload: true\n")
    assert hsts_header(s)[1] == b"max-age=63072000; includeSubDomains; preload"
    assert hsts_header(hsts("hsts:\n  preload: false\n"))[1] == b"max-age=31536000; includeSubDomains"


def test_hsts_false_turns_header_off():
    assert parse_hsts_settings(False) is None and hsts_header(None) is None


def test_hsts_header_from_workspace_settings_object():
    class WorkspaceSettings:
        hsts = HstsSettings(max_age=5, include_subdomains=False)
    assert hsts_header(WorkspaceSettings()) == (b"strict-transport-security", b"max-age=5")


@pytest.mark.parametrize("body, line", [
    ("hsts:\n  max_age: 1\n  include_subdomain: true\n", 3),
    ("hsts:\n  max_age: -1\n", 2),
    ("hsts:\n  max_age: '1'\n", 2),
    ("hsts:\n  include_subdomains: yes please\n", 2),
    ("hsts:\n  preload: true\n  max_age: 600\n", 2),
    ("hsts:\n  include_subdomains: false\n  preload: true\n", 3),
])
def test_hsts_bad_values_are_errors_with_line(body, line):
    with pytest.raises(ConfigError) as e:
        hsts(body)
    assert e.value.line == line and e.value.file == "flowlet.yaml"


def test_hsts_not_a_mapping_is_error():
    with pytest.raises(ConfigError):
        parse_hsts_settings(["max_age"])


# ---- the development certificate --------------------------------------------------------------

def test_self_signed_is_created_under_dot_flowlet(tmp_path):
    cert_path, key_path = ensure_self_signed(tmp_path)
    assert cert_path.parent == key_path.parent == tmp_path / ".flowlet" / "tls"
    cert = load_cert(cert_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert cert.public_key() == key.public_key()
    assert san_names(cert) == {"localhost", "127.0.0.1", "::1"}
    cert.verify_directly_issued_by(cert)          # really self-signed
    now = dt.datetime.now(dt.timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def test_self_signed_key_file_is_private(tmp_path):
    _, key_path = ensure_self_signed(tmp_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_self_signed_key_mode_is_repaired_on_reuse(tmp_path):
    _, key_path = ensure_self_signed(tmp_path)
    os.chmod(key_path, 0o644)
    ensure_self_signed(tmp_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_self_signed_reused_while_valid(tmp_path):
    cert_path, key_path = ensure_self_signed(tmp_path, ["api.example.test"])
    before = cert_path.read_bytes(), key_path.read_bytes()
    again = ensure_self_signed(tmp_path, ["API.example.test."])       # same name, other spelling
    assert again == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_self_signed_regenerated_when_names_change(tmp_path):
    cert_path, _ = ensure_self_signed(tmp_path)
    first = cert_path.read_bytes()
    ensure_self_signed(tmp_path, ["api.example.test", "10.1.2.3"])
    assert cert_path.read_bytes() != first
    assert san_names(load_cert(cert_path)) == {"localhost", "127.0.0.1", "::1", "api.example.test", "10.1.2.3"}


def test_self_signed_regenerated_when_expired(tmp_path):
    cert_path, key_path = ensure_self_signed(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    old = load_cert(cert_path)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    expired = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(past - dt.timedelta(days=90)).not_valid_after(past)
               .add_extension(old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                              critical=False)
               .sign(key, hashes.SHA256()))
    cert_path.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    ensure_self_signed(tmp_path)
    assert load_cert(cert_path).not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)


def test_self_signed_regenerated_when_key_does_not_match(tmp_path):
    cert_path, key_path = ensure_self_signed(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1())
    key_path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    ensure_self_signed(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert load_cert(cert_path).public_key() == key.public_key()


def test_self_signed_regenerated_when_files_are_garbage(tmp_path):
    cert_path, key_path = ensure_self_signed(tmp_path)
    cert_path.write_text("not a certificate")
    ensure_self_signed(tmp_path)
    assert load_cert(cert_path).public_key() == \
        serialization.load_pem_private_key(key_path.read_bytes(), password=None).public_key()


def test_self_signed_rejects_a_bad_name(tmp_path):
    with pytest.raises(ValueError):
        ensure_self_signed(tmp_path, ["bad..name" + "x" * 70])


# ---- granian: TLS with HTTP/2 by ALPN -----------------------------------------------------------

APP = '''
import json

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"scheme": scope.get("scheme"), "http_version": scope.get("http_version"),
                       "headers": {k.decode(): v.decode() for k, v in scope["headers"]}}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
'''

RUN = '''
import sys
from pathlib import Path
from granian import Granian
kw = {"ssl_protocol_min": sys.argv[4]} if len(sys.argv) > 4 else {}
Granian("tlsapp:app", interface="asgi", address="127.0.0.1", port=int(sys.argv[1]),
        ssl_cert=Path(sys.argv[2]), ssl_key=Path(sys.argv[3]), **kw).serve()
'''


class TlsServer:
    def __init__(self, root: Path, *extra: str):
        (root / "tlsapp.py").write_text(APP)
        (root / "run.py").write_text(RUN)
        self.cert, key = ensure_self_signed(root, ["api.example.test"])
        self.port = free_port()
        self.url = f"https://localhost:{self.port}"
        self.log = root / "granian.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "run.py", str(self.port), str(self.cert), str(key), *extra],
                                         cwd=root, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"granian exited: {self.log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("granian did not start listening")
                time.sleep(0.05)

    def context(self, **kw) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = TlsServer(tmp_path_factory.mktemp("tls13"))
    yield srv
    srv.stop()


def test_granian_negotiates_http2_by_alpn(server):
    with httpx.Client(http2=True, verify=server.context()) as client:
        r = client.get(server.url + "/x")
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    seen = r.json()
    assert seen["http_version"] == "2" and seen["scheme"] == "https"


def test_http2_request_has_a_host_header(server):
    """CSRF compares Origin with scheme + Host; granian must turn :authority into host."""
    with httpx.Client(http2=True, verify=server.context()) as client:
        r = client.get(server.url + "/x")
    assert r.http_version == "HTTP/2"
    assert r.json()["headers"]["host"] == f"localhost:{server.port}"


def test_http11_clients_still_served(server):
    with httpx.Client(http2=False, verify=server.context()) as client:
        r = client.get(server.url + "/x")
    assert r.http_version == "HTTP/1.1" and r.json()["scheme"] == "https"


def test_certificate_valid_for_ip_address(server):
    with httpx.Client(http2=True, verify=server.context()) as client:
        assert client.get(f"https://127.0.0.1:{server.port}/x").http_version == "HTTP/2"


def test_certificate_valid_for_extra_name_only(server):
    def get(name: str) -> httpx.Response:
        with httpx.Client(http2=True, verify=server.context()) as client:     # no pooled connection
            return client.get(server.url + "/x", extensions={"sni_hostname": name})

    assert get("api.example.test").status_code == 200
    with pytest.raises(httpx.ConnectError, match="(?i)hostname mismatch"):
        get("evil.test")


def test_untrusted_client_refuses_the_development_certificate(server):
    with httpx.Client(http2=True) as client:      # system trust store: our cert is not in it
        with pytest.raises(httpx.ConnectError, match="(?i)certificate verify failed"):
            client.get(server.url + "/x")


def test_granian_default_refuses_tls12_clients(server):
    with httpx.Client(verify=server.context(maximum_version=ssl.TLSVersion.TLSv1_2)) as client:
        with pytest.raises(httpx.ConnectError, match="(?i)protocol version"):
            client.get(server.url + "/x")


def test_granian_tls12_minimum_serves_tls12_clients_with_http2(tmp_path):
    srv = TlsServer(tmp_path, "tls1.2")
    try:
        ctx = srv.context(maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() == "TLSv1.2" and tls.selected_alpn_protocol() == "h2"
        with httpx.Client(http2=True, verify=srv.context(maximum_version=ssl.TLSVersion.TLSv1_2)) as client:
            assert client.get(srv.url + "/x").http_version == "HTTP/2"
    finally:
        srv.stop()


# ---- over the wire: `flowlet serve` with TLS ------------------------------------------------------

def test_serve_tls_speaks_http2_and_sends_hsts(tmp_path):
    from conftest import make_workspace, run_server
    root = make_workspace(tmp_path, {"flowlet.yaml": "name: t\nhsts:\n  max_age: 600\n  include_subdomains: false\n"})
    with run_server(root, "--tls-self-signed") as server:
        assert server.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(root / ".flowlet" / "tls" / "dev-cert.pem"))
        for http2, version in ((True, "HTTP/2"), (False, "HTTP/1.1")):
            with httpx.Client(http2=http2, verify=ctx) as client:
                for path in ("/api/csrf", "/api/no-such-flow"):     # errors carry it too
                    r = client.get(server.url + path)
                    assert r.http_version == version
                    assert r.headers["strict-transport-security"] == "max-age=600"
    key = root / ".flowlet" / "tls" / "dev-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_serve_plain_http_sends_no_hsts(tmp_path):
    from conftest import make_workspace, run_server
    root = make_workspace(tmp_path, {"flowlet.yaml": "name: t\n"})
    with run_server(root) as server:
        r = httpx.get(server.url + "/api/no-such-flow")
        assert r.status_code == 404 and "strict-transport-security" not in r.headers
