"""`flowlet check`, `routes` and `init`: load errors as FILE:LINE, exit codes, tables."""

from __future__ import annotations

import json

import pytest

from conftest import DEMO, flowlet, make_workspace

GOOD = "endpoint: {method: GET, path: /a}\nrespond: {body: 1}\n"


def check(tmp_path, files, *, display=True):
    ws = make_workspace(tmp_path, files)
    if display:
        return flowlet("check", cwd=ws)
    return flowlet("check", str(ws))


def test_valid_workspace_exits_0(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": GOOD})
    assert r.returncode == 0, r.stderr
    assert "1 endpoint" in r.stdout


def test_typo_key_is_rejected_with_file_and_line(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint:\n  method: GET\n  path: /a\n  crsf: true\nrespond: {body: 1}\n"})
    assert r.returncode == 1
    assert "flows/a.yaml:4: error: unknown key 'crsf' in endpoint (did you mean 'csrf'?)" in r.stderr


def test_typo_in_flowlet_yaml(tmp_path):
    r = check(tmp_path, {"flowlet.yaml": "name: x\nlimts: {}\n", "flows/a.yaml": GOOD})
    assert r.returncode == 1
    assert "flowlet.yaml:2: error: unknown key 'limts'" in r.stderr


def test_broken_yaml_names_file_and_line(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint:\n  method: GET\n  path: [\n"})
    assert r.returncode == 1
    assert r.stderr.startswith("flows/a.yaml:")


def test_wrong_type_is_error(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a, csrf: yes please}\n"})
    assert r.returncode == 1
    assert "flows/a.yaml:1: error: 'csrf' must be true or false" in r.stderr


def test_bad_expression_is_error_at_its_line(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a}\nrespond:\n  body:\n    x: \"=1 +\"\n"})
    assert r.returncode == 1
    assert "flows/a.yaml:4: error: invalid expression" in r.stderr


def test_unknown_variable_is_error(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a}\nrespond:\n  body: \"=bodyy.x\"\n"})
    assert r.returncode == 1
    assert "flows/a.yaml:3: error:" in r.stderr and "bodyy" in r.stderr


def test_duplicate_method_and_path(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": GOOD, "flows/sub/b.yaml": GOOD})
    assert r.returncode == 1
    assert "flows/sub/b.yaml:1: error: duplicate endpoint GET /api/a" in r.stderr


def test_paths_differing_only_in_params(tmp_path):
    r = check(tmp_path, {
        "flows/a.yaml": "endpoint: {method: GET, path: '/u/{id}'}\n",
        "flows/b.yaml": "endpoint: {method: PUT, path: '/u/{name}'}\n"})
    assert r.returncode == 1 and "differ only in parameter names" in r.stderr


def test_bad_path_pattern(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: '/u/{id:float}'}\n"})
    assert r.returncode == 1 and "flows/a.yaml:1: error: unknown parameter type" in r.stderr


def test_flow_on_builtin_csrf_path(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint: {method: POST, path: /csrf}\n"})
    assert r.returncode == 1 and "/api/csrf is the built-in CSRF token endpoint" in r.stderr


def test_missing_function_is_error(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a}\nsteps:\n  - function: functions.nope:x\n"})
    assert r.returncode == 1 and "flows/a.yaml:3: error: cannot import 'functions.nope'" in r.stderr


def test_every_broken_file_is_reported(tmp_path):
    r = check(tmp_path, {"flows/a.yaml": "endpoint: {method: GET}\n", "flows/b.yaml": "endpoint: {path: /b}\n"})
    assert r.returncode == 1
    assert "flows/a.yaml:1: error: missing required key 'path'" in r.stderr
    assert "flows/b.yaml:1: error: missing required key 'method'" in r.stderr


def test_file_names_are_relative_to_the_dir_argument(tmp_path):
    make_workspace(tmp_path / "ws", {"flows/a.yaml": "endpoint: {method: GET, path: /a, bogus: 1}\n"})
    r = flowlet("check", "ws", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("ws/flows/a.yaml:1: error:")


def test_missing_flowlet_yaml(tmp_path):
    r = flowlet("check", str(tmp_path))
    assert r.returncode == 1 and "flowlet.yaml is missing" in r.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A copy of the demo, so tests never leave state in examples/demo."""
    import shutil
    dest = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    return dest


def test_demo_checks_before_its_first_start(demo):
    r = flowlet("check", str(demo))
    assert r.returncode == 0, r.stderr
    assert "warning: development secret 'demo-users' does not exist yet" in r.stderr


def test_routes_table_on_demo(demo):
    r = flowlet("routes", str(demo))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["METHOD", "PATH", "AUTH", "CSRF", "CORS", "FILE"]
    assert any(l.split()[:2] == ["GET", "/api/hello"] for l in lines)
    assert "CORS answer per path" in r.stdout


def test_routes_json_matches_table(demo):
    r = flowlet("routes", str(demo), "--json")
    data = json.loads(r.stdout)
    table = flowlet("routes", str(demo)).stdout
    endpoints = [(e["method"], e["path"]) for p in data["paths"] for e in p["endpoints"]]
    assert ("GET", "/api/hello") in endpoints
    for method, path in endpoints:
        assert any(l.split()[:2] == [method, path] for l in table.splitlines())


def test_init_scaffolds_a_valid_workspace(tmp_path):
    r = flowlet("init", str(tmp_path / "new"))
    assert r.returncode == 0, r.stderr
    assert flowlet("check", str(tmp_path / "new")).returncode == 0


def test_init_into_non_empty_folder_fails(tmp_path):
    (tmp_path / "x").write_text("keep me")
    r = flowlet("init", str(tmp_path))
    assert r.returncode == 1 and "not empty" in r.stderr
    assert (tmp_path / "x").read_text() == "keep me"


def _serve_error(*args, cwd=None):
    r = flowlet("serve", *args, cwd=cwd, timeout=30)
    assert "Traceback" not in r.stderr and "backtrace" not in r.stderr.lower()
    return r


def test_serve_on_a_taken_port_is_one_clear_line(tmp_path):
    import socket
    ws = make_workspace(tmp_path, {"flows/a.yaml": GOOD})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = _serve_error(str(ws), "--port", str(s.getsockname()[1]))
    assert r.returncode == 1 and "error: cannot listen on 127.0.0.1:" in r.stderr
    assert "in use" in r.stderr


def test_serve_with_missing_or_bad_tls_files(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": GOOD})
    r = _serve_error(str(ws), "--tls-cert", str(tmp_path / "no.pem"), "--tls-key", str(tmp_path / "no.key"))
    assert r.returncode == 1 and "TLS file not found" in r.stderr
    (tmp_path / "bad.pem").write_text("not a certificate")
    r = _serve_error(str(ws), "--tls-cert", str(tmp_path / "bad.pem"), "--tls-key", str(tmp_path / "bad.pem"))
    assert r.returncode == 1 and "cannot use --tls-cert" in r.stderr


def test_serve_with_bad_port(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": GOOD})
    r = _serve_error(str(ws), "--port", "70000")
    assert r.returncode == 2 and "--port must be from 1 to 65535" in r.stderr


def test_serve_refuses_a_broken_workspace_before_listening(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a, bogus: 1}\n"})
    r = _serve_error(str(ws), "--port", "1")
    assert r.returncode == 1 and "flows/a.yaml:1: error: unknown key 'bogus'" in r.stderr
    assert "listening on" not in r.stdout
