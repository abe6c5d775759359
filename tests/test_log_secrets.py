"""Secret values never reach the log: not in a message, a traceback, a repr or an http step's error."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import flowlet, free_port, make_workspace, run_server
from flowlet.secrets.model import BasicSecret, JwtSecret, ValueSecret
from flowlet.server.log import SecretMask

# A backslash and a quote: its repr and its JSON form differ from the value itself.
VALUE = "tok-\\Zx9'q\"Vb7-secret"
HS_KEY = "hs-key-for-the-log-test-0123456789abcdef"

FILES = {
    "flowlet.yaml": "name: logs\n",
    "functions/leaky.py": """
        def in_message(key):
            raise ValueError(f"upstream refused key {key}")

        def in_repr(key):
            raise RuntimeError(repr({"key": key}))
    """,
    "flows/message.yaml": """
        endpoint: {method: GET, path: /message}
        steps: [{function: "functions.leaky:in_message", input: {key: '=secret("API_KEY")'}}]
    """,
    "flows/repr.yaml": """
        endpoint: {method: GET, path: /repr}
        steps: [{function: "functions.leaky:in_repr", input: {key: '=secret("API_KEY")'}}]
    """,
    "flows/http.yaml": """
        endpoint: {method: GET, path: /http}
        steps:
          - http: {url: '="http://127.0.0.1:PORT/x?key=" + secret("API_KEY")'}
    """,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    files = dict(FILES)
    files["flows/http.yaml"] = files["flows/http.yaml"].replace("PORT", str(free_port()))  # nothing listens
    ws = make_workspace(tmp_path_factory.mktemp("logs"), files)
    for args, stdin in ((("API_KEY", "--type", "value", "--value-stdin"), VALUE),
                        (("jwt", "--type", "jwt", "--hs-key-stdin"), HS_KEY)):
        assert flowlet("secrets", "set", *args, "-w", str(ws), input=stdin).returncode == 0
    with run_server(ws) as srv:
        srv.workspace = ws
        yield srv


def forms(value: str) -> list[str]:
    return [value, repr(value)[1:-1], json.dumps(value)[1:-1]]


def log_after(server, path: str) -> str:
    before = len(server.stderr)
    r = httpx.get(server.url + path)
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    for _ in range(100):
        text = server.stderr[before:]
        if "***" in text:
            return text
        httpx.get(server.url + "/api/missing")   # let the log catch up
    raise AssertionError(f"no masked line after {path}:\n{server.stderr[before:]}")


@pytest.mark.parametrize("path, shown", [("/api/message", "upstream refused key ***"),
                                         ("/api/repr", "{'key': '***'}"),
                                         ("/api/http", "/x?key=***")])
def test_secret_value_is_masked_in_the_log(server, path, shown):
    text = log_after(server, path)
    for form in forms(VALUE):
        assert form not in text
    decoded = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(shown in entry.get("msg", "") + entry.get("exc", "") for entry in decoded), text


def test_mask_covers_value_and_hs_key_forms_but_not_basic_hashes():
    mask = SecretMask()
    mask.update([ValueSecret("v", "multi\nline-secret"), JwtSecret("j", hs_key=b"k\xffey-bytes"),
                 BasicSecret("b", {"user": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"})])
    assert mask("a multi\nline-secret b") == "a *** b"
    assert mask("only line-secret here") == "only *** here"
    assert mask(repr(b"k\xffey-bytes")) == "b'***'"
    assert mask(b"k\xffey-bytes".hex()) == "***"
    assert mask('{"kty": "oct", "k": "a_9leS1ieXRlcw"}') == '{"kty": "oct", "k": "***"}'
    assert mask("user $argon2id$") == "user $argon2id$"


def test_short_values_are_not_masked():
    mask = SecretMask()
    mask.update([ValueSecret("v", "abc")])
    assert mask("abc abcd") == "abc abcd"


def test_mask_follows_changes():
    mask = SecretMask()
    mask.update([ValueSecret("v", "first-value")])
    mask.update([ValueSecret("v", "second-value")])
    assert mask("first-value second-value") == "first-value ***"


def test_secret_in_a_requested_path_is_masked_in_the_access_log(server):
    from urllib.parse import quote
    before = len(server.stderr)
    assert httpx.get(server.url + "/api/nothing/" + quote(VALUE, safe="")).status_code == 404
    for _ in range(100):
        text = server.stderr[before:]
        if "/api/nothing/" in text and text.endswith("\n"):
            break
        time.sleep(0.1)               # the access log is flushed a few times a second
    access = [json.loads(line) for line in text.splitlines() if '"flowlet.access"' in line]
    assert any(entry["path"] == "/api/nothing/***" for entry in access), text
    assert not any(form in text for form in forms(VALUE))


def test_a_changed_secret_is_masked_from_then_on(server, tmp_path_factory):
    ws = server.workspace
    new = "tok-rotated-\\value-77"
    assert flowlet("secrets", "set", "API_KEY", "-w", str(ws), "--type", "value", "--value-stdin",
                   input=new).returncode == 0
    before = len(server.stderr)
    for _ in range(30):          # the view follows the store within a poll; every answer in between too
        assert httpx.get(server.url + "/api/message").status_code == 500
        time.sleep(0.1)
    text = server.stderr[before:]
    assert "upstream refused key ***" in text
    assert not any(form in text for form in forms(new))
