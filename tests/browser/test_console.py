"""The console in Chromium: sign-in, the start-block form, saving, conflicts, the secrets page.

The console is served by the same handler the admin listener mounts (tests/console_harness.py
puts it on a real socket); the API is a real `flowlet serve` on another port, reloaded after a
save, and the preflight that proves a saved change is sent to that public port.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)       # a save runs the workspace check in a child process

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_helpers = _load("flowlet_tests_root_helpers", ROOT / "tests" / "conftest.py")
_harness = _load("flowlet_tests_console_harness", ROOT / "tests" / "console_harness.py")
run_server, make_workspace, flowlet = _helpers.run_server, _helpers.make_workspace, _helpers.flowlet

USERS = {"alice": "alice-Pässwort-1", "bob": "bob-password-2"}
ORIGIN = "https://test.example.com"

GET_USER = """\
# GET /api/user/{id}: read one user
endpoint:
  method: GET
  path: /user/{id}     # the user's id
  description: Read one user
respond:
  body: {id: "=params.id"}
"""
PUT_USER = """\
# PUT /api/user/{id}: update one user
endpoint:
  method: PUT
  path: /user/{id}
  csrf: false          # the front end sends no CSRF token yet
respond:
  body: {ok: true}
"""
ADMIN = """\
# POST /api/admin: admins only
endpoint:
  method: POST
  path: /admin
  auth:
    type: jwt
    secret: users-jwt
    scope: admin       # one scope, as JSON
respond:
  body: {ok: true}
