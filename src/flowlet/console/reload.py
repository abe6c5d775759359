"""Reload hooks for the console: after a save, ask the server to serve the new files.

``supervisor_reload`` uses the `flowlet serve` supervisor's controls (``request_reload`` and
``status``) and waits until the reload has finished, so the page can say whether the server now
serves the change or kept the old workspace (and why). ``signal_reload`` sends SIGHUP to a
server process, for a console run beside a server it does not live in.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Protocol

POLL_S = 0.1


class Supervised(Protocol):
    def request_reload(self) -> None: ...

    def status(self) -> dict: ...


def supervisor_reload(supervisor: Supervised, *, timeout_s: float = 60.0,
                      clock: Callable[[], float] = time.time) -> Callable[[], tuple[bool, str]]:
    def reload() -> tuple[bool, str]:
        asked = clock()
        supervisor.request_reload()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = supervisor.status()
            last = status.get("last_reload") or {}
            if not status.get("reloading") and (last.get("at") or 0) >= asked:
                if last.get("ok"):
                    return True, "The server now serves it."
                errors = "; ".join(str(e) for e in last.get("errors") or ()) or "see the server log"
                return False, f"the server kept the previous workspace ({errors})"
            time.sleep(POLL_S)
        return False, f"the reload did not finish within {timeout_s:.0f} s; see the server log"

    return reload


def signal_reload(pid: int) -> Callable[[], tuple[bool, str]]:
    def reload() -> tuple[bool, str]:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            return False, f"could not signal the server (pid {pid}): {exc.strerror}"
        return True, "The server is reloading."

    return reload
