"""Query and header strings as the types their schema declares, and schema defaults filled in.

Both plans are derived from a bundled schema at load. At request time a conversion that does
not fit leaves the text as it was, so the validator reports it (``must be an integer``).
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Callable

from flowlet.contracts.schemas import JSONValue

_INT = re.compile(r"^-?[0-9]{1,19}$")
_NUMBER = re.compile(r"^-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?$")
_MAX_DEPTH = 32            # how deep default plans follow nested properties (and cycles)
SCALARS = ("integer", "number", "boolean", "null", "string")
Converter = Callable[[str], Any]


def resolve(bundle: JSONValue, node: JSONValue, depth: int = 0) -> JSONValue:
    """``node`` with a local ``$ref`` followed (through chains); other nodes unchanged."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#") \
            and depth < _MAX_DEPTH:
        target: JSONValue = bundle
        for raw in node["$ref"][1:].split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                return node
        node, depth = target, depth + 1
    return node


def properties(bundle: JSONValue, node: JSONValue, depth: int = 0) -> dict[str, JSONValue]:
    """The ``properties`` an object schema declares, through ``$ref`` and ``allOf``."""
    node = resolve(bundle, node)
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return {}
    out: dict[str, JSONValue] = {}
    for part in node.get("allOf", []) if isinstance(node.get("allOf"), list) else []:
        out.update(properties(bundle, part, depth + 1))
    if isinstance(node.get("properties"), dict):
        out.update(node["properties"])
    return out


def types_of(bundle: JSONValue, node: JSONValue) -> tuple[str, ...]:
    """The ``type`` names a schema declares (empty: any), through ``$ref``."""
    node = resolve(bundle, node)
    if not isinstance(node, dict):
        return ()
    t = node.get("type")
    if isinstance(t, str):
        return (t,)
    if isinstance(t, list):
        return tuple(x for x in t if isinstance(x, str))
    if "enum" in node and isinstance(node["enum"], list) or "const" in node:
        values = node["enum"] if "enum" in node else [node["const"]]
        return tuple(dict.fromkeys(_json_type(v) for v in values))
    return ()


def _json_type(v: JSONValue) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), "string")


# ---- text to typed values ------------------------------------------------------------------

def _to_int(text: str) -> int | str:
    return int(text) if _INT.match(text) and -(2**63) <= int(text) < 2**63 else text


def _to_number(text: str) -> int | float | str:
    if _INT.match(text):
        return _to_int(text)
    if _NUMBER.match(text):
        value = float(text)
        return value if math.isfinite(value) else text
    return text


def _to_bool(text: str) -> bool | str:
    return {"true": True, "false": False}.get(text, text)


def _to_null(text: str) -> None | str:
    return None if text in ("", "null") else text


_CONVERT: dict[str, Converter] = {"integer": _to_int, "number": _to_number, "boolean": _to_bool,
                                  "null": _to_null}


def scalar_converter(types: tuple[str, ...]) -> Converter | None:
    """Try each declared type in a fixed order (integer before number before string)."""
    steps = [_CONVERT[t] for t in ("integer", "number", "boolean", "null") if t in types]
    if not steps or (len(steps) == 1 and "string" not in types):
        return steps[0] if steps else None

    def convert(text: str) -> Any:
        for step in steps:
            value = step(text)
            if value is not text:
                return value
        return text
    return convert


class TextPlan:
    """How to type the text values of query parameters or headers.

    ``scalars``: name -> converter; ``arrays``: name -> converter of each item (query
    parameters repeated as ``?tag=a&tag=b``).
    """

    __slots__ = ("scalars", "arrays")

    def __init__(self, scalars: dict[str, Converter], arrays: dict[str, Converter | None]):
        self.scalars = scalars
        self.arrays = arrays

    def apply(self, values: dict[str, str], pairs: Callable[[], list[tuple[str, str]]] | None = None) -> dict:
        out: dict[str, Any] = dict(values)
        for name, convert in self.scalars.items():
            if name in out:
                out[name] = convert(out[name])
        if self.arrays:
            found = pairs() if pairs is not None else list(values.items())
            for name, convert in self.arrays.items():
                items = [v for k, v in found if k == name]
                if items:
                    out[name] = [convert(v) for v in items] if convert else items
        return out


    def apply_in_place(self, values: dict) -> None:
        """A form body: its values typed where they are (repeated names arrive as the last one)."""
        for name, convert in self.scalars.items():
            value = values.get(name)
            if type(value) is str:
                values[name] = convert(value)
        for name, convert in self.arrays.items():
            value = values.get(name)
            if type(value) is str:
                values[name] = [convert(value) if convert else value]


