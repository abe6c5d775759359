"""The strict JSON decoder for everything a client sends: request bodies, token headers and
claims, fetched key sets.

Python's ``json`` accepts more than JSON: ``NaN``/``Infinity``, integers of any length (whose
conversion costs quadratic time), numbers that overflow to ``inf``, and ``\\ud800`` escapes
that decode to a lone surrogate, a str that cannot be encoded again and so fails far from
where it came in. :class:`StrictJSON` refuses all of them with a ValueError; duplicate keys
and deep nesting are refused where the caller asks.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate member {key!r}")
        obj[key] = value
    return obj


def _depth(text: str, limit: int) -> int:
    """How deep ``text`` nests (0 when it plainly cannot pass ``limit``): strings are skipped."""
    if text.count("{") + text.count("[") <= limit:
        return 0
    depth = deepest = 0
    for ch in _STRINGS.sub("", text):
        if ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
    return deepest


class StrictJSON:
    """A JSON decoder built once per use. ``decode`` raises ValueError (or RecursionError for
    nesting deeper than the interpreter allows when ``max_depth`` is None)."""

    __slots__ = ("_decoder", "_max_depth")

    def __init__(self, *, max_int_digits: int, int64: bool = False, unique_keys: bool = False,
                 max_depth: int | None = None):
        def parse_int(text: str) -> int:
            if len(text) - text.startswith("-") > max_int_digits:
                raise ValueError("integer out of range")
            value = int(text)
            if int64 and not -(2**63) <= value < 2**63:
                raise ValueError("integer out of range")
            return value

        self._decoder = json.JSONDecoder(object_pairs_hook=_unique_keys if unique_keys else None,
                                         parse_int=parse_int, parse_float=_finite_float,
                                         parse_constant=_reject_constant)
        self._max_depth = max_depth

    def decode(self, text: str) -> Any:
        if self._max_depth is not None and _depth(text, self._max_depth) > self._max_depth:
            raise ValueError("nested too deeply")
        value = self._decoder.decode(text)
        # Only a \uD800-\uDFFF escape can make a surrogate (UTF-8 input cannot hold one);
        # encoding the value again finds one that is not half of a pair.
        if "\\ud" in text or "\\uD" in text:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
