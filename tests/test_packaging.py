"""What a user installs: the wheel, its metadata, `flowlet --version` and the commands' help.

The wheel is built with `python -m build` from a copy of the files a source release holds,
installed with `pip install --no-deps` into a fresh virtual environment, and run from there.
The environment finds its dependencies (not Flowlet) in the test run's own site-packages,
appended after its own, so nothing is downloaded and the installed copy is the one that runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

import conftest
from conftest import DEMO, ROOT, run_server

SRC = ROOT / "src" / "flowlet"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("sdist-tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    import setuptools
    # The test extra installs setuptools>=77 (what the project's license metadata needs), so the
    # build runs offline with this environment's backend. With an older one it falls back to
    # the isolated build, which fetches the build requirements as `python -m build` does for users.
    offline = int(setuptools.__version__.split(".")[0]) >= 77
    # no --wheel: the wheel is built from the sdist, as `python -m build` does, so both are complete
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out),
                           *(["--no-isolation"] if offline else [])],
                          cwd=tree, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [built] = out.glob("flowlet-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed; returns (bin dir, environment for its commands)."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", "--disable-pip-version-check", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # a path line in a .pth is appended after the venv's own site-packages (and its .pth files,
    # such as an editable install of Flowlet, are not read): dependencies only
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLOWLET_MASTER_KEY", "VIRTUAL_ENV")}
    return env_dir / "bin", env


def test_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(SRC.parent).as_posix() for p in SRC.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert shipped, SRC
    missing = sorted(shipped - names)
    assert not missing, f"files under src/flowlet that the wheel lacks: {missing}"


def test_wheel_metadata(wheel):
    archive = zipfile.ZipFile(wheel)
    info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    meta = archive.read(info).decode()
    assert f"Version: {PROJECT['version']}" in meta
    assert "License-Expression: Apache-2.0" in meta
    assert "Author: Flowlet developers" in meta
    assert "Project-URL: Source" in meta
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())
    entry = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert "flowlet = flowlet.cli:main" in entry


def test_license_is_apache_2_with_its_patent_grant():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "Grant of Patent License" in text and "END OF TERMS AND CONDITIONS" in text


def test_installed_wheel_runs_from_its_own_copy(installed, tmp_path):
    bindir, env = installed
    where = subprocess.run([str(bindir / "python"), "-c", "import flowlet; print(flowlet.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(bindir.parent), where.stdout

    version = subprocess.run([str(bindir / "flowlet"), "--version"], capture_output=True, text=True, env=env,
                             timeout=30)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"flowlet {PROJECT['version']}"


def test_installed_wheel_checks_and_serves_a_workspace(installed, tmp_path, monkeypatch):
    bindir, env = installed
    demo = tmp_path / "demo"
    shutil.copytree(DEMO, demo, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    check = subprocess.run([str(bindir / "flowlet"), "check", str(demo)], capture_output=True, text=True,
                           env=env, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok: "), check.stdout

    fresh = tmp_path / "fresh"
    init = subprocess.run([str(bindir / "flowlet"), "init", str(fresh)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert init.returncode == 0, init.stderr
    for name in ("PYTHONPATH", "FLOWLET_MASTER_KEY", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(conftest, "FLOWLET", [str(bindir / "flowlet")])
    with run_server(fresh) as srv:
        r = httpx.get(srv.url + "/api/hello", params={"name": "Ada"})
    assert r.status_code == 200 and r.json() == {"message": "Hello, Ada!"}


def test_version_option(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flowlet.cli", "--version"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0
    assert re.fullmatch(r"flowlet \d+\.\d+\.\d+\S*\n", proc.stdout), proc.stdout


def _parsers(monkeypatch) -> dict[str, argparse.ArgumentParser]:
    """Every parser of the `flowlet` command, by its command line ("flowlet secrets set")."""
    from flowlet import cli

    captured: list[argparse.ArgumentParser] = []

    def capture(self, args=None, namespace=None):
        captured.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        cli.main([])
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")

    walk(captured[0], "flowlet")
    return found


def test_every_option_and_argument_has_help(monkeypatch):
    parsers = _parsers(monkeypatch)
    assert {"flowlet serve", "flowlet check", "flowlet init", "flowlet routes", "flowlet secrets set",
            "flowlet token"} <= parsers.keys()
    missing = []
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"


def test_every_command_has_a_help_line(monkeypatch):
    parsers = _parsers(monkeypatch)
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                assert set(helps) == set(action.choices), name
                assert all(h and h.strip() for h in helps.values()), (name, helps)
