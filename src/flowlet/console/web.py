"""The console's HTTP plumbing: the request and response it exchanges with the listener that
mounts it, cookies, form bodies, security headers, templates and static files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape

from flowlet.http import Request

HERE = Path(__file__).parent
PREFIX = "/console"
MAX_BODY = 256 * 1024

# No inline script or style, nothing from another origin, never framed.
SECURITY_HEADERS = (
    ("content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}


@dataclass
class ConsoleRequest:
    """One request as the listener received it. ``path`` starts with /console."""

    method: str
    path: str
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    client: str = ""
    secure: bool = False

    def flowlet_request(self, extra: tuple[tuple[str, str], ...] = ()) -> Request:
        """Flowlet's own Request (so its CSRF and Basic policies can read it)."""
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in self.headers]
        headers += [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in extra]
        return Request({"type": "http", "method": self.method, "path": self.path, "headers": headers,
                        "scheme": "https" if self.secure else "http",
                        "query_string": self.query.encode("latin-1", "replace")})


@dataclass
class ConsoleResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def parse_form(req: ConsoleRequest) -> dict[str, str] | None:
    """A urlencoded form body -> fields (the last value of a repeated name); None if not a form."""
    ctype = next((v for k, v in req.headers if k.lower() == "content-type"), "")
    if ctype.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    if len(req.body) > MAX_BODY:
        return None
    try:
        return dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
    except (UnicodeDecodeError, ValueError):
        return None


def query(req: ConsoleRequest) -> dict[str, str]:
    try:
        return dict(parse_qsl(req.query, keep_blank_values=True, max_num_fields=50))
    except ValueError:
        return {}


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    parts = [f"{name}={value}", f"Path={PREFIX}/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


class Pages:
    def __init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.static: dict[str, tuple[str, bytes]] = {}
        for p in (HERE / "static").iterdir():
            if p.suffix in STATIC_TYPES:
                self.static[p.name] = (STATIC_TYPES[p.suffix], p.read_bytes())

    def render(self, status: int, template: str, cookies: tuple[str, ...] = (), **context: object) -> ConsoleResponse:
        body = self.env.get_template(template).render(prefix=PREFIX, **context).encode("utf-8")
        headers = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store"),
                   *SECURITY_HEADERS, *(("set-cookie", c) for c in cookies)]
        return ConsoleResponse(status, headers, body)

    def asset(self, name: str) -> ConsoleResponse | None:
        found = self.static.get(name)
        if found is None:
            return None
        return ConsoleResponse(200, [("content-type", found[0]), ("cache-control", "no-cache"),
                                     *SECURITY_HEADERS], found[1])


def redirect(location: str, cookies: tuple[str, ...] = ()) -> ConsoleResponse:
    return ConsoleResponse(303, [("location", location), ("cache-control", "no-store"), *SECURITY_HEADERS,
                                 *(("set-cookie", c) for c in cookies)], b"")
