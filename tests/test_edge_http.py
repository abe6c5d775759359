"""Trusted proxies and rate limits on a real `flowlet serve`: several workers, bad input, a
Redis that is not there."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time

import httpx

from conftest import flowlet, make_workspace, run_server

LIMITED = """
    endpoint:
      method: GET
      path: /limited
      rate_limit: {limit: 10, window_s: 86400, key: client}
    respond: {body: {ok: true}}
"""
WHO = """
    endpoint: {method: GET, path: /who}
    respond: {body: {client: "=request.client"}}
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_limit_is_exact_across_the_workers_of_one_server(tmp_path):
    ws = make_workspace(tmp_path, {"flows/limited.yaml": LIMITED})
    with run_server(ws, "--workers", "3") as srv:
        with httpx.Client(timeout=20) as c, concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda _: c.get(srv.url + "/api/limited").status_code, range(40)))
    assert sorted(statuses) == [200] * 10 + [429] * 30


def test_429_is_json_with_retry_after_and_ratelimit_fields(tmp_path):
    ws = make_workspace(tmp_path, {"flows/limited.yaml": LIMITED.replace("limit: 10", "limit: 1")})
    with run_server(ws) as srv:
        httpx.get(srv.url + "/api/limited")
        r = httpx.get(srv.url + "/api/limited")
    assert r.status_code == 429 and r.json() == {"error": "rate limit exceeded"}
    assert r.headers["content-type"].startswith("application/json")
    assert 0 < int(r.headers["retry-after"]) <= 86400
    assert r.headers["ratelimit-policy"] == '"endpoint";q=1;w=86400'
    assert r.headers["ratelimit"] == f'"endpoint";r=0;t={r.headers["retry-after"]}'


