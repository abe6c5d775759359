#!/usr/bin/env python3
"""Which JSON Schema validator should Flowlet use? jsonschema-rs against fastjsonschema.

    python bench/validators.py PATH/TO/JSON-Schema-Test-Suite [--number 200000]

1. Correctness: every test of the official suite's draft 2020-12 folder (the required ones,
   not ``optional/``), with ``remotes/`` served to the validators' reference loaders. A schema
   a validator refuses to compile counts every test of its group as failed.
2. Speed: microseconds per validation of a body of ten fields (valid), the cost of turning an
   invalid one into error details, and the compile time.

The suite is read from the path given; it is not part of this repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import jsonschema_rs

REMOTE_BASE = "http://localhost:1234/"

BODY_SCHEMA = {
    "type": "object",
    "required": ["name", "email", "age", "country", "plan"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "email": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "country": {"type": "string", "enum": ["DE", "FR", "US", "GB", "JP"]},
        "plan": {"type": "string", "enum": ["free", "pro", "team"]},
        "seats": {"type": "integer", "minimum": 1, "default": 1},
        "newsletter": {"type": "boolean"},
        "score": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city"]},
    },
}
BODY = {"name": "Ada Lovelace", "email": "ada@example.com", "age": 36, "country": "GB", "plan": "pro",
        "seats": 3, "newsletter": True, "score": 9.5, "tags": ["math", "engines"],
        "address": {"city": "London", "zip": "W1"}}
BAD_BODY = {**BODY, "age": "old", "plan": "gold", "extra": 1}


def load_remote(root: Path, uri: str) -> Any:
    if not uri.startswith(REMOTE_BASE):
        raise ValueError(f"no remote {uri}")
    return json.loads((root / "remotes" / uri[len(REMOTE_BASE):].split("#")[0]).read_text())


def make_rs(root: Path) -> Callable[[dict], Callable[[Any], bool]]:
    def compile_(schema: Any) -> Callable[[Any], bool]:
        return jsonschema_rs.Draft202012Validator(schema, retriever=lambda uri: load_remote(root, uri)).is_valid
    return compile_


def make_fast(root: Path) -> Callable[[dict], Callable[[Any], bool]]:
    handlers = {"http": lambda uri: load_remote(root, uri)}

    def compile_(schema: Any) -> Callable[[Any], bool]:
        validate = fastjsonschema.compile(schema, handlers=handlers, use_default=False)

        def is_valid(instance: Any) -> bool:
            try:
                validate(instance)
                return True
            except fastjsonschema.JsonSchemaValueException:
                return False
        return is_valid
    return compile_


def run_suite(root: Path, compile_: Callable) -> tuple[int, int, int]:
    """(passed, total, groups that did not compile) over the required draft 2020-12 tests."""
    passed = total = uncompiled = 0
    for path in sorted((root / "tests" / "draft2020-12").glob("*.json")):
        for group in json.loads(path.read_text()):
            tests = group["tests"]
            total += len(tests)
            try:
                is_valid = compile_(group["schema"])
            except Exception:
                uncompiled += 1
                continue
            for test in tests:
                try:
                    ok = is_valid(test["data"]) == test["valid"]
                except Exception:
                    ok = False
                passed += ok
    return passed, total, uncompiled


def per_call_us(fn: Callable[[], Any], number: int) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=5))
    return best / number * 1e6


def speed(number: int) -> dict[str, dict[str, float]]:
    rs = jsonschema_rs.Draft202012Validator(BODY_SCHEMA)
    fast = fastjsonschema.compile(BODY_SCHEMA, use_default=False)

    def fast_errors() -> Any:
        try:
            fast(BAD_BODY)
        except fastjsonschema.JsonSchemaValueException as exc:
            return exc.message
    return {
        "jsonschema-rs": {
            "valid_us": per_call_us(lambda: rs.is_valid(BODY), number),
            "invalid_errors_us": per_call_us(lambda: list(rs.iter_errors(BAD_BODY)), number // 10),
            "compile_us": per_call_us(lambda: jsonschema_rs.Draft202012Validator(BODY_SCHEMA), 200),
        },
        "fastjsonschema": {
            "valid_us": per_call_us(lambda: fast(BODY), number),
            "invalid_errors_us": per_call_us(fast_errors, number // 10),
            "compile_us": per_call_us(lambda: fastjsonschema.compile(BODY_SCHEMA, use_default=False), 20),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("suite", type=Path, help="a checkout of JSON-Schema-Test-Suite (has tests/ and remotes/)")
    parser.add_argument("--number", type=int, default=100000, help="validations per timing loop")
    args = parser.parse_args()
    if not (args.suite / "tests" / "draft2020-12").is_dir():
        print(f"error: {args.suite} has no tests/draft2020-12", file=sys.stderr)
        return 1
    print("JSON-Schema-Test-Suite, draft 2020-12 (required tests):")
    for name, factory in (("jsonschema-rs", make_rs), ("fastjsonschema", make_fast)):
        passed, total, uncompiled = run_suite(args.suite, factory(args.suite))
        print(f"  {name:15} {passed}/{total} passed ({passed / total:.1%}); "
              f"{uncompiled} schema groups did not compile")
    print(f"\nA body of ten fields (microseconds, best of 5 loops):")
    for name, row in speed(args.number).items():
        print(f"  {name:15} valid {row['valid_us']:.2f} us/validation; invalid with error details "
              f"{row['invalid_errors_us']:.2f} us; compile {row['compile_us']:.0f} us")
    rs = jsonschema_rs.Draft202012Validator(BODY_SCHEMA)
    print("\nError details for the invalid body:")
    for err in rs.iter_errors(BAD_BODY):
        print(f"  jsonschema-rs   at {err.instance_path}: {err.message}")
    try:
        fastjsonschema.compile(BODY_SCHEMA)(BAD_BODY)
    except fastjsonschema.JsonSchemaValueException as exc:
        print(f"  fastjsonschema  (first error only) {exc.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
