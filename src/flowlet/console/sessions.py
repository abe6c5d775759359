"""Console sessions and the sign-in throttle, held in the memory of the process serving the console.

A session id is 32 random bytes; the table keys sessions by the SHA-256 of the id, so a copy of
the table (a core dump, a debugger) does not hand out live cookies. Sessions end after an idle
and an absolute lifetime, on sign-out, and when their user is no longer in the console's Basic
secret. Restarting the `flowlet serve` process signs everybody out.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

MAX_SESSIONS = 1000             # oldest sessions go first past this


@dataclass
class Session:
    user: str
    csrf_token: str             # the T of this session's CSRF pair, embedded in every form
    created: float
    last_seen: float
    key: bytes = field(repr=False, default=b"")
    flash: str = ""             # a message for the next page this session sees (after a redirect)


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii", "replace")).digest()


class SessionTable:
    def __init__(self, *, idle_s: float, absolute_s: float, clock: Callable[[], float] = time.monotonic):
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[bytes, Session] = {}

    def create(self, user: str, csrf_token: str) -> str:
        """A new session for ``user``; returns the id for the cookie (kept nowhere else)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        key = _digest(session_id)
        with self._lock:
            self._expire(now)
            while len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].created)
                del self._sessions[oldest]
            self._sessions[key] = Session(user, csrf_token, now, now, key)
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id (touching it), or None."""
        if not session_id or len(session_id) > 100:
            return None
        key = _digest(session_id)
        now = self.clock()
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                return None
            if now - s.last_seen > self.idle_s or now - s.created > self.absolute_s:
                del self._sessions[key]
                return None
            s.last_seen = now
            return s

    def end(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.key, None)

    def end_user(self, user: str) -> None:
        """Every session of a user removed from the console's secret."""
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.user == user]:
                del self._sessions[key]

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._sessions)

    def _expire(self, now: float) -> None:
        dead = [k for k, s in self._sessions.items()
                if now - s.last_seen > self.idle_s or now - s.created > self.absolute_s]
        for key in dead:
            del self._sessions[key]


class SignInThrottle:
    """Failed sign-ins per client address and per user name in a sliding window.

    Past a limit, sign-ins from that client (or as that user) are refused before any password
    check until the window has moved on. A success clears the client's count, never the user's:
    an attacker guessing one user's password gains nothing from signing in as another.
    """

    def __init__(self, *, per_client: int = 5, per_user: int = 10, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.per_client = per_client
        self.per_user = per_user
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._fails: dict[tuple[str, str], list[float]] = {}

    def retry_after(self, client: str, user: str) -> int:
        """Seconds until a sign-in may be tried again; 0 when it may be tried now."""
        now = self.clock()
        with self._lock:
            waits = [self._wait(("client", client), self.per_client, now),
                     self._wait(("user", user.lower()), self.per_user, now)]
        return max(waits)

    def failed(self, client: str, user: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._fails) > 10000:
                self._fails.clear()           # bounded memory under a flood of new names
            for key in (("client", client), ("user", user.lower())):
                self._fails.setdefault(key, []).append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._fails.pop(("client", client), None)

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> int:
        times = [t for t in self._fails.get(key, ()) if now - t < self.window_s]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        if len(times) < limit:
            return 0
        return max(1, int(times[-limit] + self.window_s - now + 0.999))