def test_forwarded_allow_ips_option_makes_the_proxy_headers_count(tmp_path):
    ws = make_workspace(tmp_path, {"flows/who.yaml": WHO})
    spoof = {"x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "https"}
    with run_server(ws) as plain:
        untrusted = httpx.get(plain.url + "/api/who", headers=spoof)
    with run_server(ws, "--forwarded-allow-ips", "127.0.0.1") as proxied:
        trusted = httpx.get(proxied.url + "/api/who", headers=spoof)
        bad = httpx.get(proxied.url + "/api/who", headers={"x-forwarded-for": "not-an-address"})
    assert untrusted.json() == {"client": "127.0.0.1"} and "strict-transport-security" not in untrusted.headers
    assert trusted.json() == {"client": "198.51.100.7"} and "strict-transport-security" in trusted.headers
    assert bad.status_code == 400 and "X-Forwarded-For" in bad.json()["error"]


def test_proxy_trusted_in_flowlet_yaml(tmp_path):
    ws = make_workspace(tmp_path, {"flowlet.yaml": "name: t\nproxy: {trusted: [127.0.0.0/8]}\n",
                                   "flows/who.yaml": WHO})
    with run_server(ws) as srv:
        r = httpx.get(srv.url + "/api/who", headers={"forwarded": 'for="[2001:db8::7]";proto=https'})
    assert r.json() == {"client": "2001:db8::7"}


def test_bad_forwarded_allow_ips_is_one_clear_line(tmp_path):
    ws = make_workspace(tmp_path, {"flows/who.yaml": WHO})
    r = flowlet("serve", str(ws), "--forwarded-allow-ips", "10.0.0.0/8,proxy.internal", timeout=30)
    assert r.returncode == 2 and "proxy.internal" in r.stderr and "Traceback" not in r.stderr


def test_config_errors_are_file_and_line(tmp_path):
    ws = make_workspace(tmp_path, {
        "flowlet.yaml": "name: t\nrate_limits:\n  auth_failures:\n    per_client: often\n",
        "flows/a.yaml": "endpoint:\n  method: GET\n  path: /a\n  rate_limit: {limit: 0, window_s: 5}\nrespond: {body: 1}\n",
    })
    r = flowlet("check", str(ws))
    assert r.returncode == 1 and "flowlet.yaml:4: error:" in r.stderr
    (ws / "flowlet.yaml").write_text("name: t\n")
    r = flowlet("check", str(ws))
    assert r.returncode == 1 and "flows/a.yaml:4: error:" in r.stderr and "limit" in r.stderr


def test_user_key_without_auth_is_a_load_error(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": """
        endpoint:
          method: GET
          path: /a
          rate_limit:
            limit: 5
            window_s: 60
            key: user
        respond: {body: 1}
    """})
    r = flowlet("check", str(ws))
    assert r.returncode == 1 and "flows/a.yaml:8: error:" in r.stderr and "auth" in r.stderr


def test_redis_unreachable_keeps_serving_with_local_counters(tmp_path):
    ws = make_workspace(tmp_path, {
        "flowlet.yaml": f"name: t\nrate_limits:\n  store: redis://127.0.0.1:{closed_port()}/0\n",
        "flows/limited.yaml": LIMITED.replace("limit: 10", "limit: 3"),
    })
    with run_server(ws) as srv:
        statuses = [httpx.get(srv.url + "/api/limited").status_code for _ in range(6)]
        log = srv.stderr
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert log.count("unreachable") == 1


def test_jwt_failures_are_throttled_per_client(tmp_path):
    ws = make_workspace(tmp_path, {
        "flowlet.yaml": "name: t\nrate_limits:\n  auth_failures: {per_client: 3/86400s}\n",
        "flows/me.yaml": """
            endpoint: {method: GET, path: /me, auth: {type: jwt, secret: k}}
            respond: {body: {sub: "=auth.claims.sub"}}
        """,
    })
    assert flowlet("secrets", "set", "k", "-w", str(ws), "--type", "jwt", "--hs-key-stdin",
                   input="k" * 40 + "\n").returncode == 0
    token = flowlet("token", "-w", str(ws), "--secret", "k", "--sub", "ann").stdout.strip()
    with run_server(ws) as srv:
        good = httpx.get(srv.url + "/api/me", headers={"authorization": f"Bearer {token}"})
        bad = [httpx.get(srv.url + "/api/me", headers={"authorization": f"Bearer {token}x{i}"}).status_code
               for i in range(4)]
        fresh = flowlet("token", "-w", str(ws), "--secret", "k", "--sub", "bob").stdout.strip()
        after = httpx.get(srv.url + "/api/me", headers={"authorization": f"Bearer {fresh}"})
        cached = httpx.get(srv.url + "/api/me", headers={"authorization": f"Bearer {token}"})
    assert good.status_code == 200
    assert bad == [401, 401, 401, 429]
    assert after.status_code == 429 and "retry-after" in after.headers       # before the signature check
    assert cached.status_code == 429                                            # even a cached token


def test_expressions_see_request_client_and_key_on_a_header(tmp_path):
    ws = make_workspace(tmp_path, {"flows/t.yaml": """
        endpoint:
          method: GET
          path: /t
          rate_limit: {limit: 1, window_s: 86400, key: "=request.headers['x-api-key']"}
        respond: {body: {client: "=request.client"}}
    """})
    with run_server(ws) as srv:
        a1 = httpx.get(srv.url + "/api/t", headers={"x-api-key": "a"})
        a2 = httpx.get(srv.url + "/api/t", headers={"x-api-key": "a"})
        b1 = httpx.get(srv.url + "/api/t", headers={"x-api-key": "b"})
    assert (a1.status_code, a2.status_code, b1.status_code) == (200, 429, 200)
    assert a1.json() == {"client": "127.0.0.1"}


def test_access_log_names_the_effective_client(tmp_path):
    ws = make_workspace(tmp_path, {"flows/who.yaml": WHO})
    with run_server(ws, "--forwarded-allow-ips", "127.0.0.1") as srv:
        httpx.get(srv.url + "/api/who", headers={"x-forwarded-for": "198.51.100.9"})
        time.sleep(0.5)
        lines = [json.loads(l) for l in srv.stderr.splitlines() if '"flowlet.access"' in l]
    assert any(l.get("client") == "198.51.100.9" and l["path"] == "/api/who" for l in lines), lines

