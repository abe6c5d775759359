"""The console's parts without a browser: sessions, the sign-in throttle, the flow-file form,
the settings block, the handler's refusals, and `flowlet secrets remove-user`."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, flowlet, make_workspace
from flowlet.console import flowfile
from flowlet.console.sessions import SessionTable, SignInThrottle
from flowlet.errors import ConfigError
from flowlet.workspace.settings import load_settings

import importlib.util

_spec = importlib.util.spec_from_file_location("console_harness", ROOT / "tests" / "console_harness.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- sessions and throttle ---------------------------------------------------------------------

def test_sessions_are_stored_by_hash_and_end_after_idle_and_absolute_time():
    clock = Clock()
    table = SessionTable(idle_s=60, absolute_s=300, clock=clock)
    sid = table.create("alice", "token")
    assert sid.encode() not in b"".join(table._sessions)          # only the hash is a key
    assert table.get(sid).user == "alice"
    clock.now += 59
    assert table.get(sid) is not None                              # touched: idle restarts
    clock.now += 61
    assert table.get(sid) is None                                  # idle
    sid = table.create("alice", "token")
    for _ in range(6):
        clock.now += 50
        assert table.get(sid) is not None
    clock.now += 50
    assert table.get(sid) is None                                  # absolute, though never idle


def test_ending_a_session_and_a_users_sessions():
    table = SessionTable(idle_s=60, absolute_s=300)
    a, b, c = table.create("alice", "t"), table.create("bob", "t"), table.create("bob", "t")
    table.end(table.get(a))
    assert table.get(a) is None and table.get(b) is not None
    table.end_user("bob")
    assert table.get(b) is None and table.get(c) is None
    assert table.get("") is None and table.get("x" * 500) is None


def test_throttle_per_client_and_per_user():
    clock = Clock()
    t = SignInThrottle(per_client=3, per_user=5, window_s=100, clock=clock)
    for _ in range(3):
        assert t.retry_after("1.1.1.1", "alice") == 0
        t.failed("1.1.1.1", "alice")
    assert t.retry_after("1.1.1.1", "bob") > 0                     # that client, any user
    assert t.retry_after("2.2.2.2", "alice") == 0
    t.failed("2.2.2.2", "alice")
    t.failed("3.3.3.3", "ALICE")
    assert t.retry_after("4.4.4.4", "alice") > 0                   # that user, from anywhere
    t.succeeded("1.1.1.1")
    assert t.retry_after("1.1.1.1", "bob") == 0                    # success clears the client
    assert t.retry_after("1.1.1.1", "alice") > 0                   # never the user
    clock.now += 101
    assert t.retry_after("4.4.4.4", "alice") == 0


# ---- the flow file as a form -----------------------------------------------------------------

FLOW = """\
# top comment
endpoint:
  method: PUT   # the method
  path: /user/{id}
  cors:
    allow: selected
    domains:          # a list stays a list
      - "*.example.com"
    max_age: 60
respond:
  body: {ok: true}   # kept
