"""The console: sign-in, the endpoints, each endpoint's start-block form, and the secrets.

``Console.handle(ConsoleRequest) -> ConsoleResponse`` is the whole interface: a listener (the
admin port) hands it every request under /console and sends back what it returns. It is
synchronous and thread-safe; slow work (argon2, the workspace check) happens in the calling
thread or in a child process.

Sessions live in this process's memory (see sessions.py). Every POST must carry Flowlet's CSRF
double-submit pair (the token as the form field ``csrf_token``, its keyed hash as a cookie),
and once signed in the token must also be the session's own.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets as _random
import threading
import time
from pathlib import Path
from typing import Callable

from flowlet.console import flowfile
from flowlet.console.audit import AuditLog
from flowlet.console.checks import Inspection, Problem, WorkspaceChecks
from flowlet.console.sessions import Session, SessionTable, SignInThrottle
from flowlet.console.web import (PREFIX, ConsoleRequest, ConsoleResponse, Pages, cookie_header,
                                 parse_form, redirect)
from flowlet.errors import HTTPError
from flowlet.http import Request
from flowlet.secrets import SecretsView, open_store
from flowlet.secrets.edits import check_user
from flowlet.secrets.model import BasicSecret
from flowlet.security.basic import BasicPolicy, parse_basic
from flowlet.security.cors import PathCors, parse_domain
from flowlet.security.csrf import CsrfKeys, CsrfPolicy, CsrfSettings
from flowlet.security.runtime import AuthRuntime
from flowlet.workspace.settings import load_settings

log = logging.getLogger("flowlet.console")

SESSION_COOKIE = "flowlet_console"
CSRF_COOKIE = "flowlet_console_csrf"
CSRF_FIELD = "csrf_token"

# What a reload hook returns: (served, message) once the server serves the new files or gave up.
Reload = Callable[[], tuple[bool, str]]


class Console:
    def __init__(self, root: str | Path, *, reload: Reload | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.root = Path(root).resolve()
        self.settings = load_settings(self.root)
        if self.settings.console is None:
            raise ValueError("flowlet.yaml has no 'console: {users: SECRET}'")
        self.cfg = self.settings.console
        self.store = open_store(self.root, self.settings.store)
        self.view = SecretsView(self.store)
        self.view.refresh()
        if not self.console_users():
            log.warning("console: the Basic secret %r has no users yet, so nobody can sign in "
                        "(flowlet secrets set %s --type basic --user NAME --password-stdin)",
                        self.cfg.users, self.cfg.users)
        keys = CsrfKeys(self.view, self.store)
        self.keys = keys
        self.csrf = CsrfPolicy(CsrfSettings(cookie=CSRF_COOKIE, grace_s=self.settings.csrf.grace_s), keys, None)
        self.auth_runtime = AuthRuntime()
        self.basic = BasicPolicy(self.cfg.users, realm=self.settings.name, secrets=self.view,
                                 runtime=self.auth_runtime)
        self.sessions = SessionTable(idle_s=self.cfg.idle_s, absolute_s=self.cfg.absolute_s, clock=clock)
        self.throttle = SignInThrottle(clock=clock)
        self.checks = WorkspaceChecks(self.root)
        self.audit = AuditLog(self.root / ".flowlet" / "audit.jsonl")
        self.pages = Pages()
        self.reload = reload
        self.write_lock = threading.Lock()
        from flowlet.console import endpoints, secrets_page
        self.routes: dict[tuple[str, str], Callable[[ConsoleRequest, Session, dict], ConsoleResponse]] = {
            ("GET", "/"): lambda req, s, f: redirect(f"{PREFIX}/endpoints"),
            ("GET", "/endpoints"): lambda req, s, f: endpoints.index(self, req, s),
            ("GET", "/endpoint"): lambda req, s, f: endpoints.edit(self, req, s),
            ("POST", "/endpoint"): lambda req, s, f: endpoints.save(self, req, s, f),
            ("GET", "/secrets"): lambda req, s, f: secrets_page.index(self, req, s),
            ("POST", "/secrets/user"): lambda req, s, f: secrets_page.add_user(self, req, s, f),
            ("POST", "/secrets/remove-user"): lambda req, s, f: secrets_page.remove_user(self, req, s, f),
            ("POST", "/secrets/jwt"): lambda req, s, f: secrets_page.set_jwt(self, req, s, f),
            ("POST", "/secrets/rotate-csrf"): lambda req, s, f: secrets_page.rotate_csrf(self, req, s, f),
            ("POST", "/signout"): lambda req, s, f: self.sign_out(req, s),
        }

    def close(self) -> None:
        self.auth_runtime.close()
        self.store.close()

    # ---- the one entry point -------------------------------------------------------------------

    def handle(self, req: ConsoleRequest) -> ConsoleResponse:
        try:
            return self._handle(req)
        except Exception:
            log.exception("console: unexpected error on %s %s", req.method, req.path)
            return self.message(500, "Something went wrong",
                                "The console hit an unexpected error; the server log has the details. "
                                "Nothing was half-written: files are replaced in one step.")

    def _handle(self, req: ConsoleRequest) -> ConsoleResponse:
        sub = req.path[len(PREFIX):] if req.path.startswith(PREFIX) else None
        if sub is None or (sub and not sub.startswith("/")):
            return self.message(404, "Not found", "There is no such console page.")
        sub = sub or "/"
        if sub.startswith("/static/") and req.method in ("GET", "HEAD"):
            return self.pages.asset(sub[len("/static/"):]) or self.message(404, "Not found", "No such file.")
        self.view.refresh()
        form: dict[str, str] = {}
        if req.method == "POST":
            parsed = parse_form(req)
            if parsed is None:
                return self.message(400, "Bad request", "Console forms send application/x-www-form-urlencoded.")
            form = parsed
            if not self._csrf_ok(req, form):
                return self.message(400, "Request refused",
                                    "CSRF token missing or invalid: this form was not sent by a console "
                                    "page of this server. Open the page again and resubmit.")
        elif req.method not in ("GET", "HEAD"):
            return self.message(405, "Method not allowed", "The console answers GET and POST.")
        if sub == "/signin":
            if req.method == "POST":
                return self.sign_in(req, form)
            signed_in = self.session_of(req) is not None
            return redirect(f"{PREFIX}/endpoints") if signed_in else self.sign_in_page(req, 200)
        session = self.session_of(req)
        if session is None and req.method in ("GET", "HEAD"):
            session = self._basic_reader(req)
        if session is None:
            return self.sign_in_page(req, 401, notice="Sign in to use the console.")
        if req.method == "POST" and not hmac.compare_digest(form.get(CSRF_FIELD, ""), session.csrf_token):
            return self.message(400, "Request refused", "CSRF token missing or invalid for this session. "
                                                        "Open the page again and resubmit.")
        handler = self.routes.get(("GET" if req.method == "HEAD" else req.method, sub))
        if handler is None:
            return self.message(404, "Not found", "There is no such console page.", session=session)
        return handler(req, session, form)

    # ---- CSRF, sessions, sign-in -----------------------------------------------------------------

    def _csrf_ok(self, req: ConsoleRequest, form: dict[str, str]) -> bool:
        """Flowlet's double-submit check, with the form field standing in for the header.

        The pages send no referrer, so browsers send ``Origin: null`` on their own form posts;
        such a post must then say ``Sec-Fetch-Site: same-origin`` (browsers that send neither
        are left to the token pair and the SameSite=Strict cookies)."""
        token = form.get(CSRF_FIELD, "")
        headers = [(k, v) for k, v in req.headers if k.lower() != "origin" or v != "null"]
        if len(headers) != len(req.headers):
            site = [v for k, v in req.headers if k.lower() == "sec-fetch-site"]
            if site and site != ["same-origin"]:
                return False
        probe = ConsoleRequest(req.method, req.path, req.query, headers, b"", req.client, req.secure)
        try:
            self.csrf.check(probe.flowlet_request(extra=(("x-csrf-token", token),)))
        except HTTPError:
            return False
        return True

    def _csrf_pair(self, secure: bool) -> tuple[str, str]:
        """A fresh token for the forms and the Set-Cookie of its keyed hash."""
        token = _random.token_urlsafe(32)
        return token, cookie_header(CSRF_COOKIE, self.keys.sign(token), secure=secure)

    def session_of(self, req: ConsoleRequest) -> Session | None:
        cookies = req.flowlet_request().cookie_values(SESSION_COOKIE)
        session = self.sessions.get(cookies[-1]) if cookies else None
        if session is None:
            return None
        if session.user not in self.console_users():        # removed from the secret: signed out
            self.sessions.end(session)
            return None
        return session

    def _basic_reader(self, req: ConsoleRequest) -> Session | None:
        """A GET with a console user's ``Authorization: Basic`` reads a page (scripts, curl -u)
        without a session; such a session-less reader cannot post, since no form token matches."""
        header = next((v for k, v in req.headers if k.lower() == "authorization"), None)
        parsed = parse_basic(header) if header else None
        if parsed is None:
            return None
        client = req.client or "unknown"
        if self.throttle.retry_after(client, parsed[0]):
            return None
        ok, _ = self._verify(*parsed)
        if not ok:
            self.throttle.failed(client, parsed[0])
            return None
        now = time.monotonic()
        return Session(parsed[0], csrf_token="", created=now, last_seen=now)

    def console_users(self) -> frozenset[str]:
        secret = self.view.get(self.cfg.users)
        if not isinstance(secret, BasicSecret):      # missing, another type, or unreadable
            return frozenset()
        return frozenset(secret.users)

    def sign_in_page(self, req: ConsoleRequest, status: int, *, error: str = "", notice: str = "",
                     user: str = "", headers: tuple[tuple[str, str], ...] = ()) -> ConsoleResponse:
        token, cookie = self._csrf_pair(req.secure)
        resp = self.pages.render(status, "signin.html", cookies=(cookie,), csrf_token=token, error=error,
                                 notice=notice, user=user, workspace=self.settings.name,
                                 secret=self.cfg.users)
        resp.headers.extend(headers)
        return resp

    def sign_in(self, req: ConsoleRequest, form: dict[str, str]) -> ConsoleResponse:
        user, password = form.get("user", ""), form.get("password", "")
        client = req.client or "unknown"
        wait = self.throttle.retry_after(client, user)
        if wait:
            return self.sign_in_page(req, 429, user=user, error=f"Too many failed sign-ins. Try again in "
                                                                f"{wait} s.", headers=(("retry-after", str(wait)),))
        ok, busy = self._verify(user, password)
        if busy:
            return self.sign_in_page(req, 429, user=user, error="The server is busy checking passwords; "
                                                                "try again in a moment.",
                                     headers=(("retry-after", "1"),))
        if not ok:
            self.throttle.failed(client, user)
            log.info("console: refused sign-in for a user of %r from %s", self.cfg.users, client)
            return self.sign_in_page(req, 401, user=user, error="Wrong user name or password.")
        self.throttle.succeeded(client)
        token, csrf_cookie = self._csrf_pair(req.secure)
        session_id = self.sessions.create(user, token)
        log.info("console: %r signed in from %s", user, client)
        return redirect(f"{PREFIX}/endpoints",
                        (cookie_header(SESSION_COOKIE, session_id, secure=req.secure), csrf_cookie))

    def _verify(self, user: str, password: str) -> tuple[bool, bool]:
        """(accepted, busy) by the same Basic policy endpoints use: argon2id, timing-safe."""
        try:
            check_user(user)
        except ValueError:
            return False, False
        raw = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
        probe = Request({"type": "http", "method": "POST", "path": f"{PREFIX}/signin",
                         "headers": [(b"authorization", f"Basic {raw}".encode("ascii"))]})
        try:
            asyncio.run(self.basic.authenticate(probe))
        except HTTPError as exc:
            return False, exc.status == 429
        return True, False

    def sign_out(self, req: ConsoleRequest, session: Session) -> ConsoleResponse:
        self.sessions.end(session)
        gone = (cookie_header(SESSION_COOKIE, "", secure=req.secure, max_age=0),
                cookie_header(CSRF_COOKIE, "", secure=req.secure, max_age=0))
        return redirect(f"{PREFIX}/signin?signed_out=1", gone)

    # ---- shared page helpers ---------------------------------------------------------------------

    def message(self, status: int, title: str, text: str, *, session: Session | None = None) -> ConsoleResponse:
        return self.pages.render(status, "message.html", title=title, text=text, session=session)

    def page(self, status: int, template: str, session: Session, **context: object) -> ConsoleResponse:
        return self.pages.render(status, template, session=session, csrf_token=session.csrf_token,
                                 workspace=self.settings.name, **context)

    def inspect(self) -> Inspection:
        return self.checks.inspect(self.store.version())

    def flow_path(self, rel: str) -> Path | None:
        """The flow file a form names, only when it is a YAML file under flows/."""
        if not rel.startswith("flows/") or not rel.endswith((".yaml", ".yml")) or "\\" in rel:
            return None
        flows = (self.root / "flows").resolve()
        path = (self.root / rel).resolve()
        if not path.is_relative_to(flows) or not path.is_file():
            return None
        return path


def preflight_answer(path_cors: dict | None, origin: str, method: str,
                     request_headers: str) -> tuple[int, list[tuple[str, str]], str]:
    """The preflight answer of a path, by the serving code's PathCors (rebuilt from the path's
    merged answer, as `flowlet routes --json` shows it)."""
    headers = [(b"origin", origin.encode("latin-1", "replace")),
               (b"access-control-request-method", method.encode("latin-1", "replace"))]
    if request_headers.strip():
        headers.append((b"access-control-request-headers", request_headers.encode("latin-1", "replace")))
    req = Request({"type": "http", "method": "OPTIONS", "path": "/", "headers": headers})
    if path_cors is None:
        return 403, [("content-type", "application/json")], \
            '{"error":"CORS preflight refused: this path does not allow cross-origin requests"}'
    cors = PathCors(methods=path_cors["methods"], allow=path_cors["allow"],
                    domains=[parse_domain(d) for d in path_cors["domains"]], headers=path_cors["headers"],
                    credentials=path_cors["credentials"], max_age=path_cors["max_age"])
    status, raw = cors.preflight(req)
    out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    if status == 204:
        return status, out, ""
    return status, [("content-type", "application/json"), *out], '{"error":"CORS preflight refused"}'


def problems_by_field(errors: tuple[Problem, ...], rel: str, text: str) -> tuple[dict[str, list[str]], list[str]]:
    """Errors of the edited file at their form field; the rest (other files, other keys) apart."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    for p in errors:
        name = flowfile.field_at(text, p.line) if p.file == rel else ""
        if name:
            fields.setdefault(name, []).append(p.message)
        else:
            general.append(str(p))
    return fields, general

