"""The two error kinds of Flowlet: configuration errors (load time) and HTTP errors (request time)."""

from __future__ import annotations


class ConfigError(Exception):
    """A workspace problem found at load time, reported as ``FILE:LINE: error: message``.

    ``severity`` is ``"error"`` (the workspace does not load) or ``"warning"`` (it loads, and
    ``flowlet check`` prints ``FILE:LINE: warning: message``).
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None, *,
                 severity: str = "error"):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.severity = severity

    def as_warning(self) -> "ConfigError":
        return ConfigError(self.message, self.file, self.line, severity="warning")

    def located(self, file: str | None, line: int | None) -> "ConfigError":
        """Fill in a location if the raiser did not know it."""
        if self.file is None:
            self.file = file
        if self.line is None:
            self.line = line
        return self

    def __str__(self) -> str:
        if self.file is None:
            return f"{self.severity}: {self.message}"
        return f"{self.file}:{self.line or 1}: {self.severity}: {self.message}"


class ConfigErrors(Exception):
    """Several ConfigErrors collected while loading one workspace."""

    def __init__(self, errors: list[ConfigError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class HTTPError(Exception):
    """Raised on the request path; turned into ``{"error": message}`` with ``status``.

    ``headers`` is a tuple of (name, value) byte pairs added to the response
    (for example ``WWW-Authenticate`` or ``Allow``). ``stage`` and ``reason`` name the check
    that refused (``"auth"``, ``"expired"``) for metrics and the access log: fixed words chosen
    by the raiser, never request data.
    """

    __slots__ = ("status", "message", "headers", "stage", "reason")
    body: bytes | None = None      # a ready JSON body that replaces {"error": message} (400 problems, Reject)

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = (), *,
                 stage: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.stage = stage
        self.reason = reason

    def __reduce__(self):
        # A function step in a worker process raises it there; it crosses to the server whole.
        return (HTTPError, (self.status, self.message, self.headers), {"stage": self.stage, "reason": self.reason})
