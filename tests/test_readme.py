"""The README's two commands and its curl walkthrough, run for real against a copy of the demo."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import httpx
import pytest

import doccheck
from conftest import DEMO, ROOT, run_server

README = (ROOT / "README.md").read_text()


def sh_blocks(text: str) -> list[str]:
    """The ```sh blocks, except those marked <!-- not checked: REASON --> (long-running servers)."""
    return [b.text for b in doccheck.blocks(text) if b.lang == "sh" and b.not_checked is None]


def test_readme_leaves_out_only_long_running_commands():
    skipped = [b for b in doccheck.blocks(README) if b.not_checked is not None]
    assert [b.text.split()[:3] for b in skipped] == [["python3", "-m", "http.server"]]


def test_readme_starts_with_the_two_commands():
    blocks = sh_blocks(README)
    assert blocks[0].strip().endswith("flowlet serve examples/demo")
    assert blocks[1].strip() == "bash scripts/test.sh"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    dest = tmp_path_factory.mktemp("readme") / "demo"
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    with run_server(dest) as srv:
        yield dest, srv


def test_first_start_creates_and_prints_dev_credentials(demo):
    ws, srv = demo
    out = "\n".join(srv.stdout)
    assert re.search(r"created development secret 'demo-users': Basic user 'demo', password '[^']+'", out)
    password = re.search(r"password '([^']+)'", out).group(1)
    assert httpx.get(srv.url + "/api/private", auth=("demo", password)).json() == {"hello": "demo"}
    token = next(l for l in srv.stdout if l.startswith("eyJ"))
    r = httpx.get(srv.url + "/api/reports", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["for"] == "dev"
    # printed once, to the terminal: never into the log
    assert password not in srv.stderr


def test_readme_walkthrough(demo):
    ws, srv = demo
    blocks = sh_blocks(README)[2:]
    assert len(blocks) >= 4
    flowlet = f"{sys.executable} -m flowlet.cli"
    for block in blocks:
        script = (block.replace(".venv/bin/flowlet", flowlet)
                  .replace("-w examples/demo", f"-w {ws}")
                  .replace("http://127.0.0.1:8080", srv.url))
        commands, expected = [], []
        for line in script.splitlines():
            if line.startswith("# -> "):
                expected.append(line[5:])
            elif line.strip():
                commands.append(line + "\necho")   # curl prints no final newline
                if "secrets set" in line:
                    commands.append("sleep 2.2")      # a running server sees it within two seconds
        result = subprocess.run(["bash", "-e", "-c", "\n".join(commands)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, (block, result.stderr)
        got = [l.rstrip("\r") for l in result.stdout.splitlines() if l.strip()]
        assert got == expected, block
