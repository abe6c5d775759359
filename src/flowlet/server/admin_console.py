"""The console on the admin listener: every request under /console goes to flowlet.console.

``mount_console(admin, root)`` is called where the admin listener is built; it does nothing
unless flowlet.yaml has ``console: {users: SECRET}``. The console lives in the serving
(supervisor) process, beside the listener: its sessions are in that process's memory, and a
save asks that process to reload its workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from flowlet.console import Console, ConsoleRequest
from flowlet.console.reload import signal_reload, supervisor_reload
from flowlet.console.web import PREFIX

if TYPE_CHECKING:
    from flowlet.server.admin import AdminListener, AdminRequest, AdminResponse

# The listener sets these itself on every answer.
_LISTENER_HEADERS = frozenset({"content-type", "cache-control", "x-content-type-options", "content-length"})


def mount_console(admin: AdminListener, root: Path) -> Console | None:
    from flowlet.workspace.settings import load_settings

    if load_settings(root).console is None:
        return None
    console = Console(root, reload=_reload(admin))
    admin.routes.mount(PREFIX, lambda req: _answer(console, req))
    return console


def _reload(admin: AdminListener) -> Callable[[], tuple[bool, str]]:
    """The supervisor's reload (with its outcome) when it offers one, else SIGHUP to this process."""

    def reload() -> tuple[bool, str]:
        server = admin.server
        if server is not None and hasattr(server, "request_reload"):
            return supervisor_reload(server)()
        return signal_reload(os.getpid())()

    return reload


def _answer(console: Console, req: AdminRequest) -> AdminResponse:
    from flowlet.server.admin import AdminResponse

    resp = console.handle(ConsoleRequest(method=req.method, path=req.path, query=req.query,
                                         headers=list(req.headers), body=req.body, client=req.client))
    ctype = next((v for k, v in resp.headers if k == "content-type"), "text/plain; charset=utf-8")
    extra = tuple((k, v) for k, v in resp.headers if k not in _LISTENER_HEADERS)
    return AdminResponse(resp.status, resp.body, ctype, extra)