"""


def test_apply_form_keeps_comments_order_and_list_style(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(FLOW)
    data, doc = flowfile.load(path)
    form = flowfile.read_form(doc)
    assert (form.cors_allow, form.cors_domains, form.cors_max_age) == ("selected", "*.example.com", "60")
    form = flowfile.parse_form({"auth": "jwt", "jwt_secret": "j", "scope_kind": "json",
                                "scope_json": '{"any": ["a", "b"]}', "cors_allow": "selected",
                                "cors_domains": "*.example.com, https://x.org", "cors_headers": "Content-Type",
                                "cors_max_age": "300", "csrf": "on"})
    flowfile.apply_form(doc, form)
    text = flowfile.dump(doc)
    assert "# top comment" in text and "# the method" in text and "# kept" in text
    assert "- https://x.org" in text                                # still a YAML list
    assert "scope: {any: [a, b]}" in text
    assert text.index("method:") < text.index("path:") < text.index("auth:") < text.index("cors:")
    assert flowfile.version_of(data) != flowfile.version_of(text.encode())


def test_form_errors_name_their_field():
    with pytest.raises(flowfile.FormError) as exc:
        flowfile.parse_form({"auth": "jwt", "scope_kind": "json", "scope_json": "users:write",
                             "cors_allow": "all", "cors_max_age": "soon"})
    problems = exc.value.problems
    assert "double quotes" in problems["scope"]
    assert "jwt_secret" in problems and "cors_max_age" in problems


def test_an_error_line_maps_to_its_field():
    text = FLOW.replace("max_age: 60", "max_age: 60\n    credentials: true")
    lines = text.splitlines()
    at = {name: lines.index(next(l for l in lines if l.strip().startswith(name))) + 1
          for name in ("domains:", "credentials:", "method:")}
    assert flowfile.field_at(text, at["domains:"] + 1) == "cors_domains"      # a list item
    assert flowfile.field_at(text, at["credentials:"]) == "cors_credentials"
    assert flowfile.field_at(text, at["method:"]) == ""
    assert flowfile.field_at(text, len(lines)) == ""                          # outside the block


# ---- settings --------------------------------------------------------------------------------

@pytest.mark.parametrize("block, message", [
    ("console: {}", "needs 'users'"),
    ("console: {users: 'a b'}", "must be a secret name"),
    ("console: {users: x, idle: 5}", "idle"),
    ("console: {users: x, idle_s: 9000, absolute_s: 600}", "cannot be longer"),
])
def test_console_settings_errors(tmp_path, block, message):
    (tmp_path / "flowlet.yaml").write_text(block + "\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path)
    assert message in str(exc.value) and "flowlet.yaml:1" in str(exc.value)


# ---- the handler -----------------------------------------------------------------------------

@pytest.fixture
def console_ws(tmp_path) -> Path:
    ws = make_workspace(tmp_path, {
        "flowlet.yaml": "name: t\nconsole: {users: console-users}\n",
        "flows/a.yaml": "endpoint: {method: GET, path: /a}\nrespond: {body: {ok: true}}\n"})
    out = flowlet("secrets", "set", "console-users", "-w", str(ws), "--type", "basic", "--user", "alice",
                  "--password-stdin", input="right-password")
    assert out.returncode == 0, out.stderr
    return ws


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_sign_in_is_throttled_and_security_headers_are_on_every_page(console_ws):
    with harness.serve_console(console_ws) as (url, _):
        client = httpx.Client(base_url=url, headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
        statuses = []
        for _ in range(6):
            token = _token(client.get("/console/signin").text)
            r = client.post("/console/signin", data={"csrf_token": token, "user": "alice", "password": "nope"})
            statuses.append(r.status_code)
        assert statuses == [401] * 5 + [429]
        assert int(r.headers["retry-after"]) > 0
        token = _token(client.get("/console/signin").text)
        r = client.post("/console/signin", data={"csrf_token": token, "user": "alice", "password": "right-password"})
        assert r.status_code == 429                           # even the right password waits
        for path in ("/console/signin", "/console/static/console.css", "/console/endpoints"):
            h = client.get(path).headers
            assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "no-referrer"
            assert "default-src 'none'" in h["content-security-policy"]


def test_signed_in_post_needs_the_sessions_own_token(console_ws):
    with harness.serve_console(console_ws) as (url, _):
        client = httpx.Client(base_url=url, headers={"Origin": url})
        token = _token(client.get("/console/signin").text)
        r = client.post("/console/signin", data={"csrf_token": token, "user": "alice", "password": "right-password"})
        assert r.status_code == 303
        assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
        page = client.get("/console/secrets")
        assert page.status_code == 200 and "$argon2" not in page.text
        # a pair from the sign-in page is a valid double submit, but not this session's token
        other = httpx.Client(base_url=url, headers={"Origin": url})
        stray = _token(other.get("/console/signin").text)
        client.cookies.set("flowlet_console_csrf", other.cookies["flowlet_console_csrf"], path="/console/")
        r = client.post("/console/secrets/rotate-csrf", data={"csrf_token": stray})
        assert r.status_code == 400
        assert "Request refused" in r.text
        r = client.post("/console/secrets/rotate-csrf", data={"csrf_token": _token(page.text)})
        assert r.status_code == 200 and "Rotated the CSRF key" in r.text


def test_flow_paths_outside_flows_are_not_served(console_ws):
    with harness.serve_console(console_ws) as (url, console):
        assert console.flow_path("flows/a.yaml") is not None
        for rel in ("flows/../flowlet.yaml", "flowlet.yaml", "flows/a.yml", "/etc/passwd", "flows/..\\x.yaml"):
            assert console.flow_path(rel) is None, rel


# ---- the CLI -----------------------------------------------------------------------------------

def test_cli_remove_user(console_ws):
    w = str(console_ws)
    assert flowlet("secrets", "set", "console-users", "-w", w, "--type", "basic", "--user", "bob",
                   "--password-stdin", input="pw").returncode == 0
    out = flowlet("secrets", "remove-user", "console-users", "-w", w, "--user", "bob")
    assert out.returncode == 0 and "removed user 'bob' (1 user left)" in out.stdout
    out = flowlet("secrets", "remove-user", "console-users", "-w", w, "--user", "alice")
    assert out.returncode == 1 and "last user" in out.stderr
    out = flowlet("secrets", "remove-user", "console-users", "-w", w, "--user", "zed")
    assert out.returncode == 1 and "has no user 'zed'" in out.stderr
    out = flowlet("secrets", "remove-user", "missing", "-w", w, "--user", "zed")
    assert out.returncode == 1 and "no secret named 'missing'" in out.stderr


# ---- the reload hook ---------------------------------------------------------------------------

class FakeSupervisor:
    """The supervisor's controls: a reload finishes after two status reads."""

    def __init__(self, ok: bool):
        self.ok, self.reads, self.asked = ok, 0, False

    def request_reload(self) -> None:
        self.asked = True

    def status(self) -> dict:
        self.reads += 1
        if self.reads < 3:
            return {"reloading": True, "last_reload": {}}
        return {"reloading": False, "last_reload": {"at": 2e9, "ok": self.ok,
                                                    "errors": [] if self.ok else ["flows/a.yaml:3: error: x"]}}


