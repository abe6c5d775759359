"""The admin listener over real sockets: a server with two workers driven through each refusal,
/metrics read with the Prometheus client's parser, /healthz and /readyz."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import flowlet, free_port, make_workspace, run_server

FILES = {
    "flowlet.yaml": """
        name: shop
        limits: {body_bytes: 64, timeout_s: 0.5}
        csrf: {grace_s: 1}
    """,
    "flows/open.yaml": """
        endpoint: {method: GET, path: /open}
        respond: {body: {ok: true}}
    """,
    "flows/echo.yaml": """
        endpoint: {method: POST, path: /echo}
        respond: {body: {got: "=body"}}
    """,
    "flows/basic.yaml": """
        endpoint: {method: GET, path: /basic, auth: {type: basic, secret: team}}
        respond: {body: {user: "=auth.user"}}
    """,
    "flows/jwt.yaml": """
        endpoint:
          method: GET
          path: "/orders/{id:int}"
          auth: {type: jwt, secret: api, scope_expr: "'admin' in scopes"}
        respond: {body: {id: "=params.id"}}
    """,
    "flows/things.yaml": """
        endpoint:
          method: POST
          path: /things
          csrf: true
          cors: {allow: selected, domains: "app.example.test", credentials: true}
        respond: {body: {ok: true}}
    """,
    "flows/typed.yaml": """
        endpoint:
          method: POST
          path: /typed
          input: {body: {type: object, required: [a], properties: {a: {type: integer}}}}
        respond: {body: {ok: true}}
    """,
    "flows/limited.yaml": """
        endpoint: {method: GET, path: /limited, rate_limit: {limit: 1, window_s: 3600, key: client}}
        respond: {body: {ok: true}}
    """,
    "flows/slow.yaml": """
        endpoint: {method: GET, path: /slow}
        steps:
          - function: functions.slow:nap
        respond: {body: {late: true}}
    """,
    "functions/__init__.py": "",
    "functions/slow.py": """
        import asyncio

        async def nap():
            await asyncio.sleep(3)
    """,
}


def admin_get(admin: str, path: str) -> httpx.Response:
    return httpx.get(admin + path, timeout=5)


def scrape(admin: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(sample name, sorted labels): value}, parsed by prometheus_client."""
    resp = admin_get(admin, "/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def settle(admin: str, name: str, want: float, **labels: str) -> dict:
    """Scrape until a counter reaches ``want`` (workers publish about once a second)."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(admin)
        if value(samples, name, **labels) >= want or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("metrics"), FILES)
    assert flowlet("secrets", "set", "team", "-w", str(ws), "--type", "basic", "--user", "ann",
                   "--password-stdin", input="right\n").returncode == 0
    done = flowlet("secrets", "set", "api", "-w", str(ws), "--type", "jwt", "--hs-key-stdin", "--issuer", "me",
                   input="k" * 32)
    assert done.returncode == 0, done.stderr
    port = free_port()
    with run_server(ws, "--workers", "2", "--admin-port", str(port)) as server:
        yield ws, server, f"http://127.0.0.1:{port}"


def token(ws: Path, *args: str, secret: str = "api") -> str:
    out = flowlet("token", "-w", str(ws), "--secret", secret, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_healthz_answers_ok(served):
    resp = admin_get(served[2], "/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_readyz_is_200_with_its_checks_when_serving(served):
    resp = admin_get(served[2], "/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready" and body["degraded"] is False
    assert body["checks"]["workspace"] == {"state": "ok", "workers": 2}
    assert body["checks"]["secrets"]["store"] == "ok"


def test_admin_unknown_path_is_404_json(served):
    resp = admin_get(served[2], "/nope")
    assert resp.status_code == 404 and resp.json() == {"error": "not found"}


def test_metrics_not_on_the_public_port(served):
    assert httpx.get(served[1].url + "/metrics").status_code == 404


def test_requests_add_up_across_both_workers(served):
    _, server, admin = served
    before = value(scrape(admin), "flowlet_requests_total", route="/api/open", method="GET", status="200")
    pids, sent = set(), 0
    while len(pids) < 2 and sent < 300:           # new connections until both workers have answered
        with httpx.Client() as client:
            resp = client.get(server.url + "/api/open")
        assert resp.status_code == 200
        pids.add(resp.headers["x-request-id"].split("-")[0])
        sent += 1
    assert len(pids) == 2, "one worker answered every request"
    samples = settle(admin, "flowlet_requests_total", before + sent, route="/api/open", method="GET", status="200")
    assert value(samples, "flowlet_requests_total", route="/api/open", method="GET", status="200") == before + sent
    count = value(samples, "flowlet_request_duration_seconds_count", route="/api/open", method="GET")
    inf = value(samples, "flowlet_request_duration_seconds_bucket", route="/api/open", method="GET", le="+Inf")
    assert count == inf >= before + sent
    assert value(samples, "flowlet_workers") == 2
    assert value(samples, "flowlet_build_info", version="0.1.0", python=__import__("platform").python_version()) == 1


def csrf_pair(url: str) -> tuple[str, str]:
    resp = httpx.get(url + "/api/csrf")
    cookie = resp.headers["set-cookie"].split(";", 1)[0]
    return resp.json()["token"], cookie


# (stage, reason) -> a function that sends one request refused that way, and its status
def refusals(ws: Path, url: str) -> dict[tuple[str, str], tuple[int, object]]:
    api = url + "/api"
    good_scope = token(ws, "--sub", "1", "--scope", "admin")
    no_scope = token(ws, "--sub", "1", "--scope", "reader")
    expired = token(ws, "--sub", "1", "--scope", "admin", "--ttl", "-600")
    wrong_iss = token(ws, "--sub", "1", "--scope", "admin", "--iss", "someone-else")
    forged = good_scope[:-4] + ("AAAA" if not good_scope.endswith("AAAA") else "BBBB")
    bearer = lambda t: {"authorization": f"Bearer {t}"}  # noqa: E731
    preflight = lambda origin, method="POST", headers=None: httpx.request(  # noqa: E731
        "OPTIONS", api + "/things", headers={"origin": origin, "access-control-request-method": method,
                                            **({"access-control-request-headers": headers} if headers else {})})
    tok, cookie = csrf_pair(url)
    assert httpx.get(api + "/limited").status_code == 200          # the one request the limit allows
    return {
        ("auth", "missing"): (401, lambda: httpx.get(api + "/basic")),
        ("auth", "malformed"): (401, lambda: httpx.get(api + "/basic", headers={"authorization": "Basic !!"})),
        ("auth", "unknown_user"): (401, lambda: httpx.get(api + "/basic", auth=("bob", "right"))),
        ("auth", "wrong_password"): (401, lambda: httpx.get(api + "/basic", auth=("ann", "wrong"))),
        ("auth", "bad_signature"): (401, lambda: httpx.get(api + "/orders/1", headers=bearer(forged))),
        ("auth", "expired"): (401, lambda: httpx.get(api + "/orders/1", headers=bearer(expired))),
        ("auth", "issuer_audience"): (401, lambda: httpx.get(api + "/orders/1", headers=bearer(wrong_iss))),
        ("scope", "insufficient"): (403, lambda: httpx.get(api + "/orders/1", headers=bearer(no_scope))),
        ("cors", "origin"): (403, lambda: preflight("https://evil.example")),
        ("cors", "method"): (403, lambda: preflight("https://app.example.test", "DELETE")),
        ("cors", "header"): (403, lambda: preflight("https://app.example.test", "POST", "x-weird")),
        ("csrf", "missing"): (400, lambda: httpx.post(api + "/things", json={})),
        ("csrf", "mismatch"): (400, lambda: httpx.post(api + "/things", json={}, headers={
            "x-csrf-token": tok[:-2] + "AA", "cookie": cookie})),
        ("csrf", "origin"): (400, lambda: httpx.post(api + "/things", json={}, headers={
            "x-csrf-token": tok, "cookie": cookie, "origin": "https://evil.example"})),
        ("input", "schema"): (400, lambda: httpx.post(api + "/typed", json={"a": "x"})),
        ("input", "malformed"): (400, lambda: httpx.post(api + "/echo", content=b"{nope",
                                                       headers={"content-type": "application/json"})),
        ("limits", "body_too_large"): (413, lambda: httpx.post(api + "/echo", json={"x": "y" * 100})),
        ("limits", "timeout"): (504, lambda: httpx.get(api + "/slow", timeout=10)),
        ("limits", "rate_limit"): (429, lambda: httpx.get(api + "/limited")),
    }


def test_each_refusal_moves_its_counter(served):
    ws, server, admin = served
    cases = refusals(ws, server.url)
    before = scrape(admin)
    for (stage, reason), (status, send) in cases.items():
        resp = send()
        assert resp.status_code == status, (stage, reason, resp.status_code, resp.text)
    def moved(samples: dict) -> dict:
        return {(stage, reason): value(samples, "flowlet_refusals_total", stage=stage, reason=reason) -
                value(before, "flowlet_refusals_total", stage=stage, reason=reason) for stage, reason in cases}

    deadline = time.monotonic() + 10               # until both workers have published
    while min(moved(after := scrape(admin)).values()) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert moved(after) == {case: 1 for case in cases}
    refused = value(after, "flowlet_cors_preflights_total", route="/api/things", result="refused") - \
        value(before, "flowlet_cors_preflights_total", route="/api/things", result="refused")
    assert refused == 3
    assert value(after, "flowlet_requests_total", route="/api/slow", method="GET", status="504") >= 1


def test_a_valid_csrf_post_and_preflight_are_not_refusals(served):
    _, server, admin = served
    before = scrape(admin)
    tok, cookie = csrf_pair(server.url)
    resp = httpx.post(server.url + "/api/things", json={}, headers={"x-csrf-token": tok, "cookie": cookie})
    assert resp.status_code == 200
    resp = httpx.options(server.url + "/api/things", headers={"origin": "https://app.example.test",
                                                              "access-control-request-method": "POST"})
    assert resp.status_code == 204
    settle(admin, "flowlet_cors_preflights_total",
           value(before, "flowlet_cors_preflights_total", route="/api/things", result="allowed") + 1,
           route="/api/things", result="allowed")
    after = settle(admin, "flowlet_requests_total",      # the two may have gone to different workers
                   value(before, "flowlet_requests_total", route="/api/things", method="POST", status="200") + 1,
                   route="/api/things", method="POST", status="200")
    assert value(after, "flowlet_requests_total", route="/api/things", method="POST", status="200") == \
        value(before, "flowlet_requests_total", route="/api/things", method="POST", status="200") + 1
    refusals_before = sum(v for (n, _), v in before.items() if n == "flowlet_refusals_total")
    refusals_after = sum(v for (n, _), v in after.items() if n == "flowlet_refusals_total")
    assert refusals_after == refusals_before


def test_verify_cache_hits_after_the_first_check(served):
    ws, server, admin = served
    good = token(ws, "--sub", "2", "--scope", "admin")
    before = scrape(admin)
    with httpx.Client() as client:                 # one connection: one worker, one cache
        for _ in range(3):
            assert client.get(server.url + "/api/orders/2", headers={"authorization": f"Bearer {good}"}).status_code == 200
    key = dict(kind="jwt", secret="api")
    hits = value(before, "flowlet_verify_cache_total", result="hit", **key) + 2
    after = settle(admin, "flowlet_verify_cache_total", hits, result="hit", **key)
    assert value(after, "flowlet_verify_cache_total", result="hit", **key) == hits
    assert value(after, "flowlet_verify_cache_total", result="miss", **key) >= 1


def test_gauges_are_reported(served):
    samples = scrape(served[2])
    assert value(samples, "flowlet_argon2_queue_depth") == 0
    assert 0 <= value(samples, "flowlet_secrets_age_seconds") < 10
    assert value(samples, "flowlet_secrets_store_up") == 1
    assert value(samples, "flowlet_secrets_store_errors_total") == 0


def test_refusal_access_lines_carry_stage_and_reason_never_the_token(served):
    ws, server, _ = served
    secret_token = token(ws, "--sub", "3", "--scope", "reader")
    rid = "refusal-line-check-1"
    resp = httpx.get(server.url + "/api/orders/3", headers={"authorization": f"Bearer {secret_token}",
                                                             "x-request-id": rid})
    assert resp.status_code == 403
    deadline = time.monotonic() + 5
    line = None
    while line is None and time.monotonic() < deadline:
        time.sleep(0.3)
        line = next((json.loads(l) for l in server.stderr.splitlines() if rid in l and '"flowlet.access"' in l), None)
    assert line is not None
    assert (line["stage"], line["reason"], line["status"]) == ("scope", "insufficient", 403)
    assert secret_token not in server.stderr and secret_token.split(".")[2] not in server.stderr


def test_log_lines_are_one_json_style_with_increasing_timestamps(served):
    _, server, _ = served
    by_process: dict[int, list[float]] = {}
    for raw in server.stderr.splitlines():
        if not raw.startswith("{"):
            continue
        line = json.loads(raw)
        assert {"ts", "level", "logger", "msg"} <= set(line), raw
        if line["logger"] != "flowlet.access":
            pid = line["pid"]
        elif re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", line["request_id"]):    # made by the worker: its pid
            pid = int(line["request_id"].split("-")[0], 16)
        else:
            continue
        by_process.setdefault(pid, []).append(line["ts"])
    assert len(by_process) >= 2                    # the serving process and two workers
    assert any(len(stamps) > 10 for stamps in by_process.values())
    for stamps in by_process.values():
        assert stamps == sorted(stamps)


def test_admin_port_from_flowlet_yaml_and_readyz_before_load(tmp_path):
    port = free_port()
    ws = make_workspace(tmp_path, {"flowlet.yaml": f"name: t\nadmin: {{port: {port}}}\n",
                                   "flows/a.yaml": "endpoint: {method: GET, path: /a}\nrespond: {body: {}}\n"})
    with run_server(ws) as server:
        assert httpx.get(server.url + "/api/a").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text


def test_admin_block_errors_name_file_and_line(tmp_path):
    ws = make_workspace(tmp_path, {"flowlet.yaml": "name: t\nadmin:\n  port: 70000\n"})
    done = flowlet("check", str(ws))
    assert done.returncode == 1
    assert "flowlet.yaml:3: error: 'port' must be from 0 to 65535" in done.stderr


def _serve(ws: Path, admin_port: int, *args: str):
    import os
    import subprocess
    import sys
    return subprocess.Popen([sys.executable, "-m", "flowlet.cli", "serve", str(ws), "--port", str(free_port()),
                             "--admin-port", str(admin_port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ))


def _ready(admin: str) -> int | None:
    try:
        return httpx.get(admin + "/readyz", timeout=2).status_code
    except httpx.TransportError:
        return None


def test_readyz_is_503_until_the_workspace_has_loaded(tmp_path):
    ws = make_workspace(tmp_path, {
        "flows/a.yaml": "endpoint: {method: GET, path: /a}\nsteps: [{function: functions.heavy:f}]\n"
                        "respond: {body: {}}\n",
        "functions/__init__.py": "",
        "functions/heavy.py": "import time\ntime.sleep(4)   # a slow import: the worker loads slowly\n\n"
                              "def f():\n    return 1\n",
    })
    port = free_port()
    proc = _serve(ws, port)
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 40
        while 200 not in seen and time.monotonic() < deadline:
            status = _ready(f"http://127.0.0.1:{port}")
            if status is not None and (not seen or seen[-1] != status):
                seen.append(status)
            time.sleep(0.1)
        assert seen[:2] == [503, 200], seen
        line = proc.stdout.readline()
        assert line.startswith("listening on ")
        assert _ready(f"http://127.0.0.1:{port}") == 200     # ready from the moment the line is printed
    finally:
        proc.terminate()
        proc.wait(20)


def test_readyz_is_503_while_draining(tmp_path):
    import signal
    import threading
    ws = make_workspace(tmp_path, {
        "flowlet.yaml": "name: t\nlimits: {timeout_s: 20}\n",
        "flows/slow.yaml": "endpoint: {method: GET, path: /slow}\nsteps: [{function: functions.slow:nap}]\n"
                           "respond: {body: {done: true}}\n",
        "functions/__init__.py": "",
        "functions/slow.py": "import asyncio\n\nasync def nap():\n    await asyncio.sleep(4)\n",
    })
    port = free_port()
    admin = f"http://127.0.0.1:{port}"
    with run_server(ws, "--admin-port", str(port)) as server:
        assert _ready(admin) == 200
        answers: list[int] = []
        worker = threading.Thread(target=lambda: answers.append(httpx.get(server.url + "/api/slow", timeout=30).status_code))
        worker.start()
        time.sleep(1.0)                               # the request is in flight
        server.proc.send_signal(signal.SIGTERM)
        statuses = set()
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            status = _ready(admin)
            if status is not None:
                statuses.add(status)
            time.sleep(0.1)
        worker.join(30)
        assert statuses == {503}, statuses
        assert answers == [200]                        # the drain let the request finish


def test_counters_survive_a_reload(tmp_path):
    import signal
    port = free_port()
    admin = f"http://127.0.0.1:{port}"
    ws = make_workspace(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a}\nrespond: {body: {}}\n"})
    with run_server(ws, "--workers", "2", "--admin-port", str(port)) as server:
        for _ in range(5):
            assert httpx.get(server.url + "/api/a").status_code == 200
        settle(admin, "flowlet_requests_total", 5, route="/api/a", method="GET", status="200")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:             # until the new generation serves alone
            samples = scrape(admin)
            if value(samples, "flowlet_workers") == 2 and "workspace reloaded" in server.stderr:
                break
            time.sleep(0.3)
        assert "workspace reloaded" in server.stderr
        assert httpx.get(server.url + "/api/a").status_code == 200
        samples = settle(admin, "flowlet_requests_total", 6, route="/api/a", method="GET", status="200")
        assert value(samples, "flowlet_requests_total", route="/api/a", method="GET", status="200") == 6
        assert _ready(admin) == 200


def test_password_checks_past_the_queue_bound_count_as_throttled(tmp_path):
    import asyncio
    port = free_port()
    admin = f"http://127.0.0.1:{port}"
    ws = make_workspace(tmp_path, {"flows/b.yaml": "endpoint: {method: GET, path: /b, auth: {type: basic, secret: team}}\n"
                                                   "respond: {body: {}}\n"})
    assert flowlet("secrets", "set", "team", "-w", str(ws), "--type", "basic", "--user", "ann",
                   "--password-stdin", input="right\n").returncode == 0
    with run_server(ws, "--admin-port", str(port)) as server:
        async def flood() -> list[int]:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=60)) as client:
                answers = await asyncio.gather(*(client.get(server.url + "/api/b", auth=("ann", f"wrong-{i}"))
                                                 for i in range(45)))
            return [a.status_code for a in answers]

        statuses = asyncio.run(flood())
        throttled = statuses.count(429)
        assert throttled >= 1 and statuses.count(401) + throttled == 45, statuses
        samples = settle(admin, "flowlet_refusals_total", throttled, stage="auth", reason="throttled")
        assert value(samples, "flowlet_refusals_total", stage="auth", reason="throttled") == throttled
        samples = settle(admin, "flowlet_refusals_total", 45 - throttled, stage="auth", reason="wrong_password")
        assert value(samples, "flowlet_refusals_total", stage="auth", reason="wrong_password") == 45 - throttled


def test_jwks_fetches_are_counted_by_outcome(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    from conftest import JsonServer
    from test_auth_jwt import _ec_jwks, _sign

    key = ec.generate_private_key(ec.SECP256R1())
    jwks = JsonServer(_ec_jwks(("one", key)), path="/jwks.json")
    port = free_port()
    admin = f"http://127.0.0.1:{port}"
    try:
        ws = make_workspace(tmp_path, {"flows/k.yaml": "endpoint: {method: GET, path: /k, auth: {type: jwt, secret: idp}}\n"
                                                       "respond: {body: {}}\n"})
        done = flowlet("secrets", "set", "idp", "-w", str(ws), "--type", "jwt", "--jwks", jwks.url)
        assert done.returncode == 0, done.stderr
        with run_server(ws, "--admin-port", str(port)) as server:
            good = _sign(key, "ES256", {"exp": int(time.time()) + 600}, header={"kid": "one"})
            assert httpx.get(server.url + "/api/k", headers={"authorization": f"Bearer {good}"}).status_code == 200
            samples = settle(admin, "flowlet_jwks_fetches_total", 1, secret="idp", outcome="ok")
            assert value(samples, "flowlet_jwks_fetches_total", secret="idp", outcome="ok") == len(jwks.hits) >= 1
            assert value(samples, "flowlet_jwks_fetches_total", secret="idp", outcome="error") == 0
    finally:
        jwks.close()
