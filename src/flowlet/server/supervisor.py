"""The `flowlet serve` process: owns the listening socket and runs generations of workers.

- The supervisor binds and listens once; every worker accepts on that same socket, so a port
  accepts connections from the moment it is bound until the server stops, across reloads and
  worker restarts (connections queue in the kernel while no worker is accepting).
- "listening on URL" is printed once every worker of the first generation has loaded.
- A reload (SIGHUP, ``request_reload()``, a file change under ``watch``) first checks the new
  workspace in a child process; a failure is logged with its FILE:LINE errors and nothing else
  changes. Otherwise a new generation starts, and only once all of it has loaded is the old one
  retired: SIGUSR1 (its HTTP/1 answers say `Connection: close`, so keep-alive clients move
  over), then SIGTERM: it stops accepting and finishes its in-flight requests on the old workspace.
  (granian stops accepting and closes unanswered connections in one step, so a connection an
  old worker accepted an instant before SIGTERM, its request not yet read, is closed: rare.)
- SIGTERM or SIGINT drains every worker for up to ``drain_timeout`` seconds, then kills what is
  left and exits 0. A second SIGINT (Ctrl-C twice) cuts the drain short.
- Signals only write a byte to a pipe (``signal.set_wakeup_fd``); the main thread does all the
  work, so a signal can come at any moment. Workers are always started from the main thread:
  the kernel's parent-death signal fires when the *thread* that started a worker ends.

Services (the admin listener) run beside the workers: see ``Service``.
"""

from __future__ import annotations

import enum
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from flowlet.server.worker import WorkerSpec

log = logging.getLogger("flowlet.supervisor")

WATCH_INTERVAL_S = 0.5
RESPAWN_DELAY_S = 1.0
# Before a reload stops the old workers, they answer with `Connection: close` this long: busy
# keep-alive clients move over, rather than have a request meet a connection being closed.
HANDOVER_S = 0.5
_RELOAD, _STOP = 200, 201        # command bytes on the wakeup pipe; signal numbers are below 65
_WORKER = [sys.executable, "-m", "flowlet.server.worker"]


class Phase(enum.Enum):
    STARTING = "starting"        # the first generation is loading; nothing answers yet
    SERVING = "serving"
    STOPPING = "stopping"        # draining; the server answers no new connections


@dataclass(frozen=True)
class ServeOptions:
    root: Path
    host: str
    port: int
    workers: int = 1
    tls_cert: str | None = None
    tls_key: str | None = None
    drain_timeout: float = 30.0
    watch: bool = False
    backlog: int = 1024

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"


class Service(Protocol):
    """Something that runs in the supervisor process beside the workers, e.g. an admin listener.

    ``start`` is called in the main thread once the listening socket is bound and before the
    first workers start; it must return quickly (start a thread or a loop of its own). ``stop``
    is called once the workers are gone. From any thread a service may call
    ``supervisor.status()``, ``request_reload()`` and ``request_stop()``."""

    def start(self, supervisor: "Supervisor") -> None: ...

    def stop(self) -> None: ...


@dataclass(eq=False)
class Worker:
    proc: subprocess.Popen
    ready_fd: int                        # one byte arrives once the workspace is loaded
    exit_fd: int                         # a pidfd: readable once the process has exited
    generation: int
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    handover_until: float | None = None  # answering with `Connection: close` until then
    deadline: float | None = None        # when a drain is cut short, once asked to stop


