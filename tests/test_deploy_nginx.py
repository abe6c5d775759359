"""The deployment of docs/deploy.md, for real: Debian's nginx terminating TLS in front of two
`flowlet serve` processes that share PostgreSQL (secrets) and Redis (rate limits).

nginx runs the configuration printed in the page, with only addresses, ports and certificate
paths replaced. Test clients bind to other loopback addresses (127.0.0.2, ...) so the servers
can tell them from nginx (127.0.0.1, the only trusted proxy).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

import redis_keys

from conftest import PG_BASE, ROOT, flowlet, free_port, make_workspace, run_server

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
                                reason="nginx is not installed (scripts/test.sh installs it)")

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MASTER = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
PASSWORD = "first password"

FLOWS = {
    "flows/hello.yaml": """
        endpoint: {method: GET, path: /hello}
        respond: {body: {hello: world}}
    """,
    "flows/who.yaml": """
        endpoint: {method: GET, path: /who}
        respond: {body: {client: "=request.client"}}
    """,
    "flows/limited.yaml": """
        endpoint:
          method: GET
          path: /limited
          rate_limit: {limit: 4, window_s: 86400, key: client}
        respond: {body: {ok: true}}
    """,
    "flows/notes.yaml": """
        endpoint: {method: POST, path: /notes, csrf: true}
        respond: {body: {saved: "=body"}}
    """,
    "flows/me.yaml": """
        endpoint: {method: GET, path: /me, auth: {type: basic, secret: team}}
        respond: {body: {user: "=auth.user"}}
    """,
}


def nginx_config(servers: list[str], port: int, cert: Path, key: Path, prefix: Path) -> str:
    """docs/deploy.md's nginx block, pointed at local ports and a test certificate."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```nginx\n(.*?)```", text, re.S).group(1)
    for old, new in (("10.0.0.11:8080", servers[0]), ("10.0.0.12:8080", servers[1]),
                     ("listen 443 ssl", f"listen 127.0.0.1:{port} ssl"),
                     ("/etc/letsencrypt/live/api.example.com/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/api.example.com/privkey.pem", str(key))):
        assert old in block, f"docs/deploy.md's nginx block no longer contains {old!r}"
        block = block.replace(old, new)
    user = "user root;\n" if os.getuid() == 0 else ""
    temps = "\n".join(f"    {name}_temp_path {prefix / name};" for name in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    access_log off;\n{temps}\n{block}\n}}\n")


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    import psycopg

    tmp = tmp_path_factory.mktemp("deploy")
    schema = "t_" + uuid.uuid4().hex[:12]
    key_prefix = redis_keys.new_prefix()
    conn = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    conn.execute(f"CREATE SCHEMA {schema}")
    settings = (f"name: deployed\nstore: '{PG_BASE}?options=-csearch_path%3D{schema}'\n"
                f"rate_limits:\n  store: redis://127.0.0.1:6379/0\n  key_prefix: '{key_prefix}'\n"
                f"  auth_failures: {{per_client: 3/86400s, per_user: 100/86400s}}\n")
    files = {"flowlet.yaml": settings, **FLOWS}
    a, b = make_workspace(tmp / "a", files), make_workspace(tmp / "b", files)
    env = {"FLOWLET_MASTER_KEY": MASTER}
    r = flowlet("secrets", "set", "team", "-w", str(a), "--type", "basic", "--user", "ann", "--password-stdin",
                input=PASSWORD + "\n", env=env)
    assert r.returncode == 0, r.stderr
    from flowlet.server.tls import ensure_self_signed
    cert, key = ensure_self_signed(tmp, ["localhost"])
    proc = None
    try:
        with run_server(a, "--forwarded-allow-ips", "127.0.0.1", env=env) as sa, \
                run_server(b, "--forwarded-allow-ips", "127.0.0.1", env=env) as sb:
            port = free_port()
            (tmp / "nginx").mkdir()
            conf = tmp / "nginx" / "nginx.conf"
            conf.write_text(nginx_config([sa.url.split("//")[1], sb.url.split("//")[1]], port, cert, key,
                                         tmp / "nginx"))
            proc = subprocess.Popen([NGINX, "-p", str(tmp / "nginx"), "-c", str(conf), "-e", "stderr"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait_port(port, proc)
            yield {"proxy": f"https://localhost:{port}", "servers": [sa, sb], "workspaces": [a, b], "env": env}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
        redis_keys.drop(key_prefix)


def client(source: str = "127.0.0.2") -> httpx.Client:
    """A client connecting from ``source`` (any 127/8 address works on Linux loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source, verify=False), timeout=10)


def test_hsts_is_sent_for_requests_that_reached_the_proxy_over_https(deployment):
    with client() as c:
        through = c.get(deployment["proxy"] + "/api/hello")
        direct = c.get(deployment["servers"][0].url + "/api/hello")
    assert through.status_code == 200 and through.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in direct.headers       # plain http, straight to the server


def test_csrf_flow_from_the_proxys_https_origin(deployment):
    origin = deployment["proxy"]
    with client() as c:
        issued = c.get(origin + "/api/csrf")
        assert issued.status_code == 200 and "Secure" in issued.headers["set-cookie"]
        token, cookie = issued.json()["token"], issued.cookies["csrf"]
        headers = {"origin": origin, "sec-fetch-site": "same-origin", "x-csrf-token": token,
                   "cookie": f"csrf={cookie}", "content-type": "application/json"}
        # both servers accept it (one CSRF key in the shared store), whichever nginx picks
        answers = [c.post(origin + "/api/notes", headers=headers, content=b'{"n": 1}') for _ in range(4)]
        foreign = c.post(origin + "/api/notes", headers={**headers, "origin": "https://evil.example"},
                         content=b'{"n": 1}')
    assert [r.status_code for r in answers] == [200] * 4 and answers[0].json() == {"saved": {"n": 1}}
    assert foreign.status_code == 400


def test_rate_limit_is_shared_by_both_servers(deployment):
    with client("127.0.0.3") as c:
        answers = [c.get(deployment["proxy"] + "/api/limited") for _ in range(10)]
    assert [r.status_code for r in answers] == [200] * 4 + [429] * 6
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["ratelimit-policy"] == '"endpoint";q=4;w=86400'
    assert refused.headers["ratelimit"].startswith('"endpoint";r=0;t=')
    time.sleep(0.5)                                           # access logs are flushed every 0.2 s
    served = [s.stderr.count('"/api/limited"') for s in deployment["servers"]]
    assert all(n > 0 for n in served) and sum(served) == 10, served


def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(deployment):
    spoof = {"x-forwarded-for": "203.0.113.66", "x-forwarded-proto": "https", "forwarded": "for=203.0.113.66"}
    with client("127.0.0.4") as c:
        direct = c.get(deployment["servers"][0].url + "/api/who", headers=spoof)
        through = c.get(deployment["proxy"] + "/api/who", headers={"x-forwarded-for": "203.0.113.66"})
    assert direct.json() == {"client": "127.0.0.4"} and "strict-transport-security" not in direct.headers
    assert through.json() == {"client": "127.0.0.4"}          # nginx appended the real peer; it wins


def test_failed_logins_are_throttled_per_real_client(deployment):
    with client("127.0.0.5") as c:
        wrong = [c.get(deployment["proxy"] + "/api/me", auth=("ann", "guess")).status_code for _ in range(3)]
        right = c.get(deployment["proxy"] + "/api/me", auth=("ann", PASSWORD))
    with client("127.0.0.6") as other:
        elsewhere = other.get(deployment["proxy"] + "/api/me", auth=("ann", PASSWORD))
    assert wrong == [401, 401, 401]
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0   # before any check
    assert elsewhere.status_code == 200


def test_secret_change_is_seen_by_both_servers(deployment):
    r = flowlet("secrets", "set", "team", "-w", str(deployment["workspaces"][1]), "--type", "basic",
                "--user", "bob", "--password-stdin", input="bob password\n", env=deployment["env"])
    assert r.returncode == 0, r.stderr
    changed = time.monotonic()
    seen = {}
    with client("127.0.0.7") as c:
        while len(seen) < 2 and time.monotonic() - changed < 5:
            for i, server in enumerate(deployment["servers"]):
                if i not in seen and c.get(server.url + "/api/me", auth=("bob", "bob password")).status_code == 200:
                    seen[i] = time.monotonic() - changed
            time.sleep(0.02)
    assert sorted(seen) == [0, 1], seen
    print(f"secret change seen after {seen[0]:.2f} s and {seen[1]:.2f} s")


def test_csrf_key_rotation_is_seen_by_both_servers(deployment):
    """Two rotations retire the key a token was issued under; each server must stop taking it."""
    a, b = deployment["servers"]
    with client("127.0.0.8") as c:
        issued = c.get(a.url + "/api/csrf")
        token, cookie = issued.json()["token"], issued.cookies["csrf"]
        headers = {"x-csrf-token": token, "cookie": f"csrf={cookie}", "content-type": "application/json"}
        assert [c.post(s.url + "/api/notes", headers=headers, content=b"1").status_code for s in (a, b)] == [200, 200]
        for _ in range(2):
            r = flowlet("secrets", "rotate-csrf", "-w", str(deployment["workspaces"][0]), env=deployment["env"])
            assert r.returncode == 0, r.stderr
        rotated = time.monotonic()
        seen = {}
        while len(seen) < 2 and time.monotonic() - rotated < 5:
            for i, server in enumerate((a, b)):
                if i not in seen and c.post(server.url + "/api/notes", headers=headers, content=b"1").status_code == 400:
                    seen[i] = time.monotonic() - rotated
            time.sleep(0.02)
    assert sorted(seen) == [0, 1], seen
    print(f"CSRF key rotation seen after {seen[0]:.2f} s and {seen[1]:.2f} s")
