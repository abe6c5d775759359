"""Several servers on one PostgreSQL store: secrets and the CSRF key are shared."""

from __future__ import annotations

import base64
import os
import time

import httpx

from conftest import flowlet, make_workspace, run_server

MASTER = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def test_two_servers_share_secrets_and_csrf_key(tmp_path, pg_url):
    files = {
        "flowlet.yaml": f"name: shared\nstore: '{pg_url}'\n",
        "flows/me.yaml": """
            endpoint: {method: GET, path: /me, auth: {type: basic, secret: team}}
            respond: {body: {user: "=auth.user"}}
        """,
        "flows/post.yaml": """
            endpoint: {method: POST, path: /notes, csrf: true}
            respond: {body: saved}
        """,
    }
    a = make_workspace(tmp_path / "a", files)
    b = make_workspace(tmp_path / "b", files)
    env = {"FLOWLET_MASTER_KEY": MASTER}
    r = flowlet("secrets", "set", "team", "-w", str(a), "--type", "basic", "--user", "ada", "--password-stdin",
                input="first-pass\n", env=env)
    assert r.returncode == 0, r.stderr
    with run_server(a, env=env) as sa, run_server(b, env=env) as sb:
        for srv in (sa, sb):
            assert httpx.get(srv.url + "/api/me", auth=("ada", "first-pass")).json() == {"user": "ada"}
        # a token issued by one server is accepted by the other: one key in the shared store
        got = httpx.get(sa.url + "/api/csrf")
        token, cookie = got.json()["token"], got.cookies["csrf"]
        ok = httpx.post(sb.url + "/api/notes", headers={"x-csrf-token": token, "cookie": f"csrf={cookie}"})
        assert ok.status_code == 200 and ok.json() == "saved"
        # a user added through the CLI (to workspace b) reaches both running servers within 2 s
        r = flowlet("secrets", "set", "team", "-w", str(b), "--type", "basic", "--user", "bob",
                    "--password-stdin", input="second-pass\n", env=env)
        assert r.returncode == 0, r.stderr
        time.sleep(2.2)
        for srv in (sa, sb):
            assert httpx.get(srv.url + "/api/me", auth=("bob", "second-pass")).json() == {"user": "bob"}