class Supervisor:
    def __init__(self, opts: ServeOptions, services: tuple[Service, ...] = (),
                 announce: Callable[[str], None] | None = None):
        self.opts = opts
        self.services = services
        self.announce = announce or (lambda line: print(line, flush=True))
        self.phase = Phase.STARTING
        self.exit_code = 0
        self.generation = 0
        self.current: list[Worker] = []
        self.pending: list[Worker] | None = None      # a generation still loading
        self.workers: dict[int, Worker] = {}           # exit fd -> every live worker
        self.respawns: list[float] = []                # due times of replacements for crashed workers
        self.check: subprocess.Popen | None = None
        self.check_out: list[bytes] = []
        self.reload_again = False
        self.last_reload: dict = {}
        self.sel = selectors.DefaultSelector()
        self.sock: socket.socket | None = None
        self._wake_w = -1
        self._watched: dict[str, tuple[int, int]] | None = None
        self._changed_at: float | None = None
        self._next_watch = 0.0

    # ---- thread-safe controls for services ---------------------------------------------------

    def request_reload(self) -> None:
        self._poke(_RELOAD)

    def request_stop(self) -> None:
        self._poke(_STOP)

    def status(self) -> dict:
        """A snapshot: phase, generation, the serving workers' pids, the last reload's outcome."""
        return {"phase": self.phase.value, "generation": self.generation,
                "workers": [w.proc.pid for w in list(self.current)], "reloading": self.pending is not None
                or self.check is not None, "last_reload": dict(self.last_reload)}

    def _poke(self, command: int) -> None:
        try:
            os.write(self._wake_w, bytes([command]))
        except OSError:
            pass                                       # already stopped, or a wakeup is pending

    # ---- the main loop -----------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        try:
            self.sock = self._bind()
            for service in self.services:
                service.start(self)
            if self.opts.watch:
                self._watched = _scan(self.opts.root)
            self._start_generation()
            while self.workers or self.phase is not Phase.STOPPING:
                self._step()
        finally:
            self._kill_all()
            for service in self.services:
                service.stop()
            if self.sock is not None:
                self.sock.close()
        return self.exit_code

    def _step(self) -> None:
        now = time.monotonic()
        due = [t for w in self.workers.values() for t in (w.deadline, w.handover_until) if t is not None]
        due += self.respawns
        if self._watched is not None and self.phase is not Phase.STOPPING:
            due.append(self._next_watch)
        timeout = max(0.0, min(due) - now) if due else None
        events = self.sel.select(timeout)
        if events:           # one at a time: a handler may close fds that later events name
            key = events[0][0]
            key.data(key.fd)
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.handover_until is not None and now >= w.handover_until:
                self._drain([w])
            if w.deadline is not None and now >= w.deadline and w.proc.poll() is None:
                log.warning("worker %s still busy after the drain timeout: cut", w.proc.pid)
                w.proc.kill()
                w.deadline = None
        if self.respawns and now >= self.respawns[0] and self.phase is Phase.SERVING:
            self.respawns.pop(0)
            self.current.append(self._spawn(len(self.current) + 1))
        if self._watched is not None and now >= self._next_watch:
            self._poll_files(now)

    def _install_signals(self) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake_w = w
        self.sel.register(r, selectors.EVENT_READ, self._on_wake)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _noop)
        import flowlet
        if flowlet._sigterm_seen:     # a start-up SIGTERM whose SystemExit was lost: stop now
            os.write(w, bytes([_STOP]))

    def _on_wake(self, fd: int) -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        for byte in data:
            if byte == signal.SIGINT and self.phase is Phase.STOPPING:
                self.cut()                             # Ctrl-C twice: do not wait
            elif byte in (signal.SIGTERM, signal.SIGINT, _STOP):
                self.stop()
            elif byte in (signal.SIGHUP, _RELOAD):
                self.reload()

    def _bind(self) -> socket.socket:
        family, kind, proto, _, addr = socket.getaddrinfo(
            self.opts.host, self.opts.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(self.opts.backlog)
        except OSError:
            sock.close()
            raise
        return sock

    # ---- workers -----------------------------------------------------------------------------

    def _start_generation(self) -> None:
        self.generation += 1
        self.pending = [self._spawn(i + 1) for i in range(self.opts.workers)]

    def _spawn(self, worker_id: int) -> Worker:
        r, w = os.pipe()
        spec = WorkerSpec(worker_id=worker_id, listen_fd=self.sock.fileno(),
                          listen_port=self.sock.getsockname()[1], ready_fd=w,
                          parent_pid=os.getpid(), backpressure=max(1, self.opts.backlog // self.opts.workers),
                          tls_cert=self.opts.tls_cert, tls_key=self.opts.tls_key)
        try:
            proc = subprocess.Popen(_WORKER, env={**os.environ, "FLOWLET_WORKER": spec.to_env()},
                                    pass_fds=(self.sock.fileno(), w), stdin=subprocess.DEVNULL)
        finally:
            os.close(w)
        worker = Worker(proc, r, os.pidfd_open(proc.pid), self.generation)
        self.workers[worker.exit_fd] = worker
        self.sel.register(r, selectors.EVENT_READ, self._on_ready)
        self.sel.register(worker.exit_fd, selectors.EVENT_READ, self._on_exit)
        return worker

    def _on_ready(self, fd: int) -> None:
        self.sel.unregister(fd)
        worker = next(w for w in self.workers.values() if w.ready_fd == fd)
        worker.ready = bool(os.read(fd, 16))          # nothing: it exited before loading
        os.close(fd)
        worker.ready_fd = -1
        if worker.ready and self.pending is not None and all(w.ready for w in self.pending):
            self._promote()

    def _on_exit(self, fd: int) -> None:
        worker = self.workers.pop(fd)
        self.sel.unregister(fd)
        os.close(fd)
        if worker.ready_fd >= 0:
            self.sel.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
        code = worker.proc.wait()
        if self.phase is Phase.STOPPING or worker.deadline is not None or worker.handover_until is not None:
            return
        if self.pending is not None and worker in self.pending:
            self._abandon_pending(worker, code)
        elif worker in self.current:
            self.current.remove(worker)
            log.error("worker %s exited unexpectedly (code %s); starting another", worker.proc.pid, code)
            self.respawns.append(time.monotonic() + RESPAWN_DELAY_S)

    def _promote(self) -> None:
        """The pending generation has loaded: it serves, and the one before it drains."""
        old, self.current, self.pending = self.current, self.pending, None
        for w in old:
            if w.handover_until is None and w.deadline is None and w.proc.poll() is None:
                w.handover_until = time.monotonic() + HANDOVER_S
                w.proc.send_signal(signal.SIGUSR1)
        if self.phase is Phase.STARTING:
            self.phase = Phase.SERVING
            self.announce(f"listening on {self.opts.url}")
        else:
            self.last_reload = {"at": time.time(), "ok": True, "errors": []}
            log.info("workspace reloaded (generation %s)", self.generation)
        self._maybe_reload_again()

    def _abandon_pending(self, failed: Worker, code: int | None) -> None:
        pending, self.pending = self.pending, None
        self._drain([w for w in pending if w is not failed])
        if self.phase is Phase.STARTING:
            log.error("worker %s failed to start (code %s)", failed.proc.pid, code)
            self.exit_code = 1
            self.stop()
            return
        self._reload_failed([f"error: a worker failed to load the new workspace (code {code})"])
        self._maybe_reload_again()

    def _drain(self, workers: list[Worker]) -> None:
        deadline = time.monotonic() + self.opts.drain_timeout
        for w in workers:
            w.handover_until = None
            if w.deadline is None and w.proc.poll() is None:
                w.deadline = deadline
                w.proc.terminate()

    def _kill_all(self) -> None:
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
        if self.check is not None and self.check.poll() is None:
            self.check.kill()
            self.check.wait()

    def stop(self) -> None:
        """Stop accepting and drain every worker (repeating it changes nothing)."""
        if self.phase is Phase.STOPPING:
            return
        self.phase = Phase.STOPPING
        self.respawns.clear()
        if self.check is not None:
            self.check.kill()
        self._drain(list(self.workers.values()))

    def cut(self) -> None:
        """End the drain now."""
        for w in self.workers.values():
            w.deadline = time.monotonic()

    # ---- reload ------------------------------------------------------------------------------

    def reload(self) -> None:
        if self.phase is Phase.STOPPING:
            return
        if self.check is not None or self.pending is not None:
            self.reload_again = True                  # one more after the one under way
            return
        log.info("reload requested: checking the workspace")
        r, w = os.pipe()
        try:
            self.check = subprocess.Popen([*_WORKER, "--check", str(self.opts.root), str(w), str(os.getpid())],
                                          pass_fds=(w,), stdin=subprocess.DEVNULL)
        finally:
            os.close(w)
        self.check_out = []
        self.sel.register(r, selectors.EVENT_READ, self._on_check)

    def _on_check(self, fd: int) -> None:
        data = os.read(fd, 65536)
        if data:
            self.check_out.append(data)
            return
        self.sel.unregister(fd)
        os.close(fd)
        code = self.check.wait()
        self.check = None
        if self.phase is Phase.STOPPING:
            return
        if code == 0:
            self._start_generation()
            return
        lines = b"".join(self.check_out).decode("utf-8", "replace").splitlines()
        self._reload_failed(lines or [f"error: the workspace check ended with code {code}"])
        self._maybe_reload_again()

    def _reload_failed(self, errors: list[str]) -> None:
        self.last_reload = {"at": time.time(), "ok": False, "errors": errors}
        log.error("reload refused, the previous workspace keeps serving: %s error(s)", len(errors))
        for line in errors:
            log.error("%s", line)

    def _maybe_reload_again(self) -> None:
        if self.reload_again:
            self.reload_again = False
            self.reload()

    # ---- --watch -----------------------------------------------------------------------------

    def _poll_files(self, now: float) -> None:
        """Reload once files have changed and then held still for one interval (editors save
        in several writes)."""
        self._next_watch = now + WATCH_INTERVAL_S
        seen = _scan(self.opts.root)
        if seen != self._watched:
            self._watched = seen
            self._changed_at = now
        elif self._changed_at is not None:
            self._changed_at = None
            log.info("workspace files changed")
            self.reload()


def _scan(root: Path) -> dict[str, tuple[int, int]]:
    """Modification time and size of every workspace file, skipping state and caches."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if name.startswith(".") or name.endswith((".pyc", ".db", ".db-journal", ".db-wal", ".db-shm")):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[path] = (st.st_mtime_ns, st.st_size)
    return out


def _noop(signum: int, frame: object) -> None:
    """The wakeup pipe carries the signal; the handler only has to exist."""