"""


@pytest.fixture(scope="module")
def console_ws(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("console"), {
        "flowlet.yaml": "name: console-e2e\nconsole: {users: console-users}\n",
        "flows/get-user.yaml": GET_USER, "flows/update-user.yaml": PUT_USER, "flows/admin.yaml": ADMIN,
    })
    for user, password in USERS.items():
        out = flowlet("secrets", "set", "console-users", "-w", str(ws), "--type", "basic", "--user", user,
                      "--password-stdin", input=password)
        assert out.returncode == 0, out.stderr
    out = flowlet("secrets", "set", "users-jwt", "-w", str(ws), "--type", "jwt", "--hs-key-stdin",
                  input="k" * 40)
    assert out.returncode == 0, out.stderr
    return ws


@pytest.fixture(scope="module")
def api(console_ws):
    with run_server(console_ws) as server:
        yield server


@pytest.fixture(scope="module")
def console(console_ws, api):
    from flowlet.console.reload import signal_reload

    with _harness.serve_console(console_ws, reload=signal_reload(api.proc.pid)) as (url, con):
        yield url, con


def sign_in(page, url: str, user: str = "alice") -> None:
    page.goto(f"{url}/console/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(USERS[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()


def edit_page(page, url: str, file: str) -> None:
    page.goto(f"{url}/console/endpoint?file={file}")
    expect(page.get_by_role("button", name="Save")).to_be_visible()


def preflight(api_url: str, method: str = "PUT") -> httpx.Response:
    return httpx.options(f"{api_url}/api/user/1", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type"})


# ---- sign-in -------------------------------------------------------------------------------

def test_sign_in_refused_then_accepted(console, context):
    url, _ = console
    page = context.new_page()
    response = page.goto(f"{url}/console/endpoints")
    assert response.status == 401
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    assert not [c for c in context.cookies() if c["name"] == "flowlet_console"]
    sign_in(page, url)
    session = next(c for c in context.cookies() if c["name"] == "flowlet_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console/"
    expect(page.get_by_role("link", name="/api/user/{id}").first).to_be_visible()


def test_signed_out_requests_to_console_urls_are_refused(console):
    url, _ = console
    for path in ("/console/", "/console/endpoints", "/console/endpoint?file=flows/get-user.yaml",
                 "/console/secrets", "/console/nothing-here"):
        r = httpx.get(url + path)
        assert r.status_code == 401, path
        assert "Sign in" in r.text and "get-user" not in r.text
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    r = httpx.post(url + "/console/secrets/rotate-csrf", data={"csrf_token": "x"}, headers={"Origin": url})
    assert r.status_code in (400, 401)


def test_sign_out_ends_the_session_on_the_server(console, context):
    url, con = console
    page = context.new_page()
    sign_in(page, url, "bob")
    cookie = next(c for c in context.cookies() if c["name"] == "flowlet_console")["value"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # the old cookie, replayed by hand, no longer opens anything
    r = httpx.get(f"{url}/console/endpoints", cookies={"flowlet_console": cookie})
    assert r.status_code == 401


UNLABELLED = """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
    .filter(el => el.labels.length === 0 && !el.getAttribute("aria-label")).map(el => el.name)"""


def test_keyboard_sign_in_and_every_field_labelled(console, context):
    url, _ = console
    page = context.new_page()
    page.goto(f"{url}/console/signin")
    assert page.evaluate(UNLABELLED) == []
    page.keyboard.type("alice")                          # the user name field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(USERS["alice"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    for path in ("/console/endpoint?file=flows/admin.yaml", "/console/secrets"):
        page.goto(url + path)
        assert page.evaluate(UNLABELLED) == [], path
    # choices are radios a keyboard reaches; a field that does not apply leaves the tab order
    page.goto(f"{url}/console/endpoint?file=flows/get-user.yaml")
    page.get_by_label("None", exact=True).first.focus()
    assert page.get_by_label("Domains", exact=True).get_attribute("tabindex") in ("-1", "0")


# ---- the start-block form ----------------------------------------------------------------

def _set_cors(page, domains: str, headers: str, max_age: str) -> None:
    page.get_by_label("Allow from selected domains").check()
    page.get_by_label("Domains", exact=True).fill(domains)
    page.get_by_label("Allowed headers").fill(headers)
    page.get_by_label("Max age (seconds)").fill(max_age)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")


def test_cors_example_through_the_form_then_a_real_preflight(console, api, console_ws, context):
    url, _ = console
    assert preflight(api.url).status_code == 403           # before: no CORS on this path
    page = context.new_page()
    sign_in(page, url)
    for file in ("flows/get-user.yaml", "flows/update-user.yaml"):
        edit_page(page, url, file)
        _set_cors(page, "*.example.com", "Content-Type", "300")

    deadline = time.monotonic() + 30
    r = preflight(api.url)
    while r.status_code != 204 and time.monotonic() < deadline:
        time.sleep(0.3)
        r = preflight(api.url)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-methods"] == "PUT, GET"
    assert r.headers["access-control-allow-headers"] == "Content-Type"
    assert r.headers["access-control-max-age"] == "300"
    assert r.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in r.headers
    assert preflight(api.url, "GET").status_code == 204

    text = (console_ws / "flows" / "get-user.yaml").read_text()
    assert "# GET /api/user/{id}: read one user" in text and "# the user's id" in text
    assert text.index("method:") < text.index("path:") < text.index("description:")    # order kept
    put = (console_ws / "flows" / "update-user.yaml").read_text()
    assert "csrf: false          # the front end sends no CSRF token yet" in put

    audit = [json.loads(line) for line in (console_ws / ".flowlet" / "audit.jsonl").read_text().splitlines()]
    saved = [a for a in audit if a.get("action") == "save-endpoint" and a["file"] == "flows/update-user.yaml"]
    assert saved and saved[-1]["user"] == "alice"
    fields = {c["field"]: c["to"] for c in saved[-1]["changes"]}
    assert fields["cors.domains"] == "*.example.com" and fields["cors.max_age"] == 300

    # The page's merged answer and its "try an origin" give the same preflight answer.
    edit_page(page, url, "flows/get-user.yaml")
    page.get_by_label("Origin", exact=True).fill(ORIGIN)
    page.get_by_label("Method", exact=True).fill("PUT")
    page.get_by_label("Request headers").fill("content-type")
    page.get_by_role("button", name="Show the preflight answer").click()
    answer = page.locator("#preflight-answer pre").inner_text()
    assert answer.splitlines()[0] == "HTTP/1.1 204 No Content"
    for name in ("access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
                 "access-control-max-age", "vary"):
        assert f"{name}: {r.headers[name]}" in answer


def test_invalid_scope_json_shows_its_error_and_writes_nothing(console, console_ws, context):
    url, _ = console
    before = (console_ws / "flows" / "admin.yaml").read_bytes()
    page = context.new_page()
    sign_in(page, url)
    edit_page(page, url, "flows/admin.yaml")
    expect(page.get_by_label("Scope rule (JSON)")).to_have_value('"admin"')
    page.get_by_label("Scope rule (JSON)").fill('{"any": ["admin",')
    page.get_by_role("button", name="Save").click()
    error = page.locator("#err-scope")
    expect(error).to_contain_text("not valid JSON")
    expect(page.get_by_label("Scope rule (JSON)")).to_have_attribute("aria-invalid", "true")
    assert (console_ws / "flows" / "admin.yaml").read_bytes() == before

    # valid JSON, but not a scope rule: the loader's own error, at the same field
    page.get_by_label("Scope rule (JSON)").fill('{"most": ["admin"]}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#err-scope")).to_be_visible()
    assert (console_ws / "flows" / "admin.yaml").read_bytes() == before


def test_cross_site_form_post_is_refused(console, console_ws, context, plain_site):
    url, _ = console
    page = context.new_page()
    sign_in(page, url)                         # signed in, in this very browser profile
    before = (console_ws / "flows" / "admin.yaml").read_bytes()
    page.goto(f"{plain_site.hostile}/blank.html")
    page.evaluate("""([action]) => {
        const f = document.createElement("form");
        f.method = "POST"; f.action = action;
        for (const [k, v] of [["auth", "open"], ["version", "x"], ["csrf_token", "guess"]]) {
            const i = document.createElement("input"); i.name = k; i.value = v; f.appendChild(i);
        }
        document.body.appendChild(f); f.submit();
    }""", [f"{url}/console/endpoint?file=flows/admin.yaml"])
    expect(page.get_by_role("heading", name="Request refused")).to_be_visible()
    assert (console_ws / "flows" / "admin.yaml").read_bytes() == before


def test_cross_site_post_with_the_session_and_token_is_still_refused(console, context):
    """Even when a request carries a session and the CSRF pair, Sec-Fetch-Site: cross-site ends it."""
    url, _ = console
    page = context.new_page()
    sign_in(page, url)
    edit_page(page, url, "flows/admin.yaml")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    r = httpx.post(f"{url}/console/secrets/rotate-csrf", data={"csrf_token": token}, cookies=cookies,
                   headers={"Sec-Fetch-Site": "cross-site", "Origin": url})
    assert r.status_code == 400 and "Request refused" in r.text
    r = httpx.post(f"{url}/console/secrets/rotate-csrf", data={"csrf_token": token}, cookies=cookies,
                   headers={"Origin": "http://evil.test"})
    assert r.status_code == 400


def test_conflict_between_two_sessions(console, console_ws, browser):
    url, _ = console
    first, second = browser.new_context(), browser.new_context()
    try:
        a, b = first.new_page(), second.new_page()
        sign_in(a, url, "alice")
        sign_in(b, url, "bob")
        edit_page(a, url, "flows/update-user.yaml")
        edit_page(b, url, "flows/update-user.yaml")
        a.get_by_label("Require a CSRF token").check()
        a.get_by_role("button", name="Save").click()
        expect(a.get_by_role("status")).to_contain_text("Saved")
        saved = (console_ws / "flows" / "update-user.yaml").read_bytes()

        b.get_by_label("Max age (seconds)").fill("600")
        b.get_by_role("button", name="Save").click()
        expect(b.get_by_role("alert").first).to_contain_text("Not saved: conflict")
        expect(b.locator(".conflict")).to_contain_text("alice saved it")
        assert (console_ws / "flows" / "update-user.yaml").read_bytes() == saved     # no lost update
        expect(b.get_by_label("Require a CSRF token")).to_be_checked()                # the current version
        expect(b.get_by_label("Max age (seconds)")).to_have_value("300")
    finally:
        first.close()
        second.close()


def test_another_user_sees_the_saved_change(console, browser):
    url, _ = console
    first, second = browser.new_context(), browser.new_context()
    try:
        a, b = first.new_page(), second.new_page()
        sign_in(a, url, "alice")
        sign_in(b, url, "bob")
        edit_page(a, url, "flows/admin.yaml")
        a.get_by_label("Scope rule (JSON)").fill('{"any": ["admin", "ops"]}')
        a.get_by_role("button", name="Save").click()
        expect(a.get_by_role("status")).to_contain_text("Saved")
        b.goto(f"{url}/console/endpoints")
        row = b.get_by_role("row").filter(has_text="/api/admin")
        expect(row).to_contain_text('{"any": ["admin", "ops"]}')
        edit_page(b, url, "flows/admin.yaml")
        expect(b.get_by_label("Scope rule (JSON)")).to_have_value('{"any": ["admin", "ops"]}')
    finally:
        first.close()
        second.close()


# ---- secrets ---------------------------------------------------------------------------------

def test_secrets_page_lists_facts_and_changes_users(console, context):
    url, _ = console
    page = context.new_page()
    sign_in(page, url)
    page.goto(f"{url}/console/secrets")
    html = page.content()
    assert "$argon2" not in html and "kkkk" not in html
    expect(page.get_by_role("row").filter(has_text="users-jwt")).to_contain_text("HS256")
    page.get_by_label("Basic secret").fill("api-users")
    page.get_by_label("User name").fill("carol")
    page.get_by_label("Password", exact=True).fill("carol-password")
    page.get_by_role("button", name="Save user").click()
    expect(page.get_by_role("status")).to_contain_text("added user 'carol'")
    page.get_by_label("Basic secret").fill("api-users")
    page.get_by_label("User name").fill("dave")
    page.get_by_label("Password", exact=True).fill("dave-password")
    page.get_by_role("button", name="Save user").click()
    page.get_by_role("button", name="Remove user carol from api-users").click()
    expect(page.get_by_role("status")).to_contain_text("Removed user 'carol'")
    page.get_by_role("button", name="Remove user dave from api-users").click()
    expect(page.get_by_role("alert")).to_contain_text("last user")
    page.get_by_label("JWT secret").fill("bad-jwt")
    page.get_by_label("Key (PEM, or a JWK Set as JSON)").fill("not a key")
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#err-jwt")).to_contain_text("neither PEM")
    page.get_by_role("button", name="Rotate the CSRF key").click()
    expect(page.get_by_role("status")).to_contain_text("Rotated the CSRF key")
    assert "carol-password" not in page.content()


# ---- screenshots for docs/console.md ---------------------------------------------------------

DEMO_FLOWS = {
    "flowlet.yaml": "name: shop-api\nconsole: {users: console-users}\n",
    "flows/users/get-user.yaml": GET_USER.replace("Read one user", "Read one user's profile"),
    "flows/users/update-user.yaml": PUT_USER.replace("  csrf: false          # the front end sends no CSRF token yet\n",
                                                     "  cors: {allow: selected, domains: \"*.example.com\", "
                                                     "headers: \"Content-Type, X-Request-Id\", max_age: 600}\n"),
    "flows/admin.yaml": ADMIN,
    "flows/orders.yaml": ("endpoint:\n  method: POST\n  path: /orders\n  auth: {type: basic, secret: api-users}\n"
                          "  csrf: true\n  cors: {allow: selected, domains: \"https://shop.example.com\", "
                          "credentials: true}\nrespond:\n  status: 201\n  body: {ok: true}\n"),
}


def test_screenshots_of_each_page(browser, tmp_path):
    # Pages are always rendered and shot; docs/ is rewritten only when asked
    # (FLOWLET_UPDATE_SCREENSHOTS=1), so a test run leaves the checkout as it was.
    shots = DOCS if os.environ.get("FLOWLET_UPDATE_SCREENSHOTS") == "1" else tmp_path / "shots"
    shots.mkdir(exist_ok=True)
    ws = make_workspace(tmp_path, DEMO_FLOWS)
    for name, args, stdin in (("console-users", ("--type", "basic", "--user", "alice"), USERS["alice"]),
                              ("console-users", ("--type", "basic", "--user", "bob"), USERS["bob"]),
                              ("api-users", ("--type", "basic", "--user", "shop-frontend"), "pw-123456"),
                              ("users-jwt", ("--type", "jwt", "--hs-key-stdin", "--issuer",
                                             "https://id.example.com", "--audience", "shop-api"), "k" * 40)):
        flag = () if "--hs-key-stdin" in args else ("--password-stdin",)
        out = flowlet("secrets", "set", name, "-w", str(ws), *args, *flag, input=stdin)
        assert out.returncode == 0, out.stderr
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
    try:
        with _harness.serve_console(ws, reload=lambda: (True, "The server now serves it.")) as (url, _):
            page = ctx.new_page()
            page.goto(f"{url}/console/signin")
            page.screenshot(path=shots / "console-signin.png")
            sign_in(page, url)
            edit_page(page, url, "flows/users/get-user.yaml")
            _set_cors(page, "*.example.com", "Content-Type", "300")
            page.goto(f"{url}/console/endpoints")
            page.screenshot(path=shots / "console-endpoints.png", full_page=True)
            page.goto(f"{url}/console/endpoint?file=flows/users/get-user.yaml&origin=https%3A%2F%2Ftest.example.com"
                      f"&try_method=PUT&try_headers=content-type")
            page.screenshot(path=shots / "console-endpoint.png", full_page=True)
            edit_page(page, url, "flows/admin.yaml")
            page.get_by_label("Scope rule (JSON)").fill('{"any": ["admin",')
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#err-scope")).to_be_visible()
            page.screenshot(path=shots / "console-error.png", full_page=True)
            page.goto(f"{url}/console/secrets")
            page.screenshot(path=shots / "console-secrets.png", full_page=True)
    finally:
        ctx.close()
