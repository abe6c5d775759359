"""Contracts without a server: schema files and $ref, load errors with FILE:LINE, problems,
typed query and header values, defaults."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from flowlet.contracts.contract import (InvalidRequest, compile_input, compile_output, parse_input,
                                        parse_output)
from flowlet.contracts.schemas import SchemaFiles
from flowlet.errors import ConfigError
from flowlet.source import load_yaml


class FakeRequest:
    def __init__(self, query: str = "", headers: dict | None = None):
        from urllib.parse import parse_qsl
        self.query_string = query.encode()
        self.query = dict(parse_qsl(query, keep_blank_values=True))
        self.headers = headers or {}

    def header_map(self) -> dict:
        return self.headers


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


def contract(root: Path, text: str, params: dict | None = None):
    doc = load_yaml(textwrap.dedent(text), "flows/x.yaml")
    return compile_input(parse_input(doc["input"]), SchemaFiles(root), params or {})


def body_after(c, body):
    """The body the flow sees: a body-only contract fills defaults in place and returns None."""
    inputs = c.check(FakeRequest(), {}, body)
    return body if inputs is None else inputs.body


def problems_of(c, *, body=None, query="", headers=None, params=None) -> list[dict]:
    with pytest.raises(InvalidRequest) as info:
        c.check(FakeRequest(query, headers), params or {}, body)
    assert info.value.status == 400
    payload = json.loads(info.value.body)
    assert payload["error"] == "invalid request"
    return payload["problems"]


ADD = """\
    input:
      body:
        type: object
        required: [a, b]
        properties:
          a: {type: number}
          b: {type: number}
    """


def test_a_wrong_type_is_reported_at_its_pointer(tmp_path):
    c = contract(tmp_path, ADD)
    assert problems_of(c, body={"a": "x", "b": 3}) == [{"at": "/body/a", "problem": "must be a number"}]


def test_a_missing_property_is_reported_at_its_pointer(tmp_path):
    c = contract(tmp_path, ADD)
    assert problems_of(c, body={"a": 2}) == [{"at": "/body/b", "problem": "is required"}]


def test_an_empty_body_is_not_an_object(tmp_path):
    c = contract(tmp_path, ADD)
    assert problems_of(c, body=None) == [{"at": "/body", "problem": "must be an object"}]


def test_a_valid_body_passes_unchanged(tmp_path):
    c = contract(tmp_path, ADD)
    assert body_after(c, {"a": 1, "b": 2.5}) == {"a": 1, "b": 2.5}


def test_problems_are_capped_and_never_echo_long_input(tmp_path):
    c = contract(tmp_path, """\
        input:
          body:
            type: object
            additionalProperties: false
            properties:
              s: {type: integer}
        """)
    body = {("k" * 500) + str(i): i for i in range(50)}
    body["s"] = "y" * 10000
    found = problems_of(c, body=body)
    assert len(found) == 10
    text = json.dumps(found)
    assert "y" * 50 not in text and "k" * 50 not in text


def test_query_values_are_typed_and_defaults_filled(tmp_path):
    c = contract(tmp_path, """\
        input:
          query:
            type: object
            properties:
              limit: {type: integer, minimum: 1, default: 10}
              exact: {type: boolean, default: false}
              ratio: {type: number}
              tag: {type: array, items: {type: integer}}
              name: {type: string}
        """)
    got = c.check(FakeRequest("ratio=0.5&tag=1&tag=2&name=007"), {}, None).query
    assert got == {"limit": 10, "exact": False, "ratio": 0.5, "tag": [1, 2], "name": "007"}
    assert c.check(FakeRequest("limit=3&exact=true"), {}, None).query["limit"] == 3
    assert problems_of(c, query="limit=abc") == [{"at": "/query/limit", "problem": "must be an integer"}]
    assert problems_of(c, query="limit=0") == [{"at": "/query/limit", "problem": "must be >= 1"}]


def test_header_values_are_typed(tmp_path):
    c = contract(tmp_path, """\
        input:
          headers:
            type: object
            required: [x-count]
            properties:
              x-count: {type: integer, maximum: 5}
        """)
    assert c.check(FakeRequest(headers={"x-count": "4", "host": "h"}), {}, None).headers["x-count"] == 4
    assert problems_of(c, headers={"host": "h"}) == [{"at": "/headers/x-count", "problem": "is required"}]
    assert problems_of(c, headers={"x-count": "9"}) == [{"at": "/headers/x-count", "problem": "must be <= 5"}]


def test_header_names_in_schemas_must_be_lower_case(tmp_path):
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, """\
            input:
              headers:
                properties:
                  X-Count: {type: integer}
            """)
    assert (info.value.file, info.value.line) == ("flows/x.yaml", 4)
    assert "lower-case" in info.value.message


def test_nested_body_defaults_are_filled_and_copied(tmp_path):
    c = contract(tmp_path, """\
        input:
          body:
            type: object
            properties:
              opts:
                type: object
                default: {}
                properties:
                  tags: {type: array, default: []}
        """)
    first = body_after(c, {"opts": {}})
    first["opts"]["tags"].append("x")
    assert body_after(c, {"opts": {}}) == {"opts": {"tags": []}}
    assert body_after(c, {}) == {"opts": {"tags": []}}   # a filled-in object gets its own defaults


def test_refs_resolve_against_the_workspace_root_in_flows_and_files(tmp_path):
    write(tmp_path, {
        "schemas/order.yaml": """\
            type: object
            required: [item, address]
            properties:
              item: {type: string}
              address: {$ref: "schemas/address.yaml"}
              next: {$ref: "schemas/order.yaml"}
            """,
        "schemas/address.yaml": """\
            type: object
            required: [city]
            properties:
              city: {$ref: "#/$defs/city"}
            $defs:
              city: {type: string, minLength: 2}
            """,
    })
    c = contract(tmp_path, """\
        input:
          body: {$ref: "schemas/order.yaml"}
        """)
    ok = {"item": "tea", "address": {"city": "Oslo"}, "next": {"item": "x", "address": {"city": "Rome"}}}
    assert body_after(c, ok) == ok
    assert problems_of(c, body={"item": "tea", "address": {"city": "O"}}) == [
        {"at": "/body/address/city", "problem": "must be at least 2 characters long"}]


@pytest.mark.parametrize("ref, message", [
    ("schemas/missing.yaml", "no such file"),
    ("../outside.yaml", "leaves the workspace"),
    ("https://example.com/s.json", "by its path"),
    ("schemas/a.yaml#/$defs/nope", "does not exist"),
    ("schemas/a.yaml#anchor", "JSON pointer"),
])
def test_a_bad_ref_is_a_load_error_at_its_line(tmp_path, ref, message):
    write(tmp_path, {"schemas/a.yaml": "type: string\n"})
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, f"""\
            input:
              body:
                type: object
                properties:
                  a: {{$ref: "{ref}"}}
            """)
    assert (info.value.file, info.value.line) == ("flows/x.yaml", 5)
    assert message in info.value.message


def test_a_bad_schema_in_a_file_names_that_file_and_line(tmp_path):
    write(tmp_path, {"schemas/a.yaml": "type: object\nproperties:\n  n: {type: integr}\n"})
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, "input:\n  body: {$ref: schemas/a.yaml}\n")
    assert (info.value.file, info.value.line) == ("schemas/a.yaml", 3)
    assert "invalid JSON Schema" in info.value.message


def test_a_bad_pattern_is_a_load_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, "input:\n  body:\n    type: string\n    pattern: '(('\n")
    assert (info.value.file, info.value.line) == ("flows/x.yaml", 4)


def test_params_may_refine_but_not_contradict_the_path(tmp_path):
    ok = contract(tmp_path, "input:\n  params:\n    properties:\n      id: {type: integer, minimum: 1}\n",
                  {"id": "int"})
    assert problems_of(ok, params={"id": 0}) == [{"at": "/params/id", "problem": "must be >= 1"}]
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, "input:\n  params:\n    properties:\n      id: {type: string}\n", {"id": "int"})
    assert info.value.line == 4 and "int parameter in the path" in info.value.message
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, "input:\n  params:\n    properties:\n      other: {type: string}\n", {"id": "int"})
    assert "no parameter 'other'" in info.value.message


def test_unknown_input_keys_are_errors(tmp_path):
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, "input:\n  bdy: {type: object}\n")
    assert "did you mean 'body'" in info.value.message


def test_output_schemas_report_problems_by_status(tmp_path):
    doc = load_yaml("output:\n  200:\n    type: object\n    required: [sum]\n", "flows/x.yaml")
    out = compile_output(parse_output(doc["output"]), SchemaFiles(tmp_path))
    assert out.problems(200, {"sum": 1}) == []
    assert out.problems(200, {}) == [{"at": "/sum", "problem": "is required"}]
    assert out.problems(404, {}) == []


def test_recursive_schemas_fill_defaults_at_every_level(tmp_path):
    c = contract(tmp_path, """\
        input:
          body:
            $ref: "#/$defs/node"
            $defs:
              node:
                type: object
                properties:
                  left: {$ref: "#/$defs/node"}
                  right: {$ref: "#/$defs/node"}
                  weight: {type: integer, default: 1}
        """)
    got = body_after(c, {"left": {"right": {}}})
    assert got == {"weight": 1, "left": {"weight": 1, "right": {"weight": 1}}}


def test_a_deep_pointer_is_cut_short(tmp_path):
    c = contract(tmp_path, """\
        input:
          body:
            $ref: "#/$defs/t"
            $defs:
              t: {type: object, properties: {c: {$ref: "#/$defs/t"}, n: {type: integer}}}
        """)
    value: dict = {"n": "x"}
    for _ in range(500):
        value = {"c": value}
    (problem,) = problems_of(c, body=value)
    assert len(problem["at"]) == 200 and problem["at"].startswith("/body/c/c/")


def test_reject_carries_status_message_and_details_and_survives_pickling():
    import pickle

    from flowlet import Reject
    r = Reject(409, "insufficient funds", {"balance": 3})
    assert (r.status, json.loads(r.body)) == (409, {"error": "insufficient funds", "details": {"balance": 3}})
    again = pickle.loads(pickle.dumps(r))
    assert (again.status, again.body) == (409, r.body)
    assert json.loads(Reject(404, "gone").body) == {"error": "gone"}
    for status in (200, 399, 500, True, "404"):
        with pytest.raises(ValueError):
            Reject(status, "x")


def test_openapi_document_from_operations_is_valid_with_unique_ids(tmp_path):
    from openapi_spec_validator import validate

    from flowlet.contracts.openapi import Operation, build_document
    write(tmp_path, {"schemas/thing.yaml": "type: object\nproperties:\n  n: {type: integer, default: 1}\n"})
    c = contract(tmp_path, """\
        input:
          params: {properties: {id: {maximum: 9}}}
          query: {properties: {tag: {type: array, items: {type: string}}}, required: [tag]}
          body: {$ref: schemas/thing.yaml}
        """, {"id": "int"})
    ops = [Operation("POST", "/api/a-b/{id:int}", (("id", "int"),), "flows/x.yaml:1", input=c,
                     auth_type="jwt", auth_secret="tok", scope={"any": ["a", "b"]}),
           Operation("POST", "/api/a_b", (), "flows/y.yaml:1", auth_type="basic", auth_secret="users",
                     csrf_header="X-CSRF-TOKEN", csrf_cookie="csrf", cors={"allow": "all"}, statuses=(201,))]
    doc = build_document("t", ops, SchemaFiles(tmp_path), csrf_path="/api/csrf")
    validate(doc)
    first, second = doc["paths"]["/api/a-b/{id}"]["post"], doc["paths"]["/api/a_b"]["post"]
    assert first["operationId"] != second["operationId"]
    assert first["parameters"][0] == {"name": "id", "in": "path", "required": True,
                                      "schema": {**first["parameters"][0]["schema"], "type": "integer", "maximum": 9}}
    assert first["parameters"][1]["required"] is True and first["parameters"][1]["explode"] is True
    assert first["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/thing"}
    assert first["security"] == [{"tok": []}] and first["x-flowlet-scope"] == {"any": ["a", "b"]}
    assert "(a or b)" in first["description"]
    assert doc["components"]["securitySchemes"]["users"] == {"type": "http", "scheme": "basic"}
    assert second["x-flowlet-cors"] == {"allow": "all"} and "201" in second["responses"]
    assert {p["in"] for p in second["parameters"]} == {"header", "cookie"}


def test_a_name_that_is_not_valid_unicode_is_a_problem_not_a_crash(tmp_path):
    c = contract(tmp_path, ADD)
    assert problems_of(c, body={"\ud800": 1}) == [{"at": "/body", "problem": "holds text that is not valid Unicode"}]


def test_a_query_parameter_cannot_be_an_object(tmp_path):
    with pytest.raises(ConfigError) as info:
        contract(tmp_path, "input:\n  query:\n    properties:\n      f: {type: object}\n")
    assert info.value.line == 4 and "cannot be an object" in info.value.message
