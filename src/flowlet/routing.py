"""Path patterns compiled into a route table.

Static paths are one dict lookup; paths with parameters walk a segment trie (static child
before ``int`` parameter before ``str`` parameter), so the cost of a lookup depends on the
depth of the path, not on the number of endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar, Union

from flowlet.errors import ConfigError

_SEGMENT_CHARS = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+$")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}$")
# CEL integers are 64-bit: longer digit runs do not match an {x:int} segment (404).
_INT = re.compile(r"^-?[0-9]{1,19}$")
_INT64 = range(-(2**63), 2**63)
CONVERTERS = ("str", "int")
Param = Union[int, str]
E = TypeVar("E")


@dataclass(frozen=True)
class PathPattern:
    text: str                                   # as written, e.g. /user/{id:int}
    shape: str                                  # parameter names erased: /user/{int}
    segments: tuple[tuple[str, str], ...]       # ("static", "user") | ("int", "id") | ("str", "name")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(v for kind, v in self.segments if kind != "static")


def parse_path(text: str, where: tuple[str | None, int]) -> PathPattern:
    """Validate a flow's path (``/user/{id:int}``); errors name FILE:LINE."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise ConfigError(f"path must start with '/': {text!r}", *where)
    if text == "/":
        return PathPattern("/", "/", ())
    if "//" in text or text.endswith("/"):
        raise ConfigError(f"path {text!r} has an empty segment (no '//' and no trailing '/')", *where)
    segments = []
    seen: set[str] = set()
    for raw in text[1:].split("/"):
        if "{" in raw or "}" in raw:
            m = _PARAM.match(raw)
            if not m:
                raise ConfigError(f"bad parameter segment {raw!r} in path {text!r}: write {{name}}, "
                                  f"{{name:str}} or {{name:int}}, alone in its segment", *where)
            name, conv = m.group(1), m.group(2) or "str"
            if conv not in CONVERTERS:
                raise ConfigError(f"unknown parameter type {conv!r} in path {text!r} (use str or int)", *where)
            if name in seen:
                raise ConfigError(f"parameter {name!r} appears twice in path {text!r}", *where)
            seen.add(name)
            segments.append((conv, name))
        else:
            if not _SEGMENT_CHARS.match(raw):
                raise ConfigError(f"bad characters in path segment {raw!r} of {text!r}", *where)
            segments.append(("static", raw))
    shape = "/" + "/".join(v if kind == "static" else "{" + kind + "}" for kind, v in segments)
    return PathPattern(text, shape, tuple(segments))


class _Node(Generic[E]):
    __slots__ = ("static", "int_child", "str_child", "entry", "names")

    def __init__(self) -> None:
        self.static: dict[str, _Node[E]] = {}
        self.int_child: _Node[E] | None = None
        self.str_child: _Node[E] | None = None
        self.entry: E | None = None
        self.names: tuple[str, ...] = ()   # parameter names of the pattern ending here


class RouteTable(Generic[E]):
    """Maps a request path to (entry, params). ``entry`` is whatever the caller attached to a path.

    Filled with ``add`` at load; read with ``exact`` (the one-dict-lookup fast path) and ``match``.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._static: dict[str, E] = {}
        self._root: _Node[E] = _Node()
        self._has_params = False
        # Bound once: the request path calls it for every request.
        self.exact = self._static.get

    def add(self, pattern: PathPattern, entry: E) -> None:
        if not pattern.param_names:
            self._static[self.prefix + pattern.text if pattern.text != "/" else self.prefix + "/"] = entry
            return
        self._has_params = True
        node = self._root
        for kind, value in pattern.segments:
            if kind == "static":
                node = node.static.setdefault(value, _Node())
            elif kind == "int":
                if node.int_child is None:
                    node.int_child = _Node()
                node = node.int_child
            else:
                if node.str_child is None:
                    node.str_child = _Node()
                node = node.str_child
        node.entry = entry
        node.names = pattern.param_names

    def match(self, path: str) -> Iterator[tuple[E, dict[str, Param]]]:
        """Matching entries in priority order (usually one)."""
        entry = self._static.get(path)
        if entry is not None:
            yield entry, {}
        if not self._has_params or not path.startswith(self.prefix + "/"):
            return
        parts = path[len(self.prefix) + 1:].split("/")
        yield from _walk(self._root, parts, 0, [])


def _walk(node: _Node[E], parts: list[str], i: int, values: list[Param]) -> Iterator[tuple[E, dict[str, Param]]]:
    if i == len(parts):
        if node.entry is not None and values:
            yield node.entry, dict(zip(node.names, values))
        return
    seg = parts[i]
    if not seg:
        return
    child = node.static.get(seg)
    if child is not None:
        yield from _walk(child, parts, i + 1, values)
    if node.int_child is not None and _INT.match(seg) and int(seg) in _INT64:
        values.append(int(seg))
        yield from _walk(node.int_child, parts, i + 1, values)
        values.pop()
    if node.str_child is not None:
        values.append(seg)
        yield from _walk(node.str_child, parts, i + 1, values)
        values.pop()

