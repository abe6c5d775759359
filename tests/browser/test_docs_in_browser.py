"""The browser parts of the docs, run in Chromium: the tutorial's page and the README's snippet.

tests/test_docs.py checks the tutorial's commands with curl, sending the headers a browser
would send; here a real browser loads the tutorial's page from a second local origin and
clicks its buttons, and runs the README's front-end snippet from a page on another origin.
The docs use ports 8000 (page) and 8080 (API); the tests use free ports and replace them.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import shutil
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


_helpers = _load("flowlet_tests_root_helpers_docs", ROOT / "tests" / "conftest.py")
doccheck = _load("flowlet_tests_doccheck", ROOT / "tests" / "doccheck.py")
run_server, flowlet = _helpers.run_server, _helpers.flowlet


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass


@contextmanager
def static_server(folder: Path):
    """``python3 -m http.server --bind 127.0.0.1 -d FOLDER`` on a free port, in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(folder)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _tutorial_workspace(tmp_path: Path, page_port: int) -> Path:
    """The workspace as it stands at the end of docs/tutorial.md (init, then its files)."""
    root = tmp_path / "my-api"
    assert flowlet("init", str(root)).returncode == 0
    doc = doccheck.parse_doc(ROOT / "docs" / "tutorial.md", "docs/tutorial.md")
    for rel, text in doc.files.items():       # the last version of each file
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.replace("localhost:8000", f"localhost:{page_port}"))
    r = flowlet("secrets", "set", "my-users", "-w", str(root), "--type", "basic", "--user", "alice",
                "--password-stdin", input="correct horse")
    assert r.returncode == 0, r.stderr
    r = flowlet("secrets", "set", "my-jwt", "-w", str(root), "--type", "jwt", "--hs-key-stdin",
                input="k" * 48)
    assert r.returncode == 0, r.stderr
    return root


def _click(page, button: str) -> str:
    page.click(f"#{button}")
    page.wait_for_function("document.getElementById('out').textContent !== ''")
    text = page.inner_text("#out")
    page.evaluate("document.getElementById('out').textContent = ''")
    return text


def test_tutorial_page_calls_the_api_from_a_second_local_origin(context, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    with static_server(web) as page_port:
        root = _tutorial_workspace(tmp_path, page_port)
        with run_server(root) as server:
            api_port = int(server.url.rsplit(":", 1)[1])
            (web / "index.html").write_text(
                (root / "static" / "index.html").read_text().replace("localhost:8080", f"localhost:{api_port}"))
            token = flowlet("token", "-w", str(root), "--secret", "my-jwt", "--scope", "reports:read",
                            "--sub", "alice").stdout.strip()
            page = context.new_page()
            page.goto(f"http://localhost:{page_port}/index.html")
            page.fill("#token", token)
            assert _click(page, "load") == '200 {"reports":["q1","q2"],"for":"alice"}'
            assert _click(page, "note") == '201 {"saved":{"text":"hello"}}'
            (cookie,) = [c for c in context.cookies() if c["name"] == "csrf"]
            assert cookie["domain"] == "localhost" and cookie["sameSite"] == "Strict"

            # the same page on an origin the flows do not list: the browser keeps the answer from it
            with static_server(web) as other_port:
                page = context.new_page()
                page.goto(f"http://localhost:{other_port}/index.html")
                page.fill("#token", token)
                assert _click(page, "load").startswith("Something went wrong: TypeError")


def test_readme_snippet_saves_a_note_from_another_origin(context, tmp_path):
    readme = (ROOT / "README.md").read_text()
    (snippet,) = [b.text for b in doccheck.blocks(readme) if b.lang == "js"]
    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", demo, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><meta charset='utf-8'><title>app</title>")
    with static_server(static) as page_port:
        notes = demo / "flows" / "notes-post.yaml"
        assert "http://localhost:8000" in notes.read_text()
        notes.write_text(notes.read_text().replace("http://localhost:8000", f"http://localhost:{page_port}"))
        with run_server(demo) as server:
            api_port = int(server.url.rsplit(":", 1)[1])
            page = context.new_page()
            page.goto(f"http://localhost:{page_port}/index.html")
            code = snippet.replace("localhost:8080", f"localhost:{api_port}")
            result = page.evaluate(f"async () => {{ {code}\n return await saveNote('hello'); }}")
            assert result == {"saved": {"text": "hello"}}
            # without the cookie (another browser profile), the snippet reports the refusal
            context.clear_cookies()
            refused = page.evaluate(
                f"async () => {{ {code.replace('X-CSRF-TOKEN', 'X-Not-The-Header')}\n"
                f" return await saveNote('hello'); }}")
            assert refused is None
