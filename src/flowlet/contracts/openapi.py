"""The workspace as an OpenAPI 3.1 document (``flowlet openapi``, ``openapi: {path: ...}``).

Built once at load from each endpoint's compiled settings: typed path parameters, the
``input`` schemas (query and headers as parameters, the body as a JSON request body), the
``output`` schemas, Flowlet's error shapes, the security schemes (Basic, JWT bearer), the CSRF
header and cookie as required parameters, and the CORS answer as ``x-flowlet-cors``. Schema
files become ``components/schemas`` entries that every reference points to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Mapping

from flowlet.contracts.coerce import properties, resolve
from flowlet.contracts.contract import InputContract, OutputContract
from flowlet.contracts.schemas import Bundle, JSONValue, SchemaFiles, escape_pointer

_COMPONENT_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_RESERVED_HEADERS = frozenset({"accept", "content-type", "authorization"})   # OpenAPI ignores these
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}

ERROR_SCHEMA: JSONValue = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "details": {}},
}
INVALID_SCHEMA: JSONValue = {
    "type": "object", "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "problems": {"type": "array", "items": {
            "type": "object", "required": ["at", "problem"],
            "properties": {"at": {"type": "string", "description": "JSON pointer under /body, /query, "
                                                                    "/params or /headers"},
                           "problem": {"type": "string"}}}},
    },
}


@dataclass(frozen=True)
class Operation:
    """What the document says about one endpoint (the loader fills it from a compiled route)."""

    method: str                                  # GET, POST, ...
    path: str                                    # full path, api_prefix included, as written
    params: tuple[tuple[str, str], ...]          # (name, "int" | "str") in path order
    file: str
    description: str | None = None
    auth_type: str | None = None                 # "basic" | "jwt" | None
    auth_secret: str | None = None
    scope: Any = None                            # the JSON scope rule
    scope_expr: str | None = None
    csrf_header: str | None = None               # set when the endpoint requires CSRF
    csrf_cookie: str | None = None
    cors: Mapping[str, Any] | None = None
    input: InputContract | None = None
    output: OutputContract | None = None
    statuses: tuple[int, ...] = ()               # literal respond statuses, when known
    extra: Mapping[str, Any] = field(default_factory=dict)


class _Components:
    """Schema files as components; references rewritten to point at them."""

    def __init__(self, files: SchemaFiles):
        self.files = files
        self.names: dict[str, str] = {}          # file -> component name
        self.schemas: dict[str, JSONValue] = {}

    def name_of(self, rel: str) -> str:
        if rel not in self.names:
            base = rel[len("schemas/"):] if rel.startswith("schemas/") else rel
            base = _COMPONENT_CHARS.sub("_", base.rsplit(".", 1)[0].replace("/", "."))
            name, n = base, 2
            while name in self.names.values():
                name, n = f"{base}_{n}", n + 1
            self.names[rel] = name
        return self.names[rel]

    def schema(self, bundle: Bundle, hoist_as: str) -> JSONValue:
        """``bundle``'s schema for the document: inline, or hoisted into components when it
        uses pointers into itself (which must then name its place in the document)."""
        reached: dict[str, JSONValue] = {}
        uses_self = []

        def target(rel: str | None, frag: str) -> str:
            if rel is None:
                uses_self.append(True)
                return "#/components/schemas/" + escape_pointer(hoist_as) + frag
            return "#/components/schemas/" + escape_pointer(self.name_of(rel)) + frag

        where = bundle.source.where() if hasattr(bundle.source, "where") else (None, 1)
        out = self.files.rewrite(bundle.source, None, where, target, reached)
        for rel, schema in reached.items():
            self.schemas[self.name_of(rel)] = schema
        if uses_self:
            self.schemas[hoist_as] = out
            return {"$ref": "#/components/schemas/" + escape_pointer(hoist_as)}
        return out

    def root(self) -> JSONValue:
        return {"components": {"schemas": self.schemas}}


def build_document(title: str, operations: list[Operation], files: SchemaFiles, *,
                   csrf_path: str | None = None, version: str = "1.0.0") -> dict:
    comps = _Components(files)
    paths: dict[str, dict] = {}
    schemes: dict[str, dict] = {}
    used: set[str] = set()
    for op in sorted(operations, key=lambda o: (o.path, o.method)):
        path = re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*):[a-z]+\}", r"{\1}", op.path)
        base = name = _COMPONENT_CHARS.sub("_", f"{op.method.lower()}{op.path}")
        n = 2
        while name in used:               # /a-b and /a_b would otherwise share an operationId
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, name, comps, schemes)
    if csrf_path is not None:
        paths[csrf_path] = {"get": {
            "operationId": "csrfToken", "summary": "A CSRF token (and its cookie) for protected endpoints",
            "responses": {"200": {"description": "a fresh token; the cookie is set with it",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["token"],
                                      "properties": {"token": {"type": "string"}}}}}}}}}
    comps.schemas.setdefault("Error", ERROR_SCHEMA)
    comps.schemas.setdefault("InvalidRequest", INVALID_SCHEMA)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": dict(sorted(comps.schemas.items())), "responses": _error_responses()},
    }
    if schemes:
        doc["components"]["securitySchemes"] = schemes
    return doc


def _operation(op: Operation, name: str, comps: _Components, schemes: dict[str, dict]) -> dict:
    out: dict[str, Any] = {"operationId": name}
    lines = [op.description] if op.description else []
    out["parameters"] = _parameters(op, comps, name)
    if op.input is not None and op.input.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": comps.schema(op.input.bundles["body"], f"{name}.body")}}}
    if op.auth_type is not None:
        scheme = _COMPONENT_CHARS.sub("_", op.auth_secret or op.auth_type)
        schemes[scheme] = ({"type": "http", "scheme": "basic"} if op.auth_type == "basic" else
                           {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        roles = _simple_scopes(op.scope)
        out["security"] = [{scheme: roles}]
        if op.scope is not None:
            out["x-flowlet-scope"] = op.scope
            lines.append(f"Requires scope: {_scope_text(op.scope)}.")
        if op.scope_expr is not None:
            out["x-flowlet-scope"] = {"expr": op.scope_expr}
            lines.append(f"Requires: {op.scope_expr}.")
    if op.cors is not None:
        out["x-flowlet-cors"] = dict(op.cors)
    if lines:
        out["description"] = "\n\n".join(lines)
    out["responses"] = _responses(op, comps, name)
    out["x-flowlet-file"] = op.file
    if not out["parameters"]:
        del out["parameters"]
    out.update(op.extra)
    return out


def _parameters(op: Operation, comps: _Components, name: str) -> list[dict]:
    contract = op.input
    params: list[dict] = []
    declared = _part_properties(contract, "params", comps, name)
    for pname, kind in op.params:
        base = dict(_INT64) if kind == "int" else {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        schema = {**base, **declared.get(pname, {})} if isinstance(declared.get(pname, {}), dict) else base
        params.append({"name": pname, "in": "path", "required": True, "schema": schema})
    for part, where in (("query", "query"), ("headers", "header")):
        props = _part_properties(contract, part, comps, name)
        required = _required(contract, part, comps)
        for pname, schema in props.items():
            if where == "header" and pname.lower() in _RESERVED_HEADERS:
                continue
            entry = {"name": pname, "in": where, "required": pname in required, "schema": schema}
            if where == "query" and isinstance(schema, dict) and "array" in _types(schema):
                entry.update(style="form", explode=True)
            params.append(entry)
    if op.csrf_header is not None:
        params.append({"name": op.csrf_header, "in": "header", "required": True, "schema": {"type": "string"},
                       "description": "the token from GET <api_prefix>/csrf (double submit cookie)"})
        params.append({"name": op.csrf_cookie or "csrf", "in": "cookie", "required": True,
                       "schema": {"type": "string"}, "description": "the cookie GET <api_prefix>/csrf sets"})
    return params


def _part_properties(contract: InputContract | None, part: str, comps: _Components, name: str) -> dict:
    if contract is None or part not in contract.bundles:
        return {}
    schema = comps.schema(contract.bundles[part], f"{name}.{part}")
    return properties(comps.root(), schema)


def _required(contract: InputContract | None, part: str, comps: _Components) -> set[str]:
    if contract is None or part not in contract.bundles:
        return set()
    node = resolve(contract.bundles[part].schema, contract.bundles[part].schema)
    return set(node.get("required", [])) if isinstance(node, dict) else set()


def _types(schema: dict) -> tuple[str, ...]:
    t = schema.get("type")
    return (t,) if isinstance(t, str) else tuple(t or ())


def _responses(op: Operation, comps: _Components, name: str) -> dict:
    out: dict[str, Any] = {}
    outputs = op.output.bundles if op.output is not None else {}
    for status in sorted(set(outputs) | set(op.statuses)):
        entry: dict[str, Any] = {"description": _phrase(status)}
        if status in outputs:
            entry["content"] = {"application/json": {"schema": comps.schema(outputs[status], f"{name}.{status}")}}
        out[str(status)] = entry
    if not out:
        out["default"] = {"description": "the flow's answer"}
    errors = ["400", "500", "504"]
    if op.auth_type is not None:
        errors += ["401", "403", "429"]
    if op.method in ("POST", "PUT", "PATCH", "DELETE"):
        errors.append("413")
    for status in errors:
        out.setdefault(status, {"$ref": f"#/components/responses/E{status}"})
    return dict(sorted(out.items()))


def _error_responses() -> dict:
    out = {}
    for status in (400, 401, 403, 413, 429, 500, 504):
        schema = {"$ref": "#/components/schemas/" + ("InvalidRequest" if status == 400 else "Error")}
        description = _phrase(status) + (" (invalid input lists its problems; a refused CSRF token is "
                                         "a plain error)" if status == 400 else "")
        out[f"E{status}"] = {"description": description, "content": {"application/json": {"schema": schema}}}
    return out


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"status {status}"


def _simple_scopes(rule: Any) -> list[str]:
    """A rule that needs all of some scopes lists them as the requirement's roles."""
    if isinstance(rule, str):
        return [rule]
    if isinstance(rule, list) and all(isinstance(s, str) for s in rule):
        return list(rule)
    if isinstance(rule, dict) and list(rule) == ["all"] and all(isinstance(s, str) for s in rule["all"]):
        return list(rule["all"])
    return []


def _scope_text(rule: Any) -> str:
    if isinstance(rule, str):
        return rule
    if isinstance(rule, list):
        return " and ".join(_scope_text(r) for r in rule)
    if isinstance(rule, dict):
        (kind, items), = rule.items()
        joined = (" and " if kind == "all" else " or ").join(_scope_text(r) for r in items)
        return f"({joined})"
    return str(rule)
