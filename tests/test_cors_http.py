"""CORS over real HTTP: every curl example in docs/cors.md, run against the workspace the doc
shows, must answer what the doc shows; plus the wire rules the doc only mentions."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

import doccheck
from conftest import ROOT, flowlet, run_server

DOC = ROOT / "docs" / "cors.md"
DOC_URL = "http://localhost:8080"


def doc_blocks() -> list[tuple[str, str]]:
    return [(b.lang, b.text) for b in doccheck.blocks(DOC.read_text())]


def doc_workspace() -> dict[str, str]:
    """The blocks whose first line is ``# file: NAME`` (the docs' shared convention)."""
    return doccheck.parse_doc(DOC).files


def doc_examples(command: str) -> list[tuple[str, str]]:
    """(```sh block starting with ``command``, the block right after it) pairs."""
    blocks = doc_blocks()
    return [(text, blocks[i + 1][1]) for i, (lang, text) in enumerate(blocks)
            if lang == "sh" and text.startswith(command) and i + 1 < len(blocks)]


CURL_EXAMPLES = doc_examples("curl ")
CHECK_EXAMPLES = doc_examples("flowlet check ")


def parse_http(text: str) -> tuple[int, list[tuple[str, str]], str]:
    """Status code, headers (lower-case names) and body of ``curl -i`` style text."""
    status, headers, body = doccheck.split_http(text)
    return int(status.split()[1]), headers, body.strip()


def cors_part(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(h for h in headers if h[0].startswith("access-control-") or h[0] == "vary")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("doc") / "shop"
    for rel, text in doc_workspace().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture(scope="module")
def server(shop):
    with run_server(shop) as srv:
        yield srv


def test_doc_shows_a_workspace_and_examples():
    assert {"flowlet.yaml", "flows/get-user.yaml", "flows/update-user.yaml"} <= set(doc_workspace())
    assert len(CURL_EXAMPLES) >= 10
    assert len(CHECK_EXAMPLES) == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="the doc's examples use curl")
@pytest.mark.parametrize("command, shown", CURL_EXAMPLES,
                         ids=[c.split("\n")[0][:60] for c, _ in CURL_EXAMPLES])
def test_doc_curl_example_answers_as_shown(server, command, shown):
    args = shlex.split(command.replace("\\\n", " "))
    assert args[0] == "curl"
    args = [a.replace(DOC_URL, server.url) for a in args]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    status, headers, body = parse_http(out)
    want_status, want_headers, want_body = parse_http(shown)
    assert status == want_status, out
    for header in want_headers:
        assert header in headers, f"{header} missing in:\n{out}"
    # The doc lists every CORS header the answer has: none may be left out of it.
    assert cors_part(headers) == cors_part(want_headers), out
    if want_body:
        assert json.loads(body) == json.loads(want_body)


def test_doc_check_warnings_are_what_flowlet_check_prints(shop):
    command, shown = CHECK_EXAMPLES[0]
    args = shlex.split(command)[2:]
    result = flowlet("check", *args, cwd=shop.parent)
    assert result.returncode == 0, result.stderr
    warnings = sorted(l for l in result.stderr.splitlines() if ": warning: " in l)
    assert warnings == sorted(shown.strip().splitlines())


# ---- wire rules beyond the doc's examples -----------------------------------------------------

ALLOWED = {"Origin": "https://test.example.com"}


def test_error_answers_carry_cors_headers(server):
    r = httpx.put(server.url + "/api/user/7", content=b"{not json",
                  headers={**ALLOWED, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.headers["access-control-allow-origin"] == "https://test.example.com"
    assert r.headers.get_list("vary") == ["Origin"]


def test_head_carries_what_get_carries(server):
    r = httpx.head(server.url + "/api/user/7", headers=ALLOWED)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://test.example.com"


def test_method_without_cors_on_a_shared_path_gets_no_cors_headers(server):
    r = httpx.delete(server.url + "/api/user/7", headers=ALLOWED)
    assert r.status_code == 204
    assert cors_part(list(r.headers.items())) == []


def test_null_origin_is_never_allowed(server):
    r = httpx.get(server.url + "/api/user/7", headers={"Origin": "null"})
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(server.url + "/api/user/7",
                        headers={"Origin": "null", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 403


def test_preflight_to_an_unknown_path_is_404(server):
    r = httpx.options(server.url + "/api/nowhere",
                      headers={**ALLOWED, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 404


def test_options_without_request_method_is_not_a_preflight(server):
    r = httpx.options(server.url + "/api/user/7", headers=ALLOWED)
    assert r.status_code == 204
    assert "access-control-allow-origin" not in r.headers
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PUT", "DELETE"}


def test_preflight_needs_no_credentials_on_a_csrf_protected_path(server):
    r = httpx.options(server.url + "/api/orders",
                      headers={"Origin": "https://app.example.com",
                               "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-credentials"] == "true"


def test_csrf_endpoint_refuses_origins_no_protected_path_allows(server):
    r = httpx.get(server.url + "/api/csrf", headers={"Origin": "https://test.example.com"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
