"""Contracts on the wire, against a real `flowlet serve`: 400 with problems, typed values and
defaults in expressions, respond cases, flowlet.Reject, output checks, OpenAPI."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
import yaml

from conftest import DEMO, assert_json_error, flowlet, make_workspace, run_server
from shopws import prepare


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    dest = tmp_path_factory.mktemp("contracts") / "ws"
    creds = prepare(dest)
    with run_server(dest, "--dev") as srv:
        srv.workspace = dest
        yield srv, creds


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    dest = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    with run_server(dest) as srv:
        yield srv


def problems(resp: httpx.Response) -> list[dict]:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert set(body) == {"error", "problems"} and body["error"] == "invalid request"
    return body["problems"]


# ---- the demo's /api/add ---------------------------------------------------------------------

def test_demo_add_answers_400_on_a_wrong_type(demo):
    r = httpx.post(demo.url + "/api/add", json={"a": "x", "b": 3})
    assert problems(r) == [{"at": "/body/a", "problem": "must be a number"}]


def test_demo_add_answers_400_on_a_missing_number(demo):
    r = httpx.post(demo.url + "/api/add", json={"a": 2})
    assert problems(r) == [{"at": "/body/b", "problem": "is required"}]


def test_demo_add_answers_400_on_an_empty_body(demo):
    r = httpx.post(demo.url + "/api/add", content=b"", headers={"content-type": "application/json"})
    assert problems(r) == [{"at": "/body", "problem": "must be an object"}]


def test_demo_add_still_adds(demo):
    assert httpx.post(demo.url + "/api/add", json={"a": 2, "b": 3.5}).json() == {"sum": 5.5}


def test_demo_add_rejects_an_overflowing_sum_with_details(demo):
    r = httpx.post(demo.url + "/api/add", json={"a": 1e308, "b": 1e308})
    assert r.status_code == 422
    assert r.json() == {"error": "the sum is too large", "details": {"max": 1.7976931348623157e308}}


def test_demo_serves_its_openapi_document(demo):
    r = httpx.get(demo.url + "/api/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    body = doc["paths"]["/api/add"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/add"}
    assert doc["components"]["schemas"]["add"]["required"] == ["a", "b"]


# ---- the contracts workspace ----------------------------------------------------------------

def test_problems_cover_every_part_of_the_request(shop):
    srv, _ = shop
    r = httpx.post(srv.url + "/api/items?dry_run=maybe", json={"name": "", "price": -1, "extra": 1},
                   headers={"x-priority": "9"})
    assert problems(r) == [
        {"at": "/query/dry_run", "problem": "must be a boolean"},
        {"at": "/headers/x-priority", "problem": "must be <= 5"},
        {"at": "/body/name", "problem": "must be at least 1 character long"},
        {"at": "/body/price", "problem": "must be >= 0"},
        {"at": "/body/extra", "problem": "is not allowed"},
    ]


def test_defaults_and_typed_values_reach_the_flow(shop):
    srv, _ = shop
    r = httpx.post(srv.url + "/api/items", json={"name": "saw", "price": 12})
    assert r.status_code == 201, r.text
    assert r.json() == {"created": {"name": "saw", "price": 12, "tags": [], "stock": 0, "kind": "tool"},
                        "priority": 3}
    r = httpx.post(srv.url + "/api/items", json={"name": "saw", "price": 12, "dimensions": {"w": 1, "h": 2}},
                   headers={"x-priority": "5"})
    assert r.json()["priority"] == 5
    assert r.json()["created"]["dimensions"] == {"w": 1, "h": 2, "unit": "cm"}


def test_the_first_respond_case_that_holds_answers(shop):
    srv, _ = shop
    r = httpx.post(srv.url + "/api/items?dry_run=true", json={"name": "saw", "price": 1})
    assert r.status_code == 200
    assert r.json()["dry_run"] is True and r.json()["item"]["stock"] == 0


def test_query_values_are_typed_with_repeated_arrays(shop):
    srv, _ = shop
    r = httpx.get(srv.url + "/api/items?limit=5&tag=a&tag=b&q=007")
    assert r.json() == {"limit": 5, "tags": ["a", "b"], "q": "007"}
    assert httpx.get(srv.url + "/api/items").json() == {"limit": 10, "tags": [], "q": None}
    assert problems(httpx.get(srv.url + "/api/items?limit=ten")) == [
        {"at": "/query/limit", "problem": "must be an integer"}]


def test_a_path_parameter_refined_by_its_schema(shop):
    srv, _ = shop
    assert httpx.get(srv.url + "/api/items/7").json() == {"id": 7, "name": "item 7", "price": 10.5}
    assert problems(httpx.get(srv.url + "/api/items/0")) == [{"at": "/params/id", "problem": "must be >= 1"}]
    assert httpx.get(srv.url + "/api/items/abc").status_code == 404


def test_a_function_step_rejects_with_status_message_and_details(shop):
    srv, _ = shop
    r = httpx.get(srv.url + "/api/items/101")
    assert r.status_code == 404
    assert r.json() == {"error": "no such item", "details": {"id": 101}}


def test_a_recursive_schema_validates_nested_values(shop):
    srv, _ = shop
    tree = {"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}]}
    assert httpx.post(srv.url + "/api/tree", json=tree).json() == {"nodes": 3}
    bad = {"label": "a", "children": [{"label": "b", "children": [{"label": 5}]}]}
    assert problems(httpx.post(srv.url + "/api/tree", json=bad)) == [
        {"at": "/body/children/0/children/0/label", "problem": "must be a string"}]


def test_validation_runs_after_authentication_and_csrf(shop):
    srv, creds = shop
    url = srv.url + "/api/secure/notes"
    assert httpx.post(url, json={}).status_code == 401                       # no token: 401, not 400
    auth = {"authorization": f"Bearer {creds.token}"}
    assert_json_error(httpx.post(url, json={}, headers=auth), 400, "CSRF token missing or invalid")
    with httpx.Client(base_url=srv.url) as client:
        token = client.get("/api/csrf").json()["token"]
        client.cookies.set("csrf", client.cookies.get("csrf"))
        headers = {**auth, "x-csrf-token": token}
        assert problems(client.post("/api/secure/notes", json={}, headers=headers)) == [
            {"at": "/body/text", "problem": "is required"}]
        r = client.post("/api/secure/notes", json={"text": "hi"}, headers=headers)
        assert r.status_code == 201 and r.json() == {"saved": {"text": "hi", "pinned": False}, "by": "ada"}


def test_a_400_keeps_the_cors_headers(shop):
    srv, creds = shop
    r = httpx.post(srv.url + "/api/secure/notes", json={}, headers={"origin": "https://app.example.com"})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"


def test_served_document_is_what_the_cli_prints(shop):
    srv, _ = shop
    served = httpx.get(srv.url + "/api/openapi.json").json()
    ws = str(srv.workspace)
    printed = flowlet("openapi", ws)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == served
    as_yaml = flowlet("openapi", ws, "--yaml")
    assert yaml.safe_load(as_yaml.stdout) == served


def test_openapi_document_is_valid_and_describes_security(shop):
    from openapi_spec_validator import validate
    srv, _ = shop
    doc = httpx.get(srv.url + "/api/openapi.json").json()
    validate(doc)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["users"] == {"type": "http", "scheme": "basic"}
    assert schemes["tokens"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    notes = doc["paths"]["/api/secure/notes"]["post"]
    assert notes["security"] == [{"tokens": ["notes:write"]}]
    assert notes["x-flowlet-scope"] == ["notes:write"] and "notes:write" in notes["description"]
    csrf = [p for p in notes["parameters"] if p["in"] == "header"]
    assert csrf == [{"name": "X-CSRF-TOKEN", "in": "header", "required": True, "schema": {"type": "string"},
                     "description": csrf[0]["description"]}]
    assert notes["x-flowlet-cors"]["domains"] == ["https://app.example.com"]
    item = doc["paths"]["/api/items/{id}"]["get"]
    assert item["parameters"][0]["schema"]["type"] == "integer"
    assert item["parameters"][0]["schema"]["minimum"] == 1
    assert item["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/common/$defs/error"}
    search = {p["name"]: p for p in doc["paths"]["/api/items"]["get"]["parameters"]}
    assert search["limit"]["schema"]["default"] == 10 and search["tag"]["explode"] is True


# ---- output checks ---------------------------------------------------------------------------

def test_check_verifies_literal_bodies_against_output(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": """\
        endpoint:
          method: GET
          path: /a
          output:
            200:
              type: object
              required: [ok]
        respond:
          - when: "'x' in query"
            body: {ok: true}
          - body: {fine: true}
        """})
    r = flowlet("check", str(ws))
    assert r.returncode == 1
    assert f"{ws}/flows/a.yaml:11: error: respond body does not match output.200 at /ok: is required" in r.stderr


def test_dev_logs_a_mismatching_answer_with_its_request_id_and_sends_it_unchanged(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": """\
        endpoint:
          method: GET
          path: /a
          output:
            200:
              type: object
              properties: {n: {type: integer}}
        respond:
          body: {n: "=size(query)"}
        """, "flows/b.yaml": """\
        endpoint:
          method: GET
          path: /b
          output:
            200: {type: object, properties: {n: {type: string}}}
        respond:
          body: {n: "=size(query)"}
        """})
    for args, logged in ((("--dev",), True), ((), False)):
        with run_server(ws, *args) as srv:
            assert httpx.get(srv.url + "/api/a").json() == {"n": 0}
            r = httpx.get(srv.url + "/api/b", headers={"x-request-id": "req-42"})
            assert r.status_code == 200 and r.json() == {"n": 0}
            time.sleep(0.3)
            lines = [json.loads(l) for l in srv.stderr.splitlines() if l.startswith("{")]
            found = [l for l in lines if "does not match output.200" in l.get("msg", "")]
            assert bool(found) is logged
            if logged:
                assert len(found) == 1 and found[0]["request_id"] == "req-42"
                assert "/n must be a string" in found[0]["msg"]


def test_an_unexpected_error_in_a_step_is_a_500_without_internals(tmp_path):
    ws = make_workspace(tmp_path, {
        "functions/f.py": """\
            from flowlet import Reject
            def boom(): raise KeyError("secret-internal-detail")
            def bad_status(): raise Reject(500, "not a choice")
            """,
        "flows/a.yaml": "endpoint: {method: GET, path: /boom}\nsteps:\n  - function: functions.f:boom\n",
        "flows/b.yaml": "endpoint: {method: GET, path: /bad}\nsteps:\n  - function: functions.f:bad_status\n",
    })
    with run_server(ws) as srv:
        for path in ("/api/boom", "/api/bad"):
            r = httpx.get(srv.url + path)
            assert_json_error(r, 500, "internal error")
            assert "secret-internal-detail" not in r.text


@pytest.mark.parametrize("files, where, message", [
    ({"flows/a.yaml": "endpoint:\n  method: POST\n  path: /a\n  input:\n    body: {$ref: schemas/none.yaml}\n"},
     "flows/a.yaml:5", "no such file"),
    ({"flows/a.yaml": "endpoint:\n  method: GET\n  path: /a/{id:int}\n  input:\n    params:\n      properties:\n"
                      "        id: {type: string}\n"}, "flows/a.yaml:7", "int parameter in the path"),
    ({"flows/a.yaml": "endpoint:\n  method: GET\n  path: /a\nrespond:\n  - when: '=true'\n    body: 1\n"},
     "flows/a.yaml:5", "without '='"),
    ({"flows/a.yaml": "endpoint:\n  method: GET\n  path: /a\nrespond:\n  - body: 1\n  - body: 2\n"},
     "flows/a.yaml:6", "never used"),
    ({"schemas/x.yaml": "type: object\nproperties:\n  a: {minimum: ten}\n"}, "schemas/x.yaml:3",
     "invalid JSON Schema"),
    ({"flowlet.yaml": "openapi: {path: /openapi.json}\n",
      "flows/a.yaml": "endpoint:\n  method: GET\n  path: /openapi.json\n"}, "flows/a.yaml:2",
     "serves the OpenAPI document"),
    ({"flows/a.yaml": "endpoint:\n  method: GET\n  path: /a\n  output:\n    600: {type: object}\n"},
     "flows/a.yaml:5", "output keys are HTTP statuses"),
])
def test_contract_mistakes_are_load_errors_with_file_and_line(tmp_path, files, where, message):
    ws = make_workspace(tmp_path, files)
    r = flowlet("check", str(ws))
    assert r.returncode == 1
    line = next((l for l in r.stderr.splitlines() if l.startswith(f"{ws}/{where}: error:")), None)
    assert line is not None and message in line, r.stderr


def test_a_form_body_is_typed_like_a_query_string(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": """\
        endpoint:
          method: POST
          path: /order
          input:
            body:
              type: object
              required: [qty]
              properties:
                qty: {type: integer, minimum: 1}
                gift: {type: boolean, default: false}
        respond:
          body: {double: "=body.qty * 2", gift: "=body.gift"}
        """})
    with run_server(ws) as srv:
        assert httpx.post(srv.url + "/api/order", data={"qty": "3"}).json() == {"double": 6, "gift": False}
        assert httpx.post(srv.url + "/api/order", json={"qty": 4, "gift": True}).json() == {"double": 8, "gift": True}
        assert problems(httpx.post(srv.url + "/api/order", json={"qty": "3"})) == [
            {"at": "/body/qty", "problem": "must be an integer"}]        # JSON is typed already: no conversion
        assert problems(httpx.post(srv.url + "/api/order", data={"qty": "many"})) == [
            {"at": "/body/qty", "problem": "must be an integer"}]
