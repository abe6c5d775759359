"""Serve a Console on a real socket for tests, as the admin listener does: every request under
/console goes to ``Console.handle`` and its answer is sent back unchanged."""

from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flowlet.console import Console, ConsoleRequest


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    console: Console

    def _serve(self) -> None:
        path, _, qs = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if not path.startswith("/console"):
            self._send(404, [("content-type", "text/plain")], b"not found")
            return
        resp = self.console.handle(ConsoleRequest(
            method=self.command, path=path, query=qs, headers=list(self.headers.items()), body=body,
            client=self.client_address[0], secure=False))
        self._send(resp.status, resp.headers, resp.body)

    do_GET = do_POST = do_HEAD = do_PUT = _serve

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def serve_console(root: Path, reload=None) -> Iterator[tuple[str, Console]]:
    """-> (base URL, console) while the block runs."""
    console = Console(root, reload=reload)
    handler = type("Handler", (_Handler,), {"console": console})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", console
    finally:
        server.shutdown()
        server.server_close()
        console.close()
