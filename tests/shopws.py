"""The contracts test workspace (tests/workspaces/contracts), copied and given known secrets."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT, flowlet

SOURCE = ROOT / "tests" / "workspaces" / "contracts"
USER, PASSWORD = "fuzz", "fuzz-password-1"
HS_KEY = "contracts-test-shared-key-" + "k" * 32


@dataclass
class Credentials:
    basic: tuple[str, str]
    token: str              # JWT with scope notes:write, subject "ada"


def prepare(dest: Path, source: Path = SOURCE) -> Credentials:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    if (dest / "flows" / "basic.yaml").exists():
        _ok(flowlet("secrets", "set", "users", "-w", str(dest), "--type", "basic", "--user", USER,
                    "--password-stdin", input=PASSWORD))
    _ok(flowlet("secrets", "set", "tokens", "-w", str(dest), "--type", "jwt", "--hs-key-stdin", input=HS_KEY))
    token = _ok(flowlet("token", "-w", str(dest), "--secret", "tokens", "--scope", "notes:write", "--sub", "ada",
                        "--ttl", "3600"))
    return Credentials((USER, PASSWORD), token.strip())


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
