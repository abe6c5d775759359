"""A compiled JSON Schema and the problems list a client gets when a value breaks it.

jsonschema-rs (Rust) validates: it passes the whole official draft 2020-12 test suite and
checks a ten-field body in well under a microsecond (``bench/validators.py``). Its own
messages quote the input, so problems are worded here from the error kind and the schema:
a reply never echoes more than a short excerpt of what the client sent.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import jsonschema_rs

from flowlet.contracts.schemas import JSONValue, escape_pointer

MAX_PROBLEMS = 10          # a reply lists at most this many problems
EXCERPT = 40               # characters of a client-chosen name shown in a problem
MAX_POINTER = 200          # a deeper pointer is cut (the input's shape is the client's to choose)

_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "object": "an object",
               "array": "an array", "boolean": "a boolean", "null": "null"}


class CompiledSchema:
    """One bundled schema compiled once; ``is_valid`` is the request-time fast path."""

    __slots__ = ("schema", "_validator", "_is_valid")

    def __init__(self, schema: JSONValue):
        self.schema = schema
        # Formats are checked (an author writing `format: email` means it); nothing is fetched.
        self._validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True,
                                                             retriever=_no_remote)
        self._is_valid = self._validator.is_valid

    def is_valid(self, value: Any) -> bool:
        try:
            return self._is_valid(value)
        except ValueError:      # a key that is not valid Unicode (a lone surrogate from a \ud800 escape)
            return False

    def problems(self, value: Any, root: str, limit: int = MAX_PROBLEMS) -> list[dict[str, str]]:
        """Up to ``limit`` problems, each ``{"at": JSON pointer under root, "problem": text}``."""
        out: list[dict[str, str]] = []
        try:
            for at, text in self._explain(value, root):
                out.append({"at": at if len(at) <= MAX_POINTER else at[: MAX_POINTER - 1] + "…",
                            "problem": text})
                if len(out) >= limit:
                    break
        except ValueError:
            out = [{"at": root, "problem": "holds text that is not valid Unicode"}]
        return out

    def _explain(self, value: Any, root: str) -> Iterator[tuple[str, str]]:
        for err in self._validator.iter_errors(value):
            at = root + "".join("/" + escape_pointer(p) for p in err.instance_path)
            kind = err.kind.name
            detail = err.kind.as_dict()
            if kind == "required":
                yield at + "/" + escape_pointer(_cut(str(detail.get("property", "")))), "is required"
            elif kind in ("additionalProperties", "unevaluatedProperties"):
                for name in detail.get("unexpected", []):
                    yield at + "/" + escape_pointer(_cut(str(name))), "is not allowed"
            else:
                yield at, describe(kind, detail)


def describe(kind: str, d: dict) -> str:
    """A short message for one error kind; values shown come from the schema, not the input."""
    limit = d.get("limit")
    if kind == "type":
        types = list(d.get("types", []))
        return "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    messages = {
        "minimum": f"must be >= {_show(limit)}", "maximum": f"must be <= {_show(limit)}",
        "exclusiveMinimum": f"must be > {_show(limit)}", "exclusiveMaximum": f"must be < {_show(limit)}",
        "multipleOf": f"must be a multiple of {_show(d.get('multiple_of'))}",
        "minLength": f"must be at least {_count(limit, 'character')} long",
        "maxLength": f"must be at most {_count(limit, 'character')} long",
        "minItems": f"must have at least {_count(limit, 'item')}",
        "maxItems": f"must have at most {_count(limit, 'item')}",
        "minProperties": f"must have at least {_count(limit, 'property', 'properties')}",
        "maxProperties": f"must have at most {_count(limit, 'property', 'properties')}",
        "uniqueItems": "must not contain duplicate items",
        "contains": "must contain a matching item",
        "enum": "must be one of " + _show_list(d.get("options", [])),
        "const": f"must be {_show(d.get('expected_value'))}",
        "pattern": f"must match the pattern {_show(d.get('pattern'))}",
        "format": f"must be a valid {d.get('format')}",
        "anyOf": "must match at least one of the allowed forms",
        "oneOf": "must match exactly one of the allowed forms",
        "oneOfMultipleValid": "must match exactly one of the allowed forms, matches several",
        "oneOfNotValid": "must match exactly one of the allowed forms",
        "not": "is not allowed (matches a form the schema excludes)",
        "falseSchema": "is not allowed",
        "propertyNames": "has a property name that is not allowed",
        "unevaluatedItems": "has items that are not allowed",
        "additionalItems": "has items that are not allowed",
        "dependentRequired": "is missing a property that another one requires",
    }
    return messages.get(kind, "is invalid")


def _count(n: Any, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return _cut(text)


def _show_list(values: list) -> str:
    return _cut(", ".join(json.dumps(v, ensure_ascii=False) for v in values), 120)


def _cut(text: str, n: int = EXCERPT) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _no_remote(uri: str) -> JSONValue:
    # Every reference was rewritten to a local one at load; nothing is ever fetched.
    raise ValueError(f"remote references are not allowed: {uri}")
