"""The curl and CLI examples of docs/auth.md, docs/secrets.md and docs/csrf.md, run for real.

Each ``$ command`` in a ```` ```console ```` block is one test: it runs (in document order,
against the workspace the page shows and a real `flowlet serve`) and must print what the page
shows under it. The conventions are in tests/doccheck.py. Blocks marked
``<!-- not checked: REASON -->`` are reported as skipped tests, with the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import doccheck
from conftest import ROOT, run_server

DOCS = ("docs/tutorial.md", "docs/auth.md", "docs/secrets.md", "docs/csrf.md", "docs/tls.md", "docs/contracts.md")

# `flowlet serve` options a page's server runs with (the page says so where it starts it).
SERVE_ARGS: dict[str, tuple[str, ...]] = {"docs/tls.md": ("--tls-self-signed",)}

# The values the docs' $VARIABLES stand for (a reader sets their own).
ENV = {
    "ALICE_PASSWORD": "correct horse battery staple",
    "NEW_PASSWORD": "Tr0ub4dor&3: with a colon",     # the split is at the first colon
    "BOB_PASSWORD": "hunter2 hunter2",
    "PAYMENT_API_KEY": "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
}

# Blocks a doc leaves out on purpose, with the reason its marker gives. Adding one here is a
# deliberate act: the test below fails when a doc marks a block that is not listed.
NOT_CHECKED: dict[str, list[str]] = {
    "docs/auth.md": [],
    "docs/secrets.md": [],
    "docs/csrf.md": [],
    "docs/tls.md": ["starts a long-running server; the checked examples below use a real one"],
    "docs/tutorial.md": ["runs until stopped; the checks run their own server",
                         "runs until stopped; the checks below send what the browser sends"],
    "docs/contracts.md": [],
}

# Examples that show what Flowlet should do but it does not yet: {(doc, command start): reason}.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

# At least this many commands per doc (a guard against examples silently dropping out: lower
# it only when you remove examples on purpose).
MIN_COMMANDS = {"docs/auth.md": 18, "docs/secrets.md": 33, "docs/csrf.md": 13, "docs/tls.md": 8,
                "docs/tutorial.md": 20, "docs/contracts.md": 20}

PARSED = {name: doccheck.parse_doc(ROOT / name, name) for name in DOCS}
COMMANDS = [c for name in DOCS for c in PARSED[name].commands]
EXCLUDED = [(name, b) for name in DOCS for b in PARSED[name].not_checked]

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None,
                                reason="the docs' examples use curl and openssl")


@pytest.fixture(scope="module")
def doc_run(tmp_path_factory, request):
    runs: dict[str, doccheck.DocRun] = {}

    def get(name: str) -> doccheck.DocRun:
        if name not in runs:
            tmp = tmp_path_factory.mktemp(name.replace("/", "-").removesuffix(".md"))
            args = SERVE_ARGS.get(name, ())
            runs[name] = doccheck.DocRun(PARSED[name], tmp, env=ENV,
                                         start_server=lambda root, env, args=args: run_server(root, *args, env=env))
        return runs[name]

    yield get
    for run in runs.values():
        run.close()
    # Report what was checked and what was left out, in pytest's own output.
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    lines = [f"{PARSED[name].report()} ({run.server_starts} server starts, "
             f"{run.waits} waits of {doccheck.SECRETS_WAIT_S} s)" for name, run in runs.items()]
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
    else:
        print("\n".join(lines))


def _known_failure(command: doccheck.Command) -> str | None:
    for (doc, start), reason in KNOWN_FAILURES.items():
        if command.doc == doc and command.text.startswith(start):
            return reason
    return None


def _param(command: doccheck.Command):
    reason = _known_failure(command)
    marks = [pytest.mark.xfail(reason=reason, strict=True, raises=doccheck.Mismatch)] if reason else []
    return pytest.param(command, marks=marks, id=command.id)


@pytest.mark.parametrize("command", [_param(c) for c in COMMANDS])
def test_doc_example(doc_run, command):
    doccheck.check_result(command, doc_run(command.doc).result(command))


def test_not_checked_blocks_are_reported():
    """Blocks marked <!-- not checked: ... --> show up as a skip (pytest -ra) with their reasons."""
    if EXCLUDED:
        pytest.skip("; ".join(f"{name}:{b.line}: not checked: {b.not_checked}" for name, b in EXCLUDED))


@pytest.mark.parametrize("name", DOCS)
def test_doc_has_no_silently_skipped_examples(name):
    doc = PARSED[name]
    assert not doc.unchecked_commands, (
        f"{name}: command blocks that are neither ```console nor marked <!-- not checked: ... -->: "
        + ", ".join(f"line {b.line}" for b in doc.unchecked_commands))
    assert [b.not_checked for b in doc.not_checked] == NOT_CHECKED[name], doc.report()
    assert len(doc.commands) >= MIN_COMMANDS[name], doc.report()
    assert "flowlet.yaml" in doc.files or any(c.text.startswith("flowlet init ") for c in doc.commands), (
        f"{name} shows no # file: flowlet.yaml and runs no flowlet init")
    for arg in SERVE_ARGS.get(name, ()):
        assert re.search(rf"`flowlet serve my-api [^`]*{re.escape(arg)}", (ROOT / name).read_text()), (
            f"{name} must tell the reader to serve with {arg}, as its checks do")
    consoles = [s for s in doc.steps if s.kind == "console"]
    assert all(s.commands for s in consoles), f"{name}: an empty ```console block"
    for (doc_name, start) in KNOWN_FAILURES:
        if doc_name == name:
            assert any(c.text.startswith(start) for c in doc.commands), f"stale KNOWN_FAILURES entry {start!r}"


def test_curl_sends_secure_cookies_to_127_0_0_1():
    """docs/csrf.md relies on it (the cookie is Secure; curl >= 7.79 treats 127.0.0.1 and
    localhost as secure origins, as browsers do)."""
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    version = tuple(int(x) for x in re.match(r"curl (\d+)\.(\d+)", out).groups())
    assert version >= (7, 79), out.splitlines()[0]


# ---- the harness itself: its comparisons must be able to fail ---------------------------------

HTTP_ANSWER = ("HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
               'www-authenticate: Basic realm="my-api", charset="UTF-8"\r\nx-request-id: 1-1\r\n\r\n'
               '{"error":"authentication required"}')


def test_http_comparison_checks_status_shown_headers_and_json_body():
    head, body = ('HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Basic realm="my-api", charset="UTF-8"',
                  '{"error": "authentication required"}')
    doccheck.check_output(f"{head}\n\n{body}", HTTP_ANSWER)
    wrong = [
        f"{head.replace('401 Unauthorized', '403 Forbidden')}\n\n{body}",    # status
        f"{head.replace('my-api', 'other')}\n\n{body}",                      # a header's value
        f"{head}\nvary: Origin\n\n{body}",                                   # a header it lacks
        f"{head}\n\n{body.replace('required', 'needed')}",                  # the body
        head,                                                                # a body the doc omits
    ]
    for shown in wrong:
        with pytest.raises(doccheck.Mismatch):
            doccheck.check_output(shown, HTTP_ANSWER)


def test_wildcards():
    assert doccheck.body_matches('{"token": "..."}', '{"token":"abc"}')
    assert doccheck.body_matches('{"iat": ..., "sub": "42"}', '{"iat": 17, "sub": "42"}')
    assert not doccheck.body_matches('{"token": "..."}', '{"token":"abc","x":1}')
    assert not doccheck.body_matches('{"token": "..."}', '{"token": 5}')
    assert doccheck.body_matches('{"token": ...}', '{"token": [5]}')
    assert not doccheck.body_matches('{"n": 1}', '{"n": true}')
    assert doccheck.body_matches("a\n...\nz", "a\nb\nc\nz")
    assert doccheck.body_matches("a\n...\nz", "a\nz")
    assert not doccheck.body_matches("a\n...\nz", "a\nb")
    assert doccheck.body_matches("kid ...; x", "kid abc; x")
    assert not doccheck.body_matches("kid ...; x", "kid abc\nq; x")
    assert not doccheck.body_matches("eyJ...", "")
    assert doccheck.text_matches("set-cookie: csrf=...; Path=/api", "set-cookie: csrf=a-b; Path=/api")


def test_console_parsing_and_exclusion_markers(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "```yaml\n# file: flowlet.yaml\nname: x\n```\n\n"
        "```console\n$ A=1\n$ curl -s http://127.0.0.1:8080/a \\\n  -H 'X: y'\n{\"a\": 1}\n\n"
        "$ cat > k.json <<'EOF'\n$ not a command\nEOF\n$ flowlet secrets list -w ws\nno secrets\n```\n\n"
        "<!-- not checked: needs a remote JWKS URL -->\n```console\n$ curl https://example.com\n```\n\n"
        "```sh\nflowlet check\n```\n")
    parsed = doccheck.parse_doc(doc, "x.md")
    assert parsed.files == {"flowlet.yaml": "# file: flowlet.yaml\nname: x\n"}
    assert [c.text for c in parsed.commands] == [
        "A=1", "curl -s http://127.0.0.1:8080/a \\\n  -H 'X: y'", "cat > k.json <<'EOF'\n$ not a command\nEOF",
        "flowlet secrets list -w ws"]
    assert [c.expected for c in parsed.commands] == ["", '{"a": 1}', "", "no secrets"]
    assert parsed.workspace == "ws"
    assert [b.not_checked for b in parsed.not_checked] == ["needs a remote JWKS URL"]
    assert [b.line for b in parsed.unchecked_commands] == [24]


def test_exit_status_rule():
    cmd = doccheck.Command("d.md", "flowlet secrets delete x", "error: no secret named 'x'", 1, 0)
    doccheck.check_result(cmd, doccheck.Result("error: no secret named 'x'", 1))
    with pytest.raises(doccheck.Mismatch):
        doccheck.check_result(cmd, doccheck.Result("error: no secret named 'x'", 0))
    ok = doccheck.Command("d.md", "true", "", 1, 0)
    with pytest.raises(doccheck.Mismatch):
        doccheck.check_result(ok, doccheck.Result("", 7))


# ---- wording a user can follow ----------------------------------------------------------------

# Words that point at documents outside this repository, or at how the project was run.
INTERNAL_WORDING = re.compile(
    r"\bseed\b|(?-i:\bSPEC\b)|\bissue \d|\bfinding \d|product page|hosted product|\bverdict\b|\bgoal\b",
    re.IGNORECASE)


def _user_facing_files() -> list:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("src", "examples"):
        files += [p for p in sorted((ROOT / folder).rglob("*"))
                  if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".yml", ".html", ".txt")
                  and "__pycache__" not in p.parts and ".flowlet" not in p.parts]
    return files


def test_no_internal_wording_in_user_facing_text():
    found = []
    for path in _user_facing_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if INTERNAL_WORDING.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "internal wording a user cannot follow:\n" + "\n".join(found)


def test_docs_say_how_to_run_flowlet_from_the_venv():
    """The README installs into .venv; pages that write a bare `flowlet` say to activate it."""
    readme = (ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in readme
    silent = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        commands = [b.text for b in doccheck.blocks(text) if b.lang in ("console", "sh", "bash")]
        if any(re.search(r"(^|\$ |\| )flowlet ", c, re.M) for c in commands) and not (
                "source .venv/bin/activate" in text and ".venv/bin/flowlet" in text):
            silent.append(page.name)
    assert not silent, f"pages that write `flowlet` without saying how to run it from .venv: {silent}"