def test_supervisor_reload_waits_for_the_outcome():
    from flowlet.console.reload import supervisor_reload

    assert supervisor_reload(FakeSupervisor(True))() == (True, "The server now serves it.")
    served, message = supervisor_reload(FakeSupervisor(False))()
    assert not served and "flows/a.yaml:3" in message


def test_cookies_are_secure_under_tls(console_ws):
    from flowlet.console import Console, ConsoleRequest

    console = Console(console_ws)
    try:
        resp = console.handle(ConsoleRequest("GET", "/console/signin", secure=True, headers=[("Host", "x")]))
        cookies = [v for k, v in resp.headers if k == "set-cookie"]
        assert cookies and all("Secure" in c and "HttpOnly" in c and "SameSite=Strict" in c for c in cookies)
        resp = console.handle(ConsoleRequest("GET", "/console/signin", secure=False, headers=[("Host", "x")]))
        assert all("Secure" not in v for k, v in resp.headers if k == "set-cookie")
    finally:
        console.close()


# ---- secrets rules shared with the CLI -----------------------------------------------------------

def test_jwt_keys_from_pasted_pem_and_jwks():
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc.jwk import ECKey

    from flowlet.secrets.edits import EditError, jwt_from_text

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    s = jwt_from_text("k", public, issuer="https://id.example.com")
    assert s.key_kind == "public" and s.algorithms == ("ES256",) and s.issuer == "https://id.example.com"
    assert jwt_from_text("k", private).key_kind == "private"
    jwk = ECKey.import_key(public).as_dict()
    jwk["kid"] = "one"
    s = jwt_from_text("k", json.dumps({"keys": [jwk]}))
    assert s.key_kind == "jwks" and s.algorithms == ("ES256",)
    for material, message in (("", "paste"), ("hello", "neither PEM"), ('{"keys": []}', "at least one key"),
                              (public, "RS256")):
        with pytest.raises(EditError) as exc:
            jwt_from_text("k", material, algorithms="RS256" if material == public else None)
        assert message in str(exc.value)
    with pytest.raises(EditError):
        jwt_from_text("bad name!", public)