def text_plan(bundle: JSONValue) -> TextPlan:
    scalars: dict[str, Converter] = {}
    arrays: dict[str, Converter | None] = {}
    for name, prop in properties(bundle, bundle).items():
        types = types_of(bundle, prop)
        if "array" in types:
            item = resolve(bundle, prop).get("items") if isinstance(resolve(bundle, prop), dict) else None
            arrays[name] = scalar_converter(types_of(bundle, item)) if item is not None else None
        else:
            convert = scalar_converter(types)
            if convert is not None:
                scalars[name] = convert
    return TextPlan(scalars, arrays)


# ---- defaults -------------------------------------------------------------------------------

class DefaultsPlan:
    """Defaults of an object's properties, and plans for its nested objects (a recursive
    schema gives a cyclic plan; the depth of the value bounds the walk)."""

    __slots__ = ("fill", "nested", "items")

    def __init__(self) -> None:
        self.fill: list[tuple[str, JSONValue, bool]] = []   # (name, default, a container to copy)
        self.nested: dict[str, DefaultsPlan] = {}
        self.items: DefaultsPlan | None = None               # for an array: the plan of each item

    def apply(self, value: JSONValue, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            return                        # deeper than any sane document: leave it as sent
        if isinstance(value, dict):
            for name, default, mutable in self.fill:
                if name not in value:
                    value[name] = copy.deepcopy(default) if mutable else default
            for name, plan in self.nested.items():
                if name in value:
                    plan.apply(value[name], depth + 1)
        elif isinstance(value, list) and self.items is not None:
            for item in value:
                self.items.apply(item, depth + 1)


def defaults_plan(bundle: JSONValue, node: JSONValue | None = None) -> DefaultsPlan | None:
    """None when the schema declares no default anywhere it can be filled in. Each schema node
    gets one plan (memoised by identity), so recursive schemas stay small."""
    plans: dict[int, DefaultsPlan] = {}
    root = _build_plan(bundle, resolve(bundle, bundle if node is None else node), plans)
    useful = {id(p) for p in plans.values() if p.fill}
    changed = True
    while changed:                        # a plan is useful when it, or a plan it reaches, fills
        changed = False
        for plan in plans.values():
            if id(plan) not in useful and (any(id(n) in useful for n in plan.nested.values())
                                           or (plan.items is not None and id(plan.items) in useful)):
                useful.add(id(plan))
                changed = True
    for plan in plans.values():
        plan.nested = {k: n for k, n in plan.nested.items() if id(n) in useful}
        if plan.items is not None and id(plan.items) not in useful:
            plan.items = None
    return root if root is not None and id(root) in useful else None


def _build_plan(bundle: JSONValue, node: JSONValue, plans: dict[int, DefaultsPlan]) -> DefaultsPlan | None:
    if not isinstance(node, dict):
        return None
    if id(node) in plans:
        return plans[id(node)]
    plan = plans[id(node)] = DefaultsPlan()
    for name, prop in properties(bundle, node).items():
        target = resolve(bundle, prop)
        if isinstance(target, dict) and "default" in target:
            plan.fill.append((name, target["default"], isinstance(target["default"], (dict, list))))
        sub = _build_plan(bundle, target, plans)
        if sub is not None:
            plan.nested[name] = sub
    items = node.get("items")
    if isinstance(items, dict):
        plan.items = _build_plan(bundle, resolve(bundle, items), plans)
    return plan
