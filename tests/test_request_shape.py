"""A flow without an input schema that reads what the request lacks answers 400, not 500."""

from __future__ import annotations

import httpx

from conftest import make_workspace, run_server

FLOWS = {
    "flowlet.yaml": "name: shape\n",
    "flows/sum.yaml": """
        endpoint: {method: POST, path: /sum}
        respond: {body: {sum: "=body.a + body.b"}}
    """,
    "flows/echo.yaml": """
        endpoint: {method: POST, path: /echo}
        respond: {body: {a: "=body.a"}}
    """,
    "flows/broken.yaml": """
        endpoint: {method: GET, path: /broken}
        steps: [{id: r, function: "functions.f:make"}]
        respond: {body: {x: "=r.missing"}}
    """,
    "functions/f.py": "def make():\n    return {}\n",
}


def test_missing_keys_and_wrong_types_in_the_body_are_400_and_a_flow_bug_stays_500(tmp_path):
    ws = make_workspace(tmp_path, FLOWS)
    with run_server(ws) as srv:
        ok = httpx.post(f"{srv.url}/api/sum", json={"a": 2, "b": 3})
        assert ok.status_code == 200 and ok.json() == {"sum": 5}
        for body in ({"a": 2}, {"a": "x", "b": 3}, {"a": 2**62, "b": 2**62}, [], "text"):
            r = httpx.post(f"{srv.url}/api/sum", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"].startswith("invalid request")
        assert httpx.post(f"{srv.url}/api/echo", json={}).status_code == 400
        assert httpx.post(f"{srv.url}/api/echo", content=b"").status_code == 400
        bug = httpx.get(f"{srv.url}/api/broken")
        assert bug.status_code == 500 and bug.json() == {"error": "internal error"}
