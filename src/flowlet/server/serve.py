"""Run a workspace: the supervisor (this process) and its granian workers.

Who does what: ``supervisor.py`` binds the socket, starts, reloads and drains workers, and is
where services such as an admin listener are plugged in; ``worker.py`` is one granian worker
and the only place that knows the granian interface and protocol settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowlet.server.log import FORMAT_ENV
from flowlet.server.metrics import RUN_DIR_ENV
from flowlet.server.supervisor import ServeOptions, Service, Supervisor


def serve(root: Path, *, host: str, port: int, workers: int, tls_cert: str | None, tls_key: str | None,
          access_log: bool = True, log_level: str = "info", drain_timeout: float = 30.0, watch: bool = False,
          services: tuple[Service, ...] = (), log_format: str = "json", dev: bool = False) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code. Raises OSError when the address
    cannot be bound."""
    from flowlet.server.log import setup_logging

    root = root.resolve()
    # Workers read these (see server.app.create_app).
    os.environ["FLOWLET_WORKSPACE"] = str(root)
    os.environ["FLOWLET_ACCESS_LOG"] = "1" if access_log else "0"
    os.environ["FLOWLET_LOG_LEVEL"] = log_level
    os.environ["FLOWLET_DEV"] = "1" if dev else "0"
    os.environ[FORMAT_ENV] = log_format
    for service in services:
        run_dir = getattr(service, "run_dir", None)
        if run_dir is not None:               # the admin listener: workers publish their metrics there
            os.environ[RUN_DIR_ENV] = str(run_dir)
    setup_logging(log_level)
    opts = ServeOptions(root=root, host=host, port=port, workers=workers,
                        tls_cert=str(Path(tls_cert).resolve()) if tls_cert else None,
                        tls_key=str(Path(tls_key).resolve()) if tls_key else None,
                        drain_timeout=drain_timeout, watch=watch)
    return Supervisor(opts, services).run()
