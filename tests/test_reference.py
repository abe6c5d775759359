"""docs/reference.md and the loader agree on every key.

The page has two tables (`flowlet.yaml`, flow files): one row per key, written as a dotted path
(`endpoint.auth.scope`; `steps[].id` for the items of a list; `<name>` for a key the user
chooses), with an Example and a Wrong value (inline YAML) and the Error the wrong value gives.
The page also holds a workspace (`# file:` blocks) that uses every key.

* Every key the loader accepts has a row: while the page's workspace loads, every
  ``check_keys`` call (the loader's list of allowed keys for one mapping) is recorded, and each
  allowed key must be a row.
* Every row is a key the loader accepts: the page's workspace uses it, loads with the row's
  Example in its place, and fails with the row's Error when the Wrong value is put there.

A new key is one new row (and a use in the page's files); nothing here needs to change.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import doccheck
from conftest import ROOT

PAGE = ROOT / "docs" / "reference.md"
SECTIONS = {"flowlet.yaml": "## `flowlet.yaml`", "flow": "## Flow files"}


@dataclass(frozen=True)
class Row:
    kind: str                     # "flowlet.yaml" or "flow"
    key: str                      # dotted path as written
    example: Any
    wrong: Any
    error: str
    line: int

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    def __str__(self) -> str:
        return f"docs/reference.md:{self.line}: {self.key}"


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def _code(cell: str) -> str:
    m = re.fullmatch(r"`(.*)`", cell)
    assert m, f"expected one `code` span, got {cell!r}"
    return m.group(1)


def parse_rows(text: str) -> list[Row]:
    rows: list[Row] = []
    lines = text.split("\n")
    for kind, heading in SECTIONS.items():
        start = lines.index(heading)
        for i in range(start + 1, len(lines)):
            line = lines[i]
            if line.startswith("## "):
                break
            if not line.startswith("| `"):
                continue
            cells = _cells(line)
            assert len(cells) == 6, f"docs/reference.md:{i + 1}: a row has 6 cells, got {len(cells)}"
            key, _type, _default, example, wrong, error = cells
            rows.append(Row(kind, _code(key), yaml.safe_load(_code(example)), yaml.safe_load(_code(wrong)),
                            _code(error), i + 1))
    return rows


TEXT = PAGE.read_text()
ROWS = parse_rows(TEXT)
FILES = doccheck.parse_doc(PAGE, "docs/reference.md").files


def kind_of(path: str) -> str | None:
    if path == "flowlet.yaml":
        return "flowlet.yaml"
    if path.startswith("flows/") and path.endswith((".yaml", ".yml")):
        return "flow"
    return None


# ---- paths in a parsed YAML document -----------------------------------------------------------

def walk(node: Any, prefix: tuple = ()):
    """Yield (concrete path, value) for every mapping key and list item, depth first."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,), v
            yield from walk(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,), v
            yield from walk(v, prefix + (i,))


