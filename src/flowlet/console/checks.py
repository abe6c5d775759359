"""The workspace as the console needs it: checked by the loader, in a child process.

``inspect_workspace`` answers for the workspace on disk (cached until a file or the store
changes); ``check_edit`` answers for the workspace as it would be with one flow file
replaced, by checking a scratch copy (flows copied, everything else linked), so nothing is
written before the whole workspace loads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

CHECK_TIMEOUT_S = 60


@dataclass(frozen=True)
class Problem:
    file: str | None
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line or 1}: {self.message}" if self.file else self.message


@dataclass(frozen=True)
class Inspection:
    ok: bool
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    routes: dict | None              # what `flowlet routes --json` shows


def _run(root: Path) -> Inspection:
    env = dict(os.environ)
    try:
        out = subprocess.run([sys.executable, "-m", "flowlet.console.inspect", str(root)],
                             capture_output=True, timeout=CHECK_TIMEOUT_S, env=env, cwd=str(root))
        doc = json.loads(out.stdout or b"null")
    except (subprocess.TimeoutExpired, ValueError, OSError) as exc:
        return Inspection(False, (Problem(None, None, f"the workspace check failed ({type(exc).__name__})"),),
                          (), None)
    if not isinstance(doc, dict):
        return Inspection(False, (Problem(None, None, "the workspace check printed nothing"),), (), None)

    def problems(key: str) -> tuple[Problem, ...]:
        return tuple(Problem(p.get("file"), p.get("line"), str(p.get("message"))) for p in doc.get(key) or ())

    return Inspection(bool(doc.get("ok")), problems("errors"), problems("warnings"), doc.get("routes"))


def _fingerprint(root: Path, store_version: int) -> tuple:
    parts: list[tuple] = [("store", store_version)]
    for base in (root / "flowlet.yaml", root / "flows", root / "schemas", root / "functions"):
        paths = sorted(base.rglob("*")) if base.is_dir() else [base]
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            parts.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(parts)


class WorkspaceChecks:
    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._cached: tuple[tuple, Inspection] | None = None

    def inspect(self, store_version: int) -> Inspection:
        key = _fingerprint(self.root, store_version)
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
        result = _run(self.root)
        with self._lock:
            self._cached = (key, result)
        return result

    def check_edit(self, rel_file: str, text: str) -> Inspection:
        """Check the workspace with ``rel_file`` (under flows/) holding ``text`` instead."""
        scratch = Path(tempfile.mkdtemp(prefix="flowlet-console-check-"))
        try:
            for entry in self.root.iterdir():
                if entry.name == "flows":
                    shutil.copytree(entry, scratch / "flows", symlinks=True)
                else:
                    os.symlink(entry.resolve(), scratch / entry.name)
            target = scratch / rel_file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            return _run(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