def test_deep_scope_json_is_a_field_error_and_one_line_blocks_map_to_no_field():
    with pytest.raises(flowfile.FormError) as exc:
        flowfile.parse_form({"auth": "jwt", "jwt_secret": "x", "scope_kind": "json", "scope_json": "[" * 3000})
    assert "nest at most" in exc.value.problems["scope"]
    text = "endpoint: {method: GET, path: /a, cors: {allow: all, credentials: true}}\nrespond: {body: 1}\n"
    assert flowfile.field_at(text, 1) == ""


def test_hostile_form_values_never_give_500(console_ws):
    """Every console POST, signed in and with a valid CSRF pair, fed odd values: never a 5xx,
    and the flow file stays a file the workspace loads."""
    from urllib.parse import urlencode

    from flowlet.console import Console, ConsoleRequest

    console = Console(console_ws)
    try:
        def call(method: str, path: str, fields: dict | None = None, cookies: str = "", query: str = ""):
            body = urlencode(fields or {}).encode()
            headers = [("Host", "h"), ("Origin", "http://h"), ("Cookie", cookies),
                       ("Content-Type", "application/x-www-form-urlencoded")]
            return console.handle(ConsoleRequest(method, path, query, headers, body, "1.2.3.4"))

        def cookies_of(resp) -> str:
            return "; ".join(v.split(";", 1)[0] for k, v in resp.headers if k == "set-cookie")

        page = call("GET", "/console/signin")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page.body).group(1).decode()
        signed = call("POST", "/console/signin", {"csrf_token": token, "user": "alice", "password": "right-password"},
                      cookies_of(page))
        jar = cookies_of(signed)
        page = call("GET", "/console/endpoint", cookies=jar, query="file=flows/a.yaml")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page.body).group(1).decode()
        odd = ["", "\x00", "é" * 5000, "-1", "99999999999999999999", "null", "*", "[", "{}", '"a"', "on",
               "none", "all", "selected", "jwt", "basic", "open", "cel", "json", " , ,", "https://", "a:b"]
        fields = ("auth", "basic_secret", "jwt_secret", "scope_kind", "scope_json", "scope_expr", "cors_allow",
                  "cors_domains", "cors_headers", "cors_max_age", "csrf", "cors_credentials")
        for i, value in enumerate(odd):
            version = re.search(rb'name="version" value="([^"]+)"',
                                call("GET", "/console/endpoint", cookies=jar, query="file=flows/a.yaml").body)
            form = {f: odd[(i + j) % len(odd)] for j, f in enumerate(fields)}
            form.update(csrf_token=token, version=version.group(1).decode() if version else "")
            r = call("POST", "/console/endpoint", form, jar, "file=flows/a.yaml")
            assert r.status < 500, (form, r.body[:300])
            for path in ("/console/secrets/user", "/console/secrets/remove-user", "/console/secrets/jwt"):
                r = call("POST", path, {"csrf_token": token, "secret": value, "user": value, "password": value,
                                        "key": value, "algorithms": value}, jar)
                assert r.status < 500, (path, value)
        for query in ("file=../flowlet.yaml", "file=%00", "file=flows/a.yaml&origin=%ff&try_method=\x00",
                      "file=flows/a.yaml&origin=http://[::1&try_headers=,,,"):
            assert call("GET", "/console/endpoint", cookies=jar, query=query).status < 500, query
        assert flowlet("check", str(console_ws)).returncode == 0
    finally:
        console.close()


def test_basic_credentials_read_pages_but_never_post(console_ws):
    with harness.serve_console(console_ws) as (url, _):
        r = httpx.get(f"{url}/console/endpoints", auth=("alice", "right-password"))
        assert r.status_code == 200 and "/api/a" in r.text
        assert "www-authenticate" not in r.headers          # no browser pop-up: the form signs in
        assert httpx.get(f"{url}/console/endpoints", auth=("alice", "wrong")).status_code == 401
        r = httpx.post(f"{url}/console/secrets/rotate-csrf", auth=("alice", "right-password"),
                       data={"csrf_token": ""}, headers={"Origin": url})
        assert r.status_code in (400, 401)