def generic(path: tuple) -> tuple[str, ...]:
    """A concrete path with list indexes folded into the key before them: ('steps[]', 'id')."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out[-1] += "[]"
        else:
            out.append(str(part))
    return tuple(out)


def matches(row_parts: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    return len(row_parts) == len(parts) and all(
        r == p or (r.startswith("<") and r.endswith(">")) for r, p in zip(row_parts, parts))


def find(row: Row) -> tuple[str, tuple] | None:
    """The first file of the row's kind and the concrete path where the page's files use the key."""
    for name, text in FILES.items():
        if kind_of(name) != row.kind:
            continue
        for path, _ in walk(yaml.safe_load(text) or {}):
            if matches(row.parts, generic(path)):
                return name, path
    return None


def set_at(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


# ---- loading ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loader(tmp_path_factory):
    """load(changed files) -> list of error messages (empty when the workspace loads)."""
    from flowlet.errors import ConfigErrors
    from flowlet.workspace.loader import load_workspace

    root = tmp_path_factory.mktemp("reference") / "my-api"

    def load(changes: dict[str, str] | None = None) -> list[str]:
        if root.exists():
            shutil.rmtree(root)
        for name, text in {**FILES, **(changes or {})}.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        try:
            ws = load_workspace(root)
        except ConfigErrors as exc:
            return [str(e) for e in exc.errors]
        ws.close()
        return []

    return load


def recorded_check_keys(monkeypatch, load) -> list[tuple[str, int, frozenset, tuple[str, ...], str]]:
    """Load the page's workspace; every check_keys call as (file, line, the mapping's keys,
    allowed keys, what)."""
    import flowlet.source as source

    original = source.check_keys
    calls: list[tuple[str, int, frozenset, tuple[str, ...], str]] = []

    def recording(m, allowed, what):
        allowed = tuple(allowed)
        calls.append((m.file, m.line, frozenset(m), allowed, what))
        return original(m, allowed, what)

    import flowlet.workspace.loader  # noqa: F401  (imports every module that parses config)
    for mod in list(sys.modules.values()):
        if (getattr(mod, "__name__", "") or "").startswith("flowlet") and getattr(mod, "check_keys", None) is original:
            monkeypatch.setattr(mod, "check_keys", recording)
    assert load() == []
    return calls


def mapping_paths(name: str) -> dict[int, list[tuple]]:
    """Line -> concrete paths of the mappings that start on that line (the root included)."""
    from flowlet.source import YMap, load_yaml

    out: dict[int, list[tuple]] = {}
    doc = load_yaml(FILES[name], name)
    for path, value in [((), doc), *walk(doc)]:
        if isinstance(value, YMap):
            out.setdefault(value.line, []).append((path, value))
    return out


# ---- the tests -------------------------------------------------------------------------------

def test_page_has_both_tables_and_a_workspace():
    kinds = {r.kind for r in ROWS}
    assert kinds == {"flowlet.yaml", "flow"}
    assert "flowlet.yaml" in FILES and any(kind_of(f) == "flow" for f in FILES)
    keys = [(r.kind, r.key) for r in ROWS]
    assert len(keys) == len(set(keys)), "a key has two rows"


def test_page_workspace_loads(loader):
    assert loader() == []


def test_every_key_the_loader_accepts_has_a_row(loader, monkeypatch):
    from flowlet.source import YMap

    calls = recorded_check_keys(monkeypatch, loader)
    index = {name: mapping_paths(name) for name in FILES if kind_of(name)}
    missing, unplaced = [], []
    for file, line, keys, allowed, what in calls:
        kind = kind_of(file)
        candidates = index.get(file, {}).get(line, [])
        # the mapping that was checked: the one that starts at this line with the same keys
        paths = [p for p, v in candidates if isinstance(v, YMap) and frozenset(v) == keys]
        if not paths:
            unplaced.append(f"{file}:{line} ({what})")
            continue
        for key in allowed:
            for path in paths:
                parts = generic(path) + (key,)
                if not any(r.kind == kind and matches(r.parts, parts) for r in ROWS):
                    missing.append(f"{kind}: {'.'.join(parts)} (allowed in {what}, {file}:{line})")
    assert not unplaced, f"check_keys calls on mappings the page's files do not show: {unplaced}"
    assert not missing, "keys the loader accepts that docs/reference.md does not list:\n" + "\n".join(
        sorted(set(missing)))
    assert len(calls) >= 10, calls


def test_every_row_is_a_key_the_loader_checks(loader, monkeypatch):
    """A row's parent mapping must list it as allowed (or be a mapping of names the user picks)."""
    calls = recorded_check_keys(monkeypatch, loader)
    index = {name: mapping_paths(name) for name in FILES if kind_of(name)}
    allowed_at: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for file, line, keys, allowed, _what in calls:
        for path, value in index.get(file, {}).get(line, []):
            if frozenset(value) == keys:
                allowed_at.setdefault((kind_of(file), generic(path)), set()).update(allowed)
    wrong = []
    for row in ROWS:
        if row.parts[-1].startswith("<"):
            continue
        parents = [keys for (kind, path), keys in allowed_at.items()
                   if kind == row.kind and matches(row.parts[:-1], path)]
        if not parents or not any(row.parts[-1] in keys for keys in parents):
            wrong.append(str(row))
    assert not wrong, f"rows for keys the loader does not accept there: {wrong}"


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.kind}:{r.key}" for r in ROWS])
def test_row_example_loads_and_wrong_value_gives_the_error(row, loader):
    found = find(row)
    assert found, f"{row}: the page's files never use this key; add it to one of them"
    name, path = found
    doc = yaml.safe_load(FILES[name]) or {}
    dump = lambda d: yaml.safe_dump(d, sort_keys=False, allow_unicode=True)  # noqa: E731
    errors = loader({name: dump(set_at(doc, path, row.example))})
    assert errors == [], f"{row}: the Example {row.example!r} does not load"
    errors = loader({name: dump(set_at(doc, path, row.wrong))})
    assert errors, f"{row}: the Wrong value {row.wrong!r} loads without an error"
    assert any(row.error in e and e.startswith(f"{name}:") for e in errors), (
        f"{row}: the Error {row.error!r} is not what {row.wrong!r} gives: {errors}")
