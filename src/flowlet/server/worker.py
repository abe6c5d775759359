"""One serving process: granian's HTTP worker on the listening socket the supervisor passes down.

Started by the supervisor as ``python -m flowlet.server.worker`` with a JSON ``WorkerSpec`` in
``FLOWLET_WORKER``. The worker dies with the supervisor (parent-death signal, and a watch on the
parent pid as a fallback), tells the supervisor it is ready by writing one byte to a pipe, and
drains on SIGTERM as granian does. ``python -m flowlet.server.worker --check DIR`` is the reload
check: it loads DIR as the server would and writes its FILE:LINE errors to a pipe.

Which granian interface (RSGI; ASGI remains as a fallback) and which protocol limits are used
is decided here only.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from granian.http import HTTP1Settings, HTTP2Settings

# The granian interface the app is served through: "rsgi" (granian's native one, cheaper per
# request) or "asgi". The app answers alike on both.
INTERFACE = "rsgi"

HEADER_READ_TIMEOUT_MS = 10_000        # an HTTP/1 connection that sends no request head is closed
HEADER_BLOCK_BYTES = 64 * 1024          # the most a request head may hold, HTTP/1.1 and HTTP/2 alike
PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor tells one worker; travels as JSON in an environment variable."""
    worker_id: int
    listen_fd: int
    listen_port: int
    ready_fd: int
    parent_pid: int
    backpressure: int
    tls_cert: str | None = None
    tls_key: str | None = None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> "WorkerSpec":
        return cls(**json.loads(text))


# ---- dying with the supervisor ----------------------------------------------------------------

def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies, and watch the parent pid too
    (other systems, or a parent thread that exits, would otherwise leave us serving alone)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:             # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="flowlet-parent-watch",
                     daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGKILL)


# ---- serving ---------------------------------------------------------------------------------

class Handover:
    """The ASGI app as granian sees it. After SIGUSR1 (the supervisor is about to retire this
    worker) HTTP/1 answers carry `Connection: close`, so clients stop reusing connections that
    this worker will soon close. Costs one call per request until then."""

    def __init__(self, app: Callable):
        self.app = app
        self.call = app

    def __call__(self, scope: dict, receive: Callable, send: Callable):
        return self.call(scope, receive, send)

    def start(self, *_: object) -> None:
        self.call = self._closing

    def _closing(self, scope: dict, receive: Callable, send: Callable):
        if scope["type"] != "http" or scope.get("http_version") == "2":
            return self.app(scope, receive, send)      # HTTP/2 has GOAWAY for this

        async def send_closing(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)
        return self.app(scope, receive, send_closing)


def _interfaces() -> dict[str, tuple[Callable, Callable[[], Callable]]]:
    """interface name -> (granian's worker body for it, the app factory)."""
    from granian.server.mp import MPServer
    return {"asgi": (MPServer._spawn_asgi_lifespan_worker, _asgi_app),
            "rsgi": (MPServer._spawn_rsgi_worker, _rsgi_app)}


def _asgi_app() -> Callable:
    from flowlet.server.app import create_app
    handover = Handover(create_app())
    signal.signal(signal.SIGUSR1, handover.start)
    return handover


def _rsgi_app() -> Callable:
    """The app itself (granian reads its __rsgi__, __rsgi_init__ and __rsgi_del__); SIGUSR1
    sets its ``closing`` flag, the RSGI form of what Handover does for ASGI."""
    from flowlet.server.app import create_app
    app = create_app()

    def closing(*_: object) -> None:
        app.closing = True
    signal.signal(signal.SIGUSR1, closing)
    return app


def protocol_settings() -> tuple[HTTP1Settings, HTTP2Settings]:
    from granian.http import HTTP1Settings, HTTP2Settings
    http1 = HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS, keep_alive=True,
                          max_buffer_size=HEADER_BLOCK_BYTES)
    http2 = HTTP2Settings(max_headers_size=HEADER_BLOCK_BYTES)
    return http1, http2


def run_worker(spec: WorkerSpec) -> None:
    from granian._granian import SocketHolder
    from granian.constants import HTTPModes, Loops, RuntimeModes, TaskImpl

    from flowlet.server.log import granian_log_config

    body, factory = _interfaces()[INTERFACE]

    def load_app() -> Callable:
        app = factory()
        os.write(spec.ready_fd, b"r")          # loaded: the supervisor may retire older workers
        os.close(spec.ready_fd)
        return app

    tls = spec.tls_cert is not None
    ssl_ctx = (tls, spec.tls_cert, spec.tls_key, None, "tls1.2", None, [], False)
    sock = ((None, SocketHolder(spec.listen_fd, False, spec.backpressure)), None)
    http1, http2 = protocol_settings()
    body(spec.worker_id, None, load_app, sock, None, Loops.auto, True, "warning", granian_log_config(), (),
         RuntimeModes.mt, 1, 512, 1, 30, spec.backpressure, TaskImpl.asyncio, HTTPModes.auto,
         http1, http2, False, None, None, ssl_ctx, {"url_path_prefix": None}, (None, None))


def worker_main() -> int:
    spec = WorkerSpec.from_env(os.environ.pop("FLOWLET_WORKER"))
    die_with_parent(spec.parent_pid)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)     # reloads are the supervisor's business
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # so is Ctrl-C while loading: the supervisor
                                                     # drains us with SIGTERM
    if spec.tls_cert is None:                        # granian times out silent TLS clients itself
        from flowlet.server import idle
        idle.start(spec.listen_port, HEADER_READ_TIMEOUT_MS / 1000)
    run_worker(spec)
    return 0


# ---- the reload check ------------------------------------------------------------------------

def check_main(root: str, error_fd: int) -> int:
    """Load the workspace as a worker would; FILE:LINE errors go to ``error_fd``, one a line.
    stdout stays the terminal's: development secrets created here print their credentials once."""
    from pathlib import Path

    from flowlet.errors import ConfigErrors
    from flowlet.workspace.devsecrets import ensure_dev_secrets
    from flowlet.workspace.loader import load_workspace

    with os.fdopen(error_fd, "w") as out:
        try:
            ensure_dev_secrets(Path(root))
            load_workspace(root, serving=True).close()
        except ConfigErrors as exc:
            out.write("".join(f"{err}\n" for err in exc.errors))
            return 1
        except Exception as exc:    # a store that cannot open, an unreadable file: still a refusal
            out.write(f"error: {type(exc).__name__}: {exc}\n")
            return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:                  # --check ROOT ERROR_FD PARENT_PID
        die_with_parent(int(sys.argv[4]))
        sys.exit(check_main(sys.argv[2], int(sys.argv[3])))
    sys.exit(worker_main())
