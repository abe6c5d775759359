"""An endpoint's contract: ``input:`` (body, query, params, headers) and ``output:`` (per status).

``parse_input``/``parse_output`` read the YAML blocks (FILE:LINE errors); ``compile_contract``
bundles and compiles every schema once. On the request path, ``InputContract.check`` types the
query and header text, validates, fills defaults and hands the flow typed values, or raises
:class:`InvalidRequest` (400 with the problems list).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, NamedTuple
from urllib.parse import parse_qsl

from flowlet.contracts.coerce import DefaultsPlan, TextPlan, defaults_plan, properties, resolve, text_plan, types_of
from flowlet.contracts.schemas import Bundle, JSONValue, SchemaFiles
from flowlet.contracts.validate import MAX_PROBLEMS, CompiledSchema
from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.source import YMap, check_keys

PARTS = ("body", "query", "params", "headers")
_PATH_TYPES = {"int": ("integer", "number"), "str": ("string",)}


class InvalidRequest(HTTPError):
    """400 ``{"error": "invalid request", "problems": [...]}``."""

    def __init__(self, problems: list[dict[str, str]]):
        super().__init__(400, "invalid request", stage="input", reason="schema")
        self.problems = problems
        self.body = json.dumps({"error": "invalid request", "problems": problems},
                               separators=(",", ":"), ensure_ascii=False).encode()


class Inputs(NamedTuple):
    """What the flow sees once the input is valid: typed, defaults filled in. ``query`` and
    ``headers`` are None when the contract has no schema for them (the request's own apply)."""

    params: dict
    query: dict | None
    headers: dict | None
    body: JSONValue

    def request_parts(self) -> dict:
        """The typed parts that replace the request's own in the expressions' ``request``."""
        return {k: v for k, v in (("query", self.query), ("headers", self.headers)) if v is not None}


# ---- config models ------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputConfig:
    """``endpoint.input``: the schema written for each part (a YMap, a bool, or absent)."""

    schemas: Mapping[str, YMap | bool]
    where: Mapping[str, tuple[str | None, int]]


@dataclass(frozen=True)
class OutputConfig:
    """``endpoint.output``: status -> the schema written for it."""

    schemas: Mapping[int, YMap | bool]
    where: Mapping[int, tuple[str | None, int]]


def parse_input(raw: YMap) -> InputConfig:
    check_keys(raw, PARTS, "input")
    schemas, where = {}, {}
    for part in PARTS:
        if part in raw and raw[part] is not None:
            _expect_schema(raw, part, f"input.{part}")
            schemas[part], where[part] = raw[part], raw.where(part)
    return InputConfig(schemas, where)


def parse_output(raw: YMap) -> OutputConfig:
    schemas, where = {}, {}
    for key in raw:
        status = key
        if isinstance(key, str) and key.isdigit():
            status = int(key)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise raw.error(f"output keys are HTTP statuses (100-599), got {key!r}", key)
        _expect_schema(raw, key, f"output.{key}")
        schemas[status], where[status] = raw[key], raw.where(key)
    return OutputConfig(schemas, where)


def _expect_schema(m: YMap, key: str | int, what: str) -> None:
    value = m[key]
    if not isinstance(value, (dict, bool)):
        raise m.error(f"{what} must be a JSON Schema (a mapping, or true/false)", key)


# ---- compiled -----------------------------------------------------------------------------------

class Part:
    """One validated part: its compiled schema, text typing plan and defaults plan."""

    __slots__ = ("name", "schema", "text", "defaults")

    def __init__(self, name: str, schema: CompiledSchema, text: TextPlan | None, defaults: DefaultsPlan | None):
        self.name = name
        self.schema = schema
        self.text = text
        self.defaults = defaults


class InputContract:
    """The compiled ``input``: ``check(req, params, body)`` is the request-time stage (after CSRF,
    before the flow). It raises InvalidRequest, or returns the typed Inputs (None when the body,
    filled in place, is all that changed)."""

    __slots__ = ("body", "query", "params", "headers", "bundles", "check", "_body_valid", "_body_defaults",
                 "_form")

    def __init__(self, parts: dict[str, Part], bundles: dict[str, Bundle]):
        self.body = parts.get("body")
        self.query = parts.get("query")
        self.params = parts.get("params")
        self.headers = parts.get("headers")
        self.bundles = bundles            # for OpenAPI
        # The common contract is a body schema alone: a shorter path for it.
        self.check = self.check_body if list(parts) == ["body"] else self.check_all
        if self.body is not None:
            self._body_valid = self.body.schema.is_valid
            self._body_defaults = self.body.defaults
        # A form body is text like a query string: typed the same way when its schema says so.
        self._form = self.body.text if self.body is not None and self.body.text is not None \
            and (self.body.text.scalars or self.body.text.arrays) else None

    def check_body(self, req: Request, params: dict, body: JSONValue) -> None:
        """Defaults are filled into ``body`` itself: nothing else changes, so nothing to return."""
        if self._form is not None and type(body) is dict and _is_form(req):
            self._form.apply_in_place(body)
        if self._body_valid(body):
            if self._body_defaults is not None:
                self._body_defaults.apply(body)
            return None
        raise InvalidRequest(self.body.schema.problems(body, "/body"))

    def check_all(self, req: Request, params: dict, body: JSONValue) -> Inputs:
        """Raises InvalidRequest listing every problem (capped) across the four parts."""
        problems: list[dict[str, str]] = []
        query = headers = None
        if self.params is not None:
            _validate(self.params, params, "/params", problems)
        if self.query is not None:
            query = _validate(self.query, self.query.text.apply(req.query, lambda: _query_pairs(req)), "/query",
                              problems)
        if self.headers is not None:
            headers = _validate(self.headers, self.headers.text.apply(req.header_map()), "/headers", problems)
        if self.body is not None:
            if self._form is not None and type(body) is dict and _is_form(req):
                self._form.apply_in_place(body)
            _validate(self.body, body, "/body", problems)
        if problems:
            raise InvalidRequest(problems[:MAX_PROBLEMS])
        return Inputs(params, query, headers, body)


def _validate(part: Part, value: JSONValue, root: str, problems: list[dict[str, str]]) -> JSONValue:
    """``value`` with its defaults filled in when valid; else its problems are added."""
    if part.schema.is_valid(value):
        if part.defaults is not None:
            part.defaults.apply(value)
    else:
        problems += part.schema.problems(value, root)
    return value


def _is_form(req: Request) -> bool:
    return req.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded")


def _query_pairs(req: Request) -> list[tuple[str, str]]:
    qs = req.query_string                 # bytes under ASGI, str under RSGI
    if isinstance(qs, bytes):
        qs = qs.decode("latin-1")
    return parse_qsl(qs, keep_blank_values=True) if qs else []


class OutputContract:
    """``output``: status -> compiled schema. Checked at load for literal bodies, and on every
    answer under ``serve --dev``."""

    __slots__ = ("schemas", "bundles")

    def __init__(self, schemas: dict[int, CompiledSchema], bundles: dict[int, Bundle]):
        self.schemas = schemas
        self.bundles = bundles

    def problems(self, status: int, body: JSONValue) -> list[dict[str, str]]:
        schema = self.schemas.get(status)
        if schema is None or schema.is_valid(body):
            return []
        return schema.problems(body, "")


def compile_schema(files: SchemaFiles, raw: YMap | bool, where: tuple[str | None, int]) -> tuple[Bundle, CompiledSchema]:
    """Bundle and compile one schema; a bad schema is a ConfigError at its FILE:LINE."""
    bundle = files.bundle(raw, where)
    try:
        return bundle, CompiledSchema(bundle.schema)
    except Exception as exc:    # jsonschema-rs reports a bad schema as a ValidationError
        path = list(getattr(exc, "instance_path", []) or [])
        message = str(getattr(exc, "message", None) or exc).split("\n", 1)[0]
        at = files.locate(bundle, path, where)
        raise ConfigError(f"invalid JSON Schema: {message}", *at) from None


def compile_input(cfg: InputConfig, files: SchemaFiles, path_params: Mapping[str, str]) -> InputContract:
    """``path_params``: name -> ``int`` | ``str`` as the path declares them."""
    parts: dict[str, Part] = {}
    bundles: dict[str, Bundle] = {}
    for name, raw in cfg.schemas.items():
        where = cfg.where[name]
        bundle, compiled = compile_schema(files, raw, where)
        bundles[name] = bundle
        if name != "body":
            _check_object(bundle.schema, name, where)
        if name == "params":
            _check_params(bundle, path_params, files, where)
        if name == "headers":
            for prop in properties(bundle.schema, bundle.schema):
                if prop != prop.lower():
                    raise ConfigError(f"input.headers: header names in schemas are lower-case "
                                      f"({prop!r} -> {prop.lower()!r})", *files.locate(bundle, ["properties", prop], where))
        if name in ("query", "headers"):
            _check_text_values(bundle, name, files, where)
        text = text_plan(bundle.schema) if name in ("query", "headers", "body") else None
        parts[name] = Part(name, compiled, text, defaults_plan(bundle.schema) if name != "params" else None)
    return InputContract(parts, bundles)


def compile_output(cfg: OutputConfig, files: SchemaFiles) -> OutputContract:
    schemas, bundles = {}, {}
    for status, raw in cfg.schemas.items():
        bundles[status], schemas[status] = compile_schema(files, raw, cfg.where[status])
    return OutputContract(schemas, bundles)


def _check_object(schema: JSONValue, name: str, where: tuple[str | None, int]) -> None:
    types = types_of(schema, schema)
    if types and "object" not in types:
        raise ConfigError(f"input.{name} describes an object of named values; its type must be object", *where)


def _check_text_values(bundle: Bundle, part: str, files: SchemaFiles, where: tuple[str | None, int]) -> None:
    """Query parameters and headers are text: an object-typed value could never be sent."""
    for name, prop in properties(bundle.schema, bundle.schema).items():
        if types_of(bundle.schema, prop) == ("object",):
            raise ConfigError(f"input.{part}: {name!r} cannot be an object (values here are text, typed as "
                              f"numbers, booleans or arrays of them)", *files.locate(bundle, ["properties", name], where))


def _check_params(bundle: Bundle, path_params: Mapping[str, str], files: SchemaFiles,
                  where: tuple[str | None, int]) -> None:
    """A params schema may refine the path's parameters, never contradict them."""
    schema = bundle.schema
    for name, prop in properties(schema, schema).items():
        at = files.locate(bundle, ["properties", name], where)
        kind = path_params.get(name)
        if kind is None:
            have = ", ".join(path_params) or "none"
            raise ConfigError(f"input.params: the path has no parameter {name!r} (its parameters: {have})", *at)
        declared = types_of(schema, prop)
        if declared and not set(declared) & set(_PATH_TYPES[kind]):
            hint = f"{{{name}:int}}" if "integer" in declared or "number" in declared else f"{{{name}}}"
            raise ConfigError(f"input.params: {name!r} is {'an int' if kind == 'int' else 'a str'} parameter "
                              f"in the path but the schema says {' or '.join(declared)} (write {hint} in the path)",
                              *at)
    node = resolve(schema, schema)
    for name in (node.get("required", []) if isinstance(node, dict) else []):
        if isinstance(name, str) and name not in path_params:
            raise ConfigError(f"input.params: required parameter {name!r} is not in the path", *where)
