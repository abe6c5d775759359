"""The admin listener: a small HTTP server in the serving process, never on the public port.

It answers ``/healthz``, ``/readyz`` and ``/metrics`` (the workers' snapshots summed, see
``flowlet.server.exposition``), and others mount their own handlers on its route table::

    admin.routes.add("GET", "/healthz", handler)        # one method and exact path
    admin.routes.mount("/console/", handler)            # every method, every path under a prefix
    admin.add_check("redis", lambda: ("degraded", {"error": "connection refused"}))

A handler is a plain function ``AdminRequest -> AdminResponse``; it runs on a thread of its
own per connection (``ThreadingHTTPServer``), so it may block, but must be thread-safe.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Protocol

from flowlet import __version__
from flowlet.server.exposition import Collector, pid_alive, read_snapshots, render

log = logging.getLogger("flowlet.admin")

MAX_BODY = 1024 * 1024
JSON_TYPE = "application/json"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OK, DEGRADED, DOWN = "ok", "degraded", "down"      # a readiness check's state; only DOWN is 503


@dataclass(frozen=True)
class AdminRequest:
    method: str
    path: str                       # without the query string
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    client: str


@dataclass(frozen=True)
class AdminResponse:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, value: object) -> "AdminResponse":
        return cls(status, json.dumps(value, separators=(",", ":")).encode())


Handler = Callable[[AdminRequest], AdminResponse]
Check = Callable[[], tuple[str, dict]]                 # -> (OK | DEGRADED | DOWN, details)


class AdminRoutes:
    """Exact (method, path) routes, then prefix mounts (longest prefix first)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._mounts: list[tuple[str, Handler]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._exact[(method.upper(), path)] = handler

    def mount(self, prefix: str, handler: Handler) -> None:
        self._mounts.append((prefix, handler))
        self._mounts.sort(key=lambda m: -len(m[0]))

    def find(self, method: str, path: str) -> Handler | None:
        handler = self._exact.get((method, path)) or (self._exact.get(("GET", path)) if method == "HEAD" else None)
        if handler is not None:
            return handler
        return next((h for prefix, h in self._mounts if path.startswith(prefix)), None)

    def knows(self, path: str) -> bool:
        return any(p == path for _, p in self._exact) or any(path.startswith(p) for p, _ in self._mounts)


class ServerStatus(Protocol):
    """What the admin listener asks the serving process: ``{"phase": "starting" | "serving" |
    "stopping", "workers": [pid, ...]}`` (the supervisor's ``status()``)."""

    def status(self) -> dict: ...


class AdminListener:
    """``start(server)`` binds and serves on a daemon thread; ``stop()`` closes and cleans up.

    ``run_dir`` is where the workers publish their metrics (``FLOWLET_METRICS_DIR``)."""

    def __init__(self, host: str, port: int, run_dir: Path | None = None):
        self.host = host
        self.port = port
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="flowlet-metrics-"))
        self.routes = AdminRoutes()
        self.checks: dict[str, Check] = {}
        self.server: ServerStatus | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes.add("GET", "/healthz", lambda req: AdminResponse.json(200, {"status": "ok"}))
        self.routes.add("GET", "/readyz", self.readyz)
        self.routes.add("GET", "/metrics", self.metrics)
        self.add_check("secrets", self._secrets_check)

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    # ---- lifecycle (the supervisor's Service interface) -----------------------------------------

    def bind(self) -> None:
        """Bind now, so a port in use is an error before any worker starts."""
        if self._httpd is None:
            server_class = _ThreadingHTTPServer6 if ":" in self.host else ThreadingHTTPServer
            self._httpd = server_class((self.host, self.port), _make_handler(self))
            self._httpd.daemon_threads = True
            self.port = self._httpd.server_address[1]

    def start(self, server: ServerStatus) -> None:
        self.server = server
        self.bind()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="flowlet-admin", daemon=True)
        self._thread.start()
        log.info("admin listener on http://%s:%s", self.host if ":" not in self.host else f"[{self.host}]",
                 self.port)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            if self._thread is not None:
                httpd.shutdown()
            httpd.server_close()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # ---- built-in endpoints ---------------------------------------------------------------------

    def metrics(self, req: AdminRequest) -> AdminResponse:
        return AdminResponse(200, render(Collector(self.run_dir, __version__, self._alive)), PROMETHEUS_TYPE)

    def _status(self) -> dict:
        return self.server.status() if self.server is not None else {"phase": "starting", "workers": []}

    def _alive(self, pid: int, status: dict | None = None) -> bool:
        """A worker of the serving process (when it lists them), else any live process."""
        workers = (status or self._status()).get("workers")
        return pid in workers if workers is not None else pid_alive(pid)

    def _serving(self, status: dict) -> list[dict]:
        """The snapshots of live workers that have loaded the workspace and are not stopping."""
        return [s for s in read_snapshots(self.run_dir)
                if s.get("state") == "serving" and self._alive(s.get("pid", 0), status)]

    def readyz(self, req: AdminRequest) -> AdminResponse:
        status = self._status()
        phase = status.get("phase", "starting")
        loaded = self._serving(status)
        checks: dict[str, dict] = {
            "phase": {"state": OK if phase == "serving" else DOWN, "phase": phase},
            "workspace": {"state": OK if loaded else DOWN, "workers": len(loaded)},
        }
        for name, check in self.checks.items():
            try:
                state, details = check()
            except Exception as exc:         # a broken check says so; it never breaks the endpoint
                state, details = DEGRADED, {"error": type(exc).__name__}
            checks[name] = {"state": state, **details}
        ready = all(c["state"] != DOWN for c in checks.values())
        body = {"status": "ready" if ready else "not ready",
                "degraded": any(c["state"] == DEGRADED for c in checks.values()), "checks": checks}
        return AdminResponse.json(200 if ready else 503, body)

    def _secrets_check(self) -> tuple[str, dict]:
        states = [s["secrets"] for s in self._serving(self._status()) if s.get("secrets")]
        if not states:
            return OK, {}
        up = all(s.get("store_up", True) for s in states)
        return (OK if up else DEGRADED), {"store": "ok" if up else "down",
                                          "age_s": max(s.get("age_s", 0.0) for s in states)}


class _ThreadingHTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _make_handler(admin: AdminListener) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        server_version = "flowlet-admin"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            handler = admin.routes.find(self.command, path)
            if handler is None:
                allowed = admin.routes.knows(path)
                resp = AdminResponse.json(405 if allowed else 404,
                                          {"error": "method not allowed" if allowed else "not found"})
            else:
                resp = self._call(handler, path, query)
            self.send_response(resp.status)
            self.send_header("content-type", resp.content_type)
            self.send_header("content-length", str(len(resp.body)))
            self.send_header("cache-control", "no-store")
            self.send_header("x-content-type-options", "nosniff")
            for name, value in resp.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        def _call(self, handler: Handler, path: str, query: str) -> AdminResponse:
            length = self.headers.get("content-length", "0")
            if not length.isdigit() or int(length) > MAX_BODY:
                return AdminResponse.json(413 if length.isdigit() else 400, {"error": "bad request body"})
            body = self.rfile.read(int(length)) if int(length) else b""
            req = AdminRequest(self.command, path, query, list(self.headers.items()), body,
                               self.client_address[0])
            try:
                return handler(req)
            except Exception:
                log.exception("admin: %s %s failed", self.command, path)
                return AdminResponse.json(500, {"error": "internal error"})

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass                                  # scrapes and probes every few seconds: not worth a line

    return _Handler
