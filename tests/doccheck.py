"""Run a doc page's examples for real and compare what they print with what the page shows.

The conventions a checked page follows (docs/auth.md, docs/secrets.md, docs/csrf.md):

* **Workspace files**: a fenced block whose first line is ``# file: PATH`` (in HTML:
  ``<!-- file: PATH -->``) is written to PATH inside the example workspace (the block as
  shown, comment line included).
* **Commands**: a ```` ```console ```` block holds ``$ command`` lines, each followed by the
  output it prints (stdout and stderr, as a terminal shows them). A command continues on the
  next line after a trailing ``\\``, and a here-document (``<<'EOF'``) up to its terminator.
  Each block runs in one ``bash`` (so ``TOKEN=$(...)`` carries over to the next command of the
  block, not to the next block), in a folder that holds the workspace under the name the
  commands give to ``-w`` (``my-api``). ``flowlet`` runs ``python -m flowlet.cli``, and
  ``http://127.0.0.1:8080`` (or ``localhost:8080``; ``https://...:8443`` for a page served
  with TLS) is the real server: ``flowlet serve`` on a free port, started when a block first
  needs it and restarted when a later ``# file:`` block changes the workspace. After a ``flowlet secrets set|delete|rotate-csrf`` while it runs, the
  harness waits 2.2 s before the server is used again (a running server sees changes within 2 s).
* **Comparison**: output that starts with ``HTTP/`` (``curl -i``) is compared by status line,
  the headers shown (names case-insensitive; headers the page leaves out are not checked) and
  body. A body, or a whole output, that is JSON is compared as JSON. Otherwise lines are
  compared exactly (trailing spaces aside). Empty shown output means the command prints nothing.
* **Wildcards**, for values that cannot be fixed (random tokens, key ids, times): ``...``
  inside a line or a JSON string matches any text; a line that is only ``...`` matches any
  number of lines; in JSON, ``"..."`` matches any string and a bare ``...`` any value.
* **Exit status**: a command must exit 0, unless the output shown has a line that starts with
  ``error:`` (flowlet's error format); then it must not exit 0.
* **Exclusions**: ``<!-- not checked: REASON -->`` right before a fenced block leaves it out;
  the harness counts and reports these. Any other block that looks like commands (a shell
  language, or lines starting with ``$ ``, ``curl ``, ``flowlet `` or ``openssl ``) and is not
  a ```` ```console ```` block is a failure: no example is skipped silently.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DOC_URLS = ("http://127.0.0.1:8080", "http://localhost:8080", "https://127.0.0.1:8443", "https://localhost:8443")
WILDCARD = "..."
SECRETS_WAIT_S = 2.2            # a running server sees secret changes within 2 s
SHELL_LANGS = {"sh", "bash", "shell", "zsh", "shell-session"}
COMMAND_START = re.compile(r"^(\$ |curl |flowlet |openssl )", re.M)
MUTATES_SECRETS = re.compile(r"\bflowlet\s+secrets\s+(set|delete|rotate-csrf)\b")
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NOT_CHECKED = re.compile(r"<!--\s*not checked:\s*((?:(?!-->).)*?)\s*-->\s*\Z", re.S)
_FILE_LINE = re.compile(r"(?:#\s*file:\s*(\S+)|<!--\s*file:\s*(\S+)\s*-->)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_]\w*)\2")


# ---- parsing ---------------------------------------------------------------------------------

@dataclass
class Block:
    lang: str
    text: str
    line: int                          # line of the opening fence (1-based)
    not_checked: str | None = None     # the reason given in the marker


@dataclass
class Command:
    doc: str                           # the doc's name, e.g. "docs/auth.md"
    text: str                          # the shell command as shown (continuations included)
    expected: str                      # the output shown under it
    line: int                          # the line of its `$ ` in the doc
    block: int                         # index into Doc.steps

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def __str__(self) -> str:
        return f"{self.id}: $ {self.text}"


@dataclass
class Step:
    kind: str                          # "file" or "console"
    block: Block
    path: str | None = None            # kind == "file"
    commands: list[Command] = field(default_factory=list)


@dataclass
class Doc:
    name: str
    steps: list[Step]
    not_checked: list[Block]
    unchecked_commands: list[Block]    # command-like blocks that are neither console nor marked
    workspace: str                     # the folder name the commands use with -w

    @property
    def commands(self) -> list[Command]:
        return [c for s in self.steps for c in s.commands]

    @property
    def files(self) -> dict[str, str]:
        return {s.path: s.block.text for s in self.steps if s.kind == "file"}

    def report(self) -> str:
        consoles = sum(1 for s in self.steps if s.kind == "console")
        lines = [f"{self.name}: {len(self.commands)} commands in {consoles} console blocks checked, "
                 f"{len(self.files)} workspace files, {len(self.not_checked)} blocks not checked"]
        lines += [f"  {self.name}:{b.line}: not checked: {b.not_checked}" for b in self.not_checked]
        return "\n".join(lines)


def blocks(text: str) -> list[Block]:
    """Every fenced block with its language, text, line and not-checked marker."""
    found = []
    for m in _FENCE.finditer(text):
        marker = _NOT_CHECKED.search(text, 0, m.start())
        found.append(Block(lang=m.group(1), text=m.group(2), line=text.count("\n", 0, m.start()) + 1,
                           not_checked=marker.group(1) if marker else None))
    return found


def parse_doc(path: Path, name: str | None = None) -> Doc:
    text = path.read_text()
    name = name or path.name
    steps: list[Step] = []
    not_checked: list[Block] = []
    unchecked: list[Block] = []
    for block in blocks(text):
        if block.not_checked is not None:
            not_checked.append(block)
            continue
        first = block.text.split("\n", 1)[0]
        file_match = _FILE_LINE.fullmatch(first.strip()) if first.lstrip().startswith(("#", "<!--")) else None
        if file_match:
            steps.append(Step("file", block, path=file_match.group(1) or file_match.group(2)))
        elif block.lang == "console":
            step = Step("console", block)
            step.commands = parse_console(block, doc=name, index=len(steps))
            steps.append(step)
        elif block.lang in SHELL_LANGS or COMMAND_START.search(block.text):
            unchecked.append(block)
    workspaces = {m.group(1) for s in steps for c in s.commands
                  for m in re.finditer(r"\bflowlet\s[^|;&\n]*?\s-w\s+([^\s;|&)]+)", c.text)}
    if len(workspaces) > 1:
        raise ValueError(f"{name}: the commands use more than one workspace: {sorted(workspaces)}")
    return Doc(name, steps, not_checked, unchecked, workspaces.pop() if workspaces else "my-api")


def parse_console(block: Block, *, doc: str, index: int) -> list[Command]:
    lines = block.text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if line.strip():
                raise ValueError(f"{doc}:{block.line + 1 + i}: output before the first `$ ` command")
            i += 1
            continue
        start = i
        cmd = [line[2:]]
        while cmd[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd.append(lines[i])
        heredoc = _HEREDOC.search("\n".join(cmd))
        if heredoc:
            strip_tabs, word = heredoc.group(1) == "-", heredoc.group(3)
            while True:
                i += 1
                if i >= len(lines):
                    raise ValueError(f"{doc}:{block.line + 1 + start}: here-document without {word}")
                cmd.append(lines[i])
                if (lines[i].lstrip("\t") if strip_tabs else lines[i]) == word:
                    break
        i += 1
        out = []
        while i < len(lines) and not lines[i].startswith("$ "):
            out.append(lines[i])
            i += 1
        while out and not out[-1].strip():
            out.pop()
        commands.append(Command(doc=doc, text="\n".join(cmd), expected="\n".join(out),
                                line=block.line + 1 + start, block=index))
    return commands


# ---- comparing -------------------------------------------------------------------------------

class Mismatch(AssertionError):
    pass


def _line_regex(line: str) -> str:
    return "[^\n]*".join(re.escape(part) for part in line.split(WILDCARD))


def text_matches(expected: str, actual: str) -> bool:
    """Line by line, trailing spaces ignored; ``...`` in a line is any text, alone any lines."""
    exp = [l.rstrip() for l in expected.replace("\r\n", "\n").split("\n")]
    act = "".join(l.rstrip() + "\n" for l in actual.replace("\r\n", "\n").split("\n"))
    pattern = "".join(r"(?:[^\n]*\n)*?" if l.strip() == WILDCARD else _line_regex(l) + "\n" for l in exp)
    return re.fullmatch(pattern, act) is not None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SENTINEL = "\x00doccheck-any\x00"


def load_expected_json(text: str) -> Any:
    """JSON, where a bare ``...`` outside strings stands for any value. ValueError if not JSON."""
    out, pos = [], 0
    for m in _JSON_STRING.finditer(text):
        out.append(text[pos:m.start()].replace(WILDCARD, json.dumps(_SENTINEL)))
        out.append(m.group(0))
        pos = m.end()
    out.append(text[pos:].replace(WILDCARD, json.dumps(_SENTINEL)))
    return json.loads("".join(out))


def json_matches(expected: Any, actual: Any) -> bool:
    if expected == _SENTINEL:          # a bare ... : any value
        return True
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(json_matches(v, actual[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(json_matches(e, a) for e, a in zip(expected, actual)))
    if isinstance(expected, str) and WILDCARD in expected:
        return isinstance(actual, str) and re.fullmatch(_line_regex(expected), actual, re.S) is not None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return type(expected) is type(actual) and expected == actual


def body_matches(expected: str, actual: str) -> bool:
    expected, actual = expected.strip(), actual.strip()
    if expected[:1] in ("{", "["):
        try:
            want = load_expected_json(expected)
        except ValueError:
            pass
        else:
            try:
                got = json.loads(actual)
            except ValueError:
                return False
            return json_matches(want, got)
    return text_matches(expected, actual)


def split_http(text: str) -> tuple[str, list[tuple[str, str]], str]:
    """(status line, [(lower-case name, value)], body) of ``curl -i`` output; 1xx answers skipped."""
    text = text.replace("\r\n", "\n")
    while True:
        head, _, body = text.partition("\n\n")
        lines = head.strip("\n").split("\n")
        status = lines[0].strip()
        if re.match(r"HTTP/\S+ 1\d\d\b", status) and body.startswith("HTTP/"):
            text = body
            continue
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return status, headers, body


def check_output(expected: str, actual: str) -> None:
    """Raise Mismatch (with a readable explanation) unless ``actual`` is what the doc shows."""
    if not expected.strip():
        if actual.strip():
            raise Mismatch(f"the doc shows no output, the command printed:\n{actual}")
        return
    if re.match(r"HTTP/\S+ \d{3}", expected):
        want_status, want_headers, want_body = split_http(expected)
        if not re.match(r"HTTP/\S+ \d{3}", actual):
            raise Mismatch(f"expected an HTTP answer ({want_status}), got:\n{actual}")
        status, headers, body = split_http(actual)
        problems = []
        if not text_matches(want_status, status):
            problems.append(f"status line: doc {want_status!r}, got {status!r}")
        for name, value in want_headers:
            values = [v for n, v in headers if n == name]
            if not any(text_matches(value, v) for v in values):
                problems.append(f"header {name}: doc {value!r}, got {values or 'none'}")
        body_ok = body_matches(want_body, body) if want_body.strip() else not body.strip()
        if not body_ok:
            problems.append(f"body: doc {want_body.strip()!r}, got {body.strip()!r}")
        if problems:
            raise Mismatch("\n".join(problems) + f"\n--- the whole answer:\n{actual}")
        return
    if not body_matches(expected, actual):
        raise Mismatch(f"--- the doc shows:\n{expected}\n--- the command printed:\n{actual}")


def check_result(command: Command, result: "Result") -> None:
    shows_error = any(l.startswith("error:") for l in command.expected.split("\n"))
    try:
        check_output(command.expected, result.output)
        if shows_error and result.status == 0:
            raise Mismatch("the doc shows an error, but the command exited 0")
        if not shows_error and result.status != 0:
            raise Mismatch(f"exit status {result.status}; output:\n{result.output}")
    except Mismatch as exc:
        raise Mismatch(f"{command}\n{exc}") from None


# ---- running ---------------------------------------------------------------------------------

@dataclass
class Result:
    output: str
    status: int


class DocRun:
    """Runs one doc's steps in order, on demand; remembers each command's result.

    ``start_server(workspace) -> context manager yielding an object with .url`` is
    conftest.run_server; ``flowlet`` is the argv that stands for the command.
    """

    def __init__(self, doc: Doc, tmp: Path, *, start_server: Callable, env: dict[str, str],
                 flowlet: list[str] | None = None):
        self.doc = doc
        self.tmp = tmp
        self.root = tmp / doc.workspace
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_server = start_server
        self.env = {k: v for k, v in os.environ.items() if k != "FLOWLET_MASTER_KEY"}
        self.env.update(env)
        self.flowlet = flowlet or [sys.executable, "-m", "flowlet.cli"]
        self.done = 0                  # steps run so far
        self.results: dict[str, Result] = {}
        self.failure: BaseException | None = None
        self._server_stack: ExitStack | None = None
        self.server = None
        self.server_starts = 0
        self.waits = 0

    # the server -------------------------------------------------------------------------------
    def _ensure_server(self):
        if self.server is None:
            stack = ExitStack()
            self.server = stack.enter_context(self.start_server(self.root, env=self.env))
            self._server_stack = stack
            self.server_starts += 1
        return self.server

    def stop_server(self) -> None:
        if self._server_stack is not None:
            self._server_stack.close()
        self._server_stack = self.server = None

    close = stop_server

    # steps ------------------------------------------------------------------------------------
    def result(self, command: Command) -> Result:
        self.run_until(command.block)
        if command.id not in self.results:
            raise RuntimeError(f"{command}: the command did not run (see the failure above it)")
        return self.results[command.id]

    def run_until(self, index: int) -> None:
        while self.done <= index:
            if self.failure is not None:
                raise RuntimeError(f"{self.doc.name}: an earlier step failed: {self.failure}")
            step = self.doc.steps[self.done]
            try:
                if step.kind == "file":
                    self._write(step)
                else:
                    self._run_console(step, self.done)
            except BaseException as exc:
                self.failure = exc
                raise
            self.done += 1
        if self.done == len(self.doc.steps):
            self.stop_server()

    def _write(self, step: Step) -> None:
        path = self.root / step.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(step.block.text)
        self.stop_server()             # a new or changed flow needs a restart: the next use starts one

    def _uses_server(self, text: str) -> bool:
        return any(url in text for url in DOC_URLS)

    def _server_needed_after(self, index: int, command_pos: int) -> bool:
        """Whether the running server is used again before a file step restarts it."""
        rest = self.doc.steps[index].commands[command_pos + 1:]
        if any(self._uses_server(c.text) for c in rest):
            return True
        for step in self.doc.steps[index + 1:]:
            if step.kind == "file":
                return False
            if any(self._uses_server(c.text) for c in step.commands):
                return True
        return False

    def _run_console(self, step: Step, index: int) -> None:
        if any(self._uses_server(c.text) for c in step.commands):
            self._ensure_server()
        marker = f"@@doccheck-{uuid.uuid4().hex}@@"
        flowlet = " ".join(_sh_quote(a) for a in self.flowlet)
        script = ["exec 2>&1", "set -u", f"flowlet() {{ {flowlet} \"$@\"; }}"]
        for pos, command in enumerate(step.commands):
            text = command.text
            if self.server is not None:
                port = self.server.url.rsplit(":", 1)[1].rstrip("/")
                for url in DOC_URLS:
                    text = text.replace(url, url.rsplit(":", 1)[0] + ":" + port)
            script.append(text)
            script.append(f"__rc=$?; printf '\\n{marker} %d\\n' \"$__rc\"")
            if (self.server is not None and MUTATES_SECRETS.search(command.text)
                    and self._server_needed_after(index, pos)):
                script.append(f"sleep {SECRETS_WAIT_S}")
                self.waits += 1
            script.append("(exit $__rc)")
        started = time.monotonic()
        proc = subprocess.run(["bash", "-c", "\n".join(script) + "\n"], cwd=self.tmp, env=self.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout=120)
        out = proc.stdout.decode("utf-8", "replace")
        parts = re.split(rf"\n{re.escape(marker)} (\d+)\n", out)
        # parts: [out1, rc1, out2, rc2, ..., tail]
        for pos, command in enumerate(step.commands):
            if 2 * pos + 1 < len(parts) - 1:
                output, status = parts[2 * pos], int(parts[2 * pos + 1])
                self.results[command.id] = Result(output.rstrip("\n"), status)
        if len(parts) != 2 * len(step.commands) + 1:
            raise RuntimeError(f"{self.doc.name}:{step.block.line}: the block stopped early "
                               f"(bash exit {proc.returncode} after {time.monotonic() - started:.1f} s); "
                               f"output:\n{out}")


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'" if re.search(r"[^\w@%+=:,./-]", text) else text
