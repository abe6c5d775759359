"""The repository itself: no merge left half-done, no local virtualenv tracked."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("<<<<<<< ", ">>>>>>> ")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_no_conflict_markers_in_tracked_text_files():
    found = []
    for name in tracked_files():
        path = ROOT / name
        if path.is_symlink() or not path.is_file() or path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".html", ".css", ".js", ".sh", ".txt"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if line.startswith(MARKERS) or line == "=======" and path.suffix != ".md":
                found.append(f"{name}:{n}")
    assert not found, f"merge conflict markers: {found}"
