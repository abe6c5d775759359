"""Run a workspace on granian: workers, TLS with HTTP/2, one "listening on URL" line, SIGTERM drain."""

from __future__ import annotations

import os
from pathlib import Path

from flowlet.server.admin import AdminListener
from flowlet.server.log import FORMAT_ENV
from flowlet.server.metrics import RUN_DIR_ENV


class _GranianStatus:
    """The admin listener's view of granian's main process: starting, serving, stopping."""

    def __init__(self, server: object):
        self.server = server
        self.started = False

    def status(self) -> dict:
        stopping = getattr(self.server, "interrupt_signal", False)
        return {"phase": "stopping" if stopping else "serving" if self.started else "starting"}


def serve(root: Path, *, host: str, port: int, workers: int, tls_cert: str | None, tls_key: str | None,
          access_log: bool = True, log_level: str = "info", admin: AdminListener | None = None,
          log_format: str = "json") -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    os.environ["FLOWLET_WORKSPACE"] = str(root.resolve())
    os.environ["FLOWLET_ACCESS_LOG"] = "1" if access_log else "0"
    os.environ["FLOWLET_LOG_LEVEL"] = log_level
    os.environ[FORMAT_ENV] = log_format
    from flowlet.server.log import setup_logging
    setup_logging(log_level)
    if admin is not None:
        os.environ[RUN_DIR_ENV] = str(admin.run_dir)      # the workers publish their metrics there
    kwargs = {}
    if tls_cert:
        kwargs.update(ssl_cert=Path(tls_cert).resolve(), ssl_key=Path(tls_key).resolve())
        from granian.constants import SSLProtocols
        kwargs["ssl_protocol_min"] = SSLProtocols.tls12
    scheme = "https" if tls_cert else "http"
    shown_host = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown_host}:{port}"

    server = Granian(
        "flowlet.server.app:create_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        http=HTTPModes.auto,
        websockets=False,
        loop=Loops.auto,
        log_enabled=True,
        log_level="warning",
        log_access=False,
        working_dir=root.resolve(),
        **kwargs,
    )

    status = _GranianStatus(server)

    @server.on_startup
    def _ready() -> None:
        # The socket is bound before this hook runs; connections queue until a worker accepts.
        status.started = True
        print(f"listening on {url}", flush=True)

    if admin is not None:
        admin.start(status)
    try:
        server.serve()
    finally:
        if admin is not None:
            admin.stop()
    return 0

