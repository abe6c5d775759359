"""JSON Schemas of a workspace: files under the workspace root, ``$ref`` resolution, bundling.

Every ``$ref`` that is not a local ``#/pointer`` names a file relative to the workspace root
(``schemas/user.yaml`` or ``schemas/user.yaml#/$defs/address``), from a flow and from inside
a schema file alike. A schema is *bundled* at load: each file it reaches is copied under one
key and every reference rewritten to point there, so the validator and the OpenAPI document
never resolve a file or a URL at request time. Errors name the FILE:LINE of the offending
value.
"""

from __future__ import annotations

import datetime as _dt
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from flowlet.errors import ConfigError
from flowlet.source import YList, YMap, load_yaml

JSONValue = Any          # None | bool | int | float | str | list | dict: JSON as Python values
SCHEMA_SUFFIXES = (".yaml", ".yml", ".json")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
# A reference target: (file relative to the root, or None for the schema being bundled; fragment).
Target = Callable[[str | None, str], str]


@dataclass(frozen=True)
class Bundle:
    """One schema with everything it references: ``schema`` is self-contained JSON."""

    schema: JSONValue
    files: tuple[str, ...]                 # workspace files it reaches, in first-reached order
    source: YMap | YList | bool | None     # the YAML it came from, to locate errors


