"""The console where it is served: under /console/ on a real `flowlet serve --admin-port`.

A save through the admin port reaches the public port without a restart: the preflight there
changes from refused to the saved answer.
"""

from __future__ import annotations

import re
import threading
import time

import httpx

from conftest import flowlet, free_port, make_workspace, run_server

FLOW = "# read one user\nendpoint:\n  method: GET\n  path: /user/{id}\nrespond:\n  body: {ok: true}\n"


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _preflight(url: str) -> httpx.Response:
    return httpx.options(f"{url}/api/user/7", headers={"Origin": "https://test.example.com",
                                                        "Access-Control-Request-Method": "GET"})


def test_console_on_the_admin_port_saves_and_the_server_serves_it(tmp_path):
    ws = make_workspace(tmp_path, {"flowlet.yaml": "name: t\nconsole: {users: console-users}\n",
                                   "flows/get-user.yaml": FLOW})
    out = flowlet("secrets", "set", "console-users", "-w", str(ws), "--type", "basic", "--user", "alice",
                  "--password-stdin", input="pw-alice-1")
    assert out.returncode == 0, out.stderr
    port = free_port()
    with run_server(ws, "--admin-port", str(port)) as api:
        admin = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{admin}/healthz").status_code == 200
        c = httpx.Client(base_url=admin, headers={"Origin": admin}, timeout=90)
        r = c.get("/console/endpoints")
        assert r.status_code == 401 and r.headers["x-frame-options"] == "DENY"
        r = c.post("/console/signin", data={"csrf_token": _token(c.get("/console/signin").text),
                                            "user": "alice", "password": "pw-alice-1"})
        assert r.status_code == 303
        page = c.get("/console/endpoint", params={"file": "flows/get-user.yaml"})
        assert page.status_code == 200
        assert _preflight(api.url).status_code == 403
        version = re.search(r'name="version" value="([^"]+)"', page.text).group(1)
        stop, failures, answered = threading.Event(), [], [0]

        def traffic() -> None:           # requests all through the save and the reload
            with httpx.Client() as client:
                while not stop.is_set():
                    try:
                        status = client.get(f"{api.url}/api/user/1").status_code
                    except httpx.TransportError as exc:
                        status = repr(exc)
                    answered[0] += 1
                    if status != 200:
                        failures.append(status)

        runner = threading.Thread(target=traffic)
        runner.start()
        r = c.post("/console/endpoint", params={"file": "flows/get-user.yaml"}, data={
            "csrf_token": _token(page.text), "version": version, "auth": "open", "cors_allow": "selected",
            "cors_domains": "*.example.com", "cors_headers": "Content-Type", "cors_max_age": "300"})
        assert r.status_code == 303
        deadline = time.monotonic() + 30
        while (answer := _preflight(api.url)).status_code != 204 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        runner.join()
        assert answer.status_code == 204
        assert failures == [] and answered[0] > 10
        notice = c.get("/console/endpoint", params={"file": "flows/get-user.yaml"}).text
        assert "Saved. The server now serves it." in notice        # the supervisor's reload finished
        assert answer.headers["access-control-allow-origin"] == "https://test.example.com"
        assert answer.headers["access-control-max-age"] == "300"
        assert "# read one user" in (ws / "flows" / "get-user.yaml").read_text()
