"""Shared test helpers: write a workspace, run the real server on a free port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"
FLOWLET = [sys.executable, "-m", "flowlet.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(tmp_path: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text, dedented) under tmp_path; flowlet.yaml defaults to empty."""
    files = dict(files)
    files.setdefault("flowlet.yaml", "name: test\n")
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def flowlet(*args: str, cwd: Path | None = None, input: str | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the `flowlet` command; returns the CompletedProcess (text mode)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*FLOWLET, *args], cwd=cwd, input=input, capture_output=True, text=True,
                          env=full_env, timeout=timeout)


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, stdout: list[str], stderr_path: Path):
        self.proc = proc
        self.url = url
        self.stdout = stdout
        self.stderr_path = stderr_path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@contextmanager
def run_uvicorn(workspace: Path, *args: str, env: dict | None = None, ready_timeout: float = 40):
    """Flowlet's ASGI entry point (`flowlet.asgi:app`) on a real uvicorn, on a free port."""
    port = free_port()
    full_env = {**os.environ, "FLOWLET_WORKSPACE": str(workspace), **(env or {})}
    stderr_file = tempfile.NamedTemporaryFile(prefix="uvicorn-stderr-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "flowlet.asgi:app", "--host", "127.0.0.1",
                             "--port", str(port), "--lifespan", "on", "--no-access-log", *args],
                            stdout=subprocess.DEVNULL, stderr=stderr_file, env=full_env)
    scheme = "https" if "--ssl-certfile" in args else "http"
    server = Server(proc, f"{scheme}://127.0.0.1:{port}", [], Path(stderr_file.name))
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                httpx.get(server.url + "/__ready__", verify=False, timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn never answered:\n{server.stderr}")
                time.sleep(0.05)
        yield server
    finally:
        server.stop()
        stderr_file.close()


@contextmanager
def run_server(workspace: Path, *args: str, env: dict | None = None, ready_timeout: float = 40):
    """Start `flowlet serve WORKSPACE --port FREE ARGS` and wait until it answers HTTP."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    stderr_file = tempfile.NamedTemporaryFile(prefix="flowlet-stderr-", suffix=".log", delete=False)
    proc = subprocess.Popen([*FLOWLET, "serve", str(workspace), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=full_env)
    lines: list[str] = []
    got_url = threading.Event()

    def reader() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("listening on "):
                got_url.set()

    threading.Thread(target=reader, daemon=True).start()
    server = Server(proc, "", lines, Path(stderr_file.name))
    try:
        deadline = time.monotonic() + ready_timeout
        while not got_url.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start (exit {proc.poll()}):\n{server.stderr}\n{lines}")
        url = next(l for l in lines if l.startswith("listening on ")).split(" ", 2)[2].strip()
        server.url = url
        verify = False
        while True:
            try:
                httpx.get(url + "/__ready__", verify=verify, timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server never answered:\n{server.stderr}")
                time.sleep(0.05)
        yield server
    finally:
        server.stop()
        stderr_file.close()


class JsonServer:
    """A real HTTP server on a free port: every GET is recorded in ``hits`` and answered ``status``
    with ``answer(path, headers)`` as JSON (by default: the ``body`` attribute)."""

    def __init__(self, body=None, *, answer=None, path: str = "/"):
        self.body = body
        self.status = 200
        self.hits: list[str] = []
        answer = answer or (lambda path, headers: self.body)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                data = json.dumps(answer(self.path, self.headers)).encode()
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def workspace(tmp_path):
    """A factory: workspace({...files}) -> Path."""
    def make(files: dict[str, str]) -> Path:
        return make_workspace(tmp_path, files)
    return make


PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose tables live in a fresh schema, dropped afterwards."""
    import uuid

    import psycopg
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        conn = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:  # pragma: no cover - scripts/test.sh starts PostgreSQL
        pytest.fail(f"PostgreSQL not reachable at {PG_BASE}: {exc}")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def assert_json_error(resp: httpx.Response, status: int, message: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    if message is not None:
        assert body["error"] == message
    return body


__all__ = ["run_server", "run_uvicorn", "make_workspace", "flowlet", "free_port", "assert_json_error", "JsonServer", "DEMO", "re"]