def escape_pointer(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer(parts: Iterable[str | int]) -> str:
    return "".join("/" + escape_pointer(p) for p in parts)


def plain(value: Any) -> JSONValue:
    """YAML-loaded values as plain JSON values (dates become ISO strings, keys strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return value


class SchemaFiles:
    """The workspace's schema files, each read and checked once, shared by every flow."""

    def __init__(self, root: Path, display: Callable[[str], str] = lambda rel: rel):
        self.root = Path(root)
        self.display = display           # how a file name is shown in errors
        self.docs: dict[str, YMap | YList | bool] = {}

    # ---- reading ------------------------------------------------------------------------

    def document(self, rel: str, where: tuple[str | None, int]) -> YMap | bool:
        """The parsed file ``rel`` (normalised, relative to the root)."""
        if rel in self.docs:
            return self.docs[rel]      # type: ignore[return-value]
        path = self.root / rel
        if not rel.endswith(SCHEMA_SUFFIXES):
            raise ConfigError(f"$ref {rel!r}: a schema file ends in .yaml, .yml or .json", *where)
        if not path.is_file():
            raise ConfigError(f"$ref {rel!r}: no such file in the workspace", *where)
        name = self.display(rel)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read schema file: {exc}", name, 1) from None
        doc = load_yaml(text, name)      # JSON is YAML: one parser, lines for both
        if not isinstance(doc, (YMap, bool)):
            raise ConfigError("a schema file holds one JSON Schema (a mapping, or true/false)", name, 1)
        self.docs[rel] = doc
        return doc

    def check_unused(self) -> list[ConfigError]:
        """Schema files under ``schemas/`` that no flow reached are still checked."""
        from flowlet.contracts.validate import CompiledSchema
        errors = []
        folder = self.root / "schemas"
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            rel = path.relative_to(self.root).as_posix()
            if not path.is_file() or not rel.endswith(SCHEMA_SUFFIXES) or rel in self.docs:
                continue
            try:
                where = (self.display(rel), 1)
                bundle = self.bundle({"$ref": rel}, where)
                try:
                    CompiledSchema(bundle.schema)
                except Exception as exc:
                    message = str(getattr(exc, "message", None) or exc).split("\n", 1)[0]
                    raise ConfigError(f"invalid JSON Schema: {message}",
                                      *self.locate(bundle, list(getattr(exc, "instance_path", []) or []), where))
            except ConfigError as exc:
                errors.append(exc)
        return errors

    # ---- bundling -----------------------------------------------------------------------

    def bundle(self, raw: Any, where: tuple[str | None, int], defs_key: str = "$defs") -> Bundle:
        """``raw`` (a schema written in a flow) with every file it reaches under ``$defs``."""
        reached: dict[str, JSONValue] = {}
        target = lambda rel, frag: "#/" + escape_pointer(defs_key) + "/" + escape_pointer(rel) + frag if rel \
            else "#" + frag
        schema = self.rewrite(raw, None, where, target, reached)
        if reached:
            if not isinstance(schema, dict):
                raise ConfigError("a schema with $ref must be a mapping", *where)
            defs = dict(schema.get(defs_key) or {})
            clash = sorted(set(defs) & set(reached))
            if clash:
                raise ConfigError(f"{defs_key} name {clash[0]!r} is reserved for the file of that name", *where)
            schema = {**schema, defs_key: {**defs, **reached}}
        return Bundle(schema, tuple(reached), raw)

    def rewrite(self, node: Any, current: str | None, where: tuple[str | None, int], target: Target,
                reached: dict[str, JSONValue]) -> JSONValue:
        """A plain copy of ``node`` with references rewritten by ``target``; files reached are
        rewritten too and collected in ``reached`` (cycles are fine: a file is added once)."""
        if isinstance(node, YMap):
            where = node.where()
        if isinstance(node, dict):
            out: dict[str, JSONValue] = {}
            for key, value in node.items():
                at = node.where(key) if isinstance(node, YMap) else where
                key = str(key)
                if key == "$ref" and isinstance(value, str):
                    out[key] = self._reference(value, current, at, target, reached)
                elif key == "$id":
                    raise ConfigError("$id is not supported here: schemas are named by their file path "
                                      "(for example $ref: schemas/user.yaml)", *at)
                elif key == "$schema" and value != DRAFT_2020_12:
                    raise ConfigError(f"$schema must be {DRAFT_2020_12} (or left out)", *at)
                else:
                    out[key] = self.rewrite(value, current, at, target, reached)
            return out
        if isinstance(node, list):
            return [self.rewrite(v, current, node.where(i) if isinstance(node, YList) else where, target, reached)
                    for i, v in enumerate(node)]
        return plain(node)

    def _reference(self, ref: str, current: str | None, where: tuple[str | None, int], target: Target,
                   reached: dict[str, JSONValue]) -> str:
        path, _, frag = ref.partition("#")
        frag = unquote(frag)
        if frag and not frag.startswith("/"):
            raise ConfigError(f"$ref {ref!r}: after '#' write a JSON pointer such as #/$defs/NAME", *where)
        if not path:
            if current is None and frag:
                self._pointer_target(None, frag, ref, where)
            return target(current, frag)
        rel = self._relative(path, ref, where)
        doc = self.document(rel, where)
        if rel not in reached:
            reached[rel] = True       # placeholder first: a file that refers to itself stops here
            reached[rel] = self.rewrite(doc, rel, (self.display(rel), 1), target, reached)
        if frag:
            self._pointer_target(self.docs[rel], frag, ref, where)
        return target(rel, frag)

    def _relative(self, path: str, ref: str, where: tuple[str | None, int]) -> str:
        if "://" in path or path.startswith(("/", "\\")) or ":" in path.split("/", 1)[0]:
            raise ConfigError(f"$ref {ref!r}: refer to a file of the workspace by its path from the "
                              f"workspace folder, such as schemas/user.yaml", *where)
        rel = posixpath.normpath(unquote(path))
        if rel.startswith("../") or rel == "..":
            raise ConfigError(f"$ref {ref!r} leaves the workspace folder", *where)
        return rel

    def _pointer_target(self, doc: Any, frag: str, ref: str, where: tuple[str | None, int]) -> None:
        """A pointer into a file must exist (pointers into the flow's own schema are checked by
        the validator when it compiles)."""
        if doc is None:
            return
        node = doc
        for raw in frag.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise ConfigError(f"$ref {ref!r}: {frag} does not exist in that file", *where)

    # ---- locating errors in a bundle -------------------------------------------------------

    def locate(self, bundle: Bundle, path: list[str | int], where: tuple[str | None, int],
               defs_key: str = "$defs") -> tuple[str | None, int]:
        """FILE:LINE of the value at ``path`` inside a bundled schema."""
        node: Any = bundle.source
        if len(path) >= 2 and path[0] == defs_key and path[1] in bundle.files:
            rel = str(path[1])
            node, path = self.docs[rel], path[2:]
            where = node.where() if isinstance(node, YMap) else (self.display(rel), 1)
        for part in path:
            if isinstance(node, YMap) and part in node:
                where, node = node.where(part), node[part]
            elif isinstance(node, YList) and isinstance(part, int) and part < len(node):
                where, node = node.where(part), node[part]
            else:
                break
        return where


def dumps(schema: JSONValue) -> str:
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
