"""The security settings as a real browser sees them.

Headless Chromium loads pages from a trusted origin (https://app.example.test:PORT), a hostile
site (https://evil.test:PORT) and a hostile sibling subdomain (https://evil.example.test:PORT)
and calls Flowlet, served over TLS as https://api.example.test:PORT, with ``fetch``. Whatever
the browser refuses shows up here as a ``TypeError``; whatever it sends without being able to
read the answer is caught by a side-effect counter that only the CSRF-protected flow bumps.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import textwrap
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "browser-demo.png"


def _root_helpers():
    """tests/conftest.py's helpers (run_server, make_workspace, flowlet), loaded by path so
    that this works whatever pytest's import mode (``conftest`` names two modules here)."""
    spec = importlib.util.spec_from_file_location("flowlet_tests_root_helpers", ROOT / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_helpers = _root_helpers()
run_server, make_workspace, flowlet = _helpers.run_server, _helpers.make_workspace, _helpers.flowlet

CSRF_ERROR = {"error": "CSRF token missing or invalid"}
BASIC_USER, BASIC_PASSWORD = "alice", "pässwort-😀"     # non-ASCII: charset="UTF-8" must hold
REALM = "Flowlet E2E"

# The CSRF boilerplate users are given, verbatim as quoted in docs/csrf.md; only WORKSPACE and
# ENDPOINT are replaced before it runs.
SEED_SNIPPET = """\
try {
  const { token } = await (await fetch('https://WORKSPACE.flowlet.app/api/csrf')).json();
  const response = await fetch('https://WORKSPACE.flowlet.app/api/ENDPOINT', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-CSRF-TOKEN': token
    },
    body: JSON.stringify({
      "...": "..."
    })
  });
} catch (err) {
  setError('Something went wrong...');
}"""


# ---- the workspace ----------------------------------------------------------------------------

COUNTER_PY = '''\
"""A side effect the tests can observe: how often the CSRF-protected flow really ran."""
from pathlib import Path

FILE = Path(__file__).resolve().parent.parent / "count.txt"


def read():
    try:
        return int(FILE.read_text())
    except FileNotFoundError:
        return 0


def bump():
    n = read() + 1
    FILE.write_text(str(n))
    return n
'''


def workspace_files(trusted: str) -> dict[str, str]:
    # the cors block's first lines, indented to sit under "cors:" below (dedented later)
    cors = f'allow: selected\n{" " * 16}domains: "{trusted}"'
    return {
        "flowlet.yaml": f"name: {REALM}\n",
        "functions/__init__.py": "",
        "functions/counter.py": COUNTER_PY,
        # a plain CORS read
        "flows/data.yaml": f"""
            endpoint:
              method: GET
              path: /data
              cors:
                {cors}
            respond:
              headers: {{Cache-Control: no-store}}
              body: {{data: only for the trusted origin}}
            """,
        # docs/cors.md's merge example: POST allows X-Foo, PUT allows X-Bar, one path
        "flows/items-post.yaml": f"""
            endpoint:
              method: POST
              path: /items
              cors:
                {cors}
                headers: [Content-Type, X-Foo]
            respond:
              status: 201
              body:
                method: "=request.method"
                foo: "='x-foo' in request.headers ? request.headers['x-foo'] : ''"
                bar: "='x-bar' in request.headers ? request.headers['x-bar'] : ''"
            """,
        "flows/items-put.yaml": f"""
            endpoint:
              method: PUT
              path: /items
              cors:
                {cors}
                headers: [Content-Type, X-Bar]
            respond:
              body:
                method: "=request.method"
                foo: "='x-foo' in request.headers ? request.headers['x-foo'] : ''"
                bar: "='x-bar' in request.headers ? request.headers['x-bar'] : ''"
                changes: "=body"
            """,
        # CSRF-protected, with a side effect the tests read back
        "flows/notes-post.yaml": f"""
            endpoint:
              method: POST
              path: /notes
              csrf: true
              cors:
                {cors}
                credentials: true
            steps:
              - id: count
                function: functions.counter:bump
            respond:
              status: 201
              body: {{saved: "=body", count: "=count"}}
            """,
        "flows/count.yaml": """
            endpoint:
              method: GET
              path: /count
            steps:
              - id: count
                function: functions.counter:read
            respond:
              headers: {Cache-Control: no-store}
              body: {count: "=count"}
            """,
        # JWT in the Authorization header: no credentials mode needed
        "flows/reports.yaml": f"""
            endpoint:
              method: GET
              path: /reports
              auth: {{type: jwt, secret: e2e-jwt, scope: "reports:read"}}
              cors:
                {cors}
            respond:
              headers: {{Cache-Control: no-store}}
              body: {{reports: [q1, q2], sub: "=auth.claims.sub"}}
            """,
        # JWT read from a cookie: credentials mode and Allow Credentials
        "flows/me.yaml": f"""
            endpoint:
              method: GET
              path: /me
              auth: {{type: jwt, secret: e2e-jwt, token_cookie: session}}
              cors:
                {cors}
                credentials: true
            respond:
              headers: {{Cache-Control: no-store}}
              body: {{sub: "=auth.claims.sub", scopes: "=auth.scopes"}}
            """,
        # Basic, same origin only
        "flows/private.yaml": """
            endpoint:
              method: GET
              path: /private
              auth: {type: basic, secret: e2e-users}
            respond:
              headers: {Cache-Control: no-store}
              body: {hello: "=auth.user"}
            """,
    }


class Api:
    def __init__(self, root: Path, server, origin: str, tokens: dict[str, str]):
        self.root = root
        self.server = server
        self.origin = origin          # as the browser reaches it
        self.tokens = tokens

    def url(self, path: str) -> str:
        return self.origin + path

    def count(self) -> int:
        """How often the CSRF-protected flow ran (read over plain HTTP, outside the browser)."""
        r = httpx.get(self.server.url + "/api/count", verify=False, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["count"]


def _cli(*args: str, input: str | None = None) -> str:
    r = flowlet(*args, input=input, env={"PYTHONUTF8": "1"})
    assert r.returncode == 0, f"flowlet {' '.join(args)}: {r.stderr}"
    return r.stdout.strip()


@pytest.fixture(scope="module")
def api(tmp_path_factory, static_site, tls_files):
    root = make_workspace(tmp_path_factory.mktemp("browser-ws"), workspace_files(static_site.trusted))
    ws = str(root)
    # secrets through the real CLI, as a user would create them
    _cli("secrets", "set", "e2e-users", "-w", ws, "--type", "basic", "--user", BASIC_USER,
         "--password-stdin", input=BASIC_PASSWORD + "\n")
    _cli("secrets", "set", "e2e-jwt", "-w", ws, "--type", "jwt", "--hs-key-stdin",
         input=base64.urlsafe_b64encode(os.urandom(48)).decode() + "\n")
    tokens = {
        "reader": _cli("token", "-w", ws, "--secret", "e2e-jwt", "--scope", "reports:read", "--sub", "ada"),
        "other": _cli("token", "-w", ws, "--secret", "e2e-jwt", "--scope", "other", "--sub", "bob"),
    }
    cert, key = tls_files
    with run_server(root, "--tls-cert", str(cert), "--tls-key", str(key)) as server:
        port = server.url.rsplit(":", 1)[1]
        yield Api(root, server, f"https://api.example.test:{port}", tokens)


# ---- in-page helpers ----------------------------------------------------------------------------

FETCH_JS = """async ({url, init}) => {
  try {
    const r = await fetch(url, init || {});
    const text = await r.text();
    let body = text;
    try { body = JSON.parse(text); } catch (e) {}
    const headers = {};
    r.headers.forEach((v, k) => { headers[k] = v; });
    return {status: r.status, type: r.type, body, headers};
  } catch (e) {
    return {error: e.name, message: e.message};
  }
}"""


def open_page(context, origin: str):
    page = context.new_page()
    resp = page.goto(origin + "/blank.html")
    assert resp is not None and resp.ok, f"could not load {origin}"
    return page


def fetch(page, url: str, **init) -> dict:
    """``fetch(url, init)`` inside the page: {status, type, body, headers} or {error, message}."""
    return page.evaluate(FETCH_JS, {"url": url, "init": init})


def assert_blocked(result: dict) -> None:
    """What a page sees when CORS keeps it from reading (or sending) a request."""
    assert result.get("error") == "TypeError", result
    assert "status" not in result


def csrf_token(page, api: Api) -> str:
    r = fetch(page, api.url("/api/csrf"), credentials="include")
    assert r.get("status") == 200, r
    token = r["body"]["token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    return token


def post_note(page, api: Api, token: str | None, *, credentials: str = "include", body=None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-CSRF-TOKEN"] = token
    return fetch(page, api.url("/api/notes"), method="POST", credentials=credentials,
                 headers=headers, body=json.dumps(body if body is not None else {"text": "hi"}))


# ---- TLS as the browser sees it ------------------------------------------------------------------

def test_browser_talks_http2_and_sees_hsts(context, api):
    page = context.new_page()
    resp = page.goto(api.url("/api/data"))
    assert resp.status == 200
    assert resp.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    protocol = page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
    assert protocol == "h2"


# ---- CORS -------------------------------------------------------------------------------------------

def test_cors_get_readable_from_trusted_origin_only(context, api, static_site):
    trusted = fetch(open_page(context, static_site.trusted), api.url("/api/data"))
    assert trusted["status"] == 200 and trusted["type"] == "cors"
    assert trusted["body"] == {"data": "only for the trusted origin"}

    assert_blocked(fetch(open_page(context, static_site.hostile), api.url("/api/data")))
    assert_blocked(fetch(open_page(context, static_site.sibling), api.url("/api/data")))


def test_preflighted_put_with_custom_header_from_trusted_origin(context, api, static_site):
    page = open_page(context, static_site.trusted)
    r = fetch(page, api.url("/api/items"), method="PUT",
              headers={"Content-Type": "application/json", "X-Bar": "b"}, body='{"n": 1}')
    assert r.get("status") == 200, r
    assert r["body"] == {"method": "PUT", "foo": "", "bar": "b", "changes": {"n": 1}}

    # errors carry the CORS headers too: a body over limits.body_bytes is a readable 413,
    # even though the server answers before reading it (HTTP/2 stream ended early)
    big = page.evaluate("""async (url) => {
        const r = await fetch(url, {method: 'PUT', headers: {'Content-Type': 'application/json', 'X-Bar': 'b'},
                                    body: 'x'.repeat(2 * 1024 * 1024)});
        return {status: r.status, body: await r.json()};
    }""", api.url("/api/items"))
    assert big == {"status": 413, "body": {"error": "request body larger than 1048576 bytes"}}

    hostile = open_page(context, static_site.hostile)
    assert_blocked(fetch(hostile, api.url("/api/items"), method="PUT",
                         headers={"Content-Type": "application/json", "X-Bar": "b"}, body="{}"))


def test_seed_header_merge_holds_in_the_browser(context, api, static_site):
    """POST allows X-Foo, PUT allows X-Bar on one path: both headers work on both methods."""
    page = open_page(context, static_site.trusted)
    for method, status in (("POST", 201), ("PUT", 200)):
        for headers in ({"X-Foo": "f"}, {"X-Bar": "b"}, {"X-Foo": "f", "X-Bar": "b"}):
            r = fetch(page, api.url("/api/items"), method=method,
                      headers={"Content-Type": "application/json", **headers}, body="{}")
            assert r.get("status") == status, (method, headers, r)
            assert r["body"]["method"] == method
            assert r["body"]["foo"] == headers.get("X-Foo", "")
            assert r["body"]["bar"] == headers.get("X-Bar", "")
    # a header that neither flow allows is still refused by the preflight
    for method in ("POST", "PUT"):
        assert_blocked(fetch(page, api.url("/api/items"), method=method,
                             headers={"Content-Type": "application/json", "X-Baz": "z"}, body="{}"))


# ---- CSRF -------------------------------------------------------------------------------------------

def test_csrf_from_trusted_origin_with_credentials(context, api, static_site):
    page = open_page(context, static_site.trusted)
    before = api.count()
    token = csrf_token(page, api)

    # the browser stored the cookie as Flowlet sent it
    (cookie,) = [c for c in context.cookies() if c["name"] == "csrf"]
    assert cookie["domain"] == "api.example.test" and cookie["path"] == "/api"
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != token          # the cookie is a keyed hash of the token
    assert page.evaluate("document.cookie") == ""
    # other cookies of the API host travel along (over HTTP/2 a browser may send the Cookie
    # header in pieces); the server must still find the CSRF cookie among them
    context.add_cookies([
        {"name": "theme", "value": "dark", "domain": "api.example.test", "path": "/", "secure": True},
        {"name": "session", "value": "x" * 40, "domain": "api.example.test", "path": "/api", "secure": True},
    ])

    ok = post_note(page, api, token, body={"text": "from the app"})
    assert ok.get("status") == 201, ok
    assert ok["body"]["saved"] == {"text": "from the app"}
    assert api.count() == before + 1

    # the token works again (a pair is reusable) ...
    assert post_note(page, api, token).get("status") == 201
    assert api.count() == before + 2

    # ... but not without the header, not without the cookie, not with another token
    for r in (post_note(page, api, None),
              post_note(page, api, token, credentials="same-origin"),
              post_note(page, api, "A" * 43)):
        assert r.get("status") == 400, r
        assert r["body"] == CSRF_ERROR
    assert api.count() == before + 2


def test_csrf_hostile_site_cannot_post(context, api, static_site):
    """The victim has a token and cookie from the real app; evil.test tries everything it can."""
    app = open_page(context, static_site.trusted)
    victim_token = csrf_token(app, api)
    before = api.count()

    evil = open_page(context, static_site.hostile)
    # reading a token: CORS refuses evil.test, with or without credentials
    assert_blocked(fetch(evil, api.url("/api/csrf"), credentials="include"))
    assert_blocked(fetch(evil, api.url("/api/csrf")))
    # a POST with the header (even a valid token, leaked somehow) needs a preflight: refused
    assert_blocked(post_note(evil, api, victim_token))
    # blind simple requests: sent, unreadable, and refused by the server
    for body, ctype in (('{"text": "evil"}', "text/plain"), ("text=evil", "application/x-www-form-urlencoded")):
        r = fetch(evil, api.url("/api/notes"), method="POST", mode="no-cors", credentials="include",
                  headers={"Content-Type": ctype}, body=body)
        assert r.get("type") == "opaque" and r["status"] == 0, r
    # a cross-site form post (top-level navigation): the server's answer is the CSRF error
    with evil.expect_navigation() as nav:
        evil.evaluate("""(action) => {
            const f = document.createElement('form');
            f.method = 'POST'; f.action = action; f.enctype = 'text/plain';
            const i = document.createElement('input'); i.name = '{"text":"'; i.value = 'evil"}';
            f.append(i); document.body.append(f); f.submit();
        }""", api.url("/api/notes"))
    assert nav.value.status == 400
    assert json.loads(evil.inner_text("body")) == CSRF_ERROR

    assert api.count() == before, "a hostile page made the protected flow run"
    # the victim's own app still works afterwards
    assert post_note(app, api, victim_token).get("status") == 201
    assert api.count() == before + 1


def plant_cookie_from_sibling(context, static_site, api: Api) -> str:
    """evil.example.test gets a genuine (token, cookie) pair from the server (anyone can: it is
    a plain GET) and plants the cookie for the whole site with ``Domain=example.test``.
    Returns the attacker's token."""
    r = httpx.get(api.server.url + "/api/csrf", verify=False, timeout=10)
    token, cookie = r.json()["token"], r.cookies["csrf"]
    sibling = open_page(context, static_site.sibling)
    sibling.evaluate("""(c) => { document.cookie =
        'csrf=' + c + '; Domain=example.test; Path=/api; Secure; SameSite=Strict; Max-Age=3600'; }""", cookie)
    planted = [c for c in context.cookies() if c["name"] == "csrf" and c["domain"] == ".example.test"]
    assert planted and planted[0]["value"] == cookie, context.cookies()
    return token


def test_csrf_hostile_sibling_subdomain_cannot_post(context, api, static_site):
    """evil.example.test is the same *site*: SameSite=Strict cookies are sent along, and it
    can even plant a cookie for example.test. The custom header (it needs a preflight that
    CORS refuses) and the Origin check still stop it."""
    app = open_page(context, static_site.trusted)
    victim_token = csrf_token(app, api)
    attacker_token = plant_cookie_from_sibling(context, static_site, api)
    before = api.count()

    sibling = open_page(context, static_site.sibling)
    assert_blocked(fetch(sibling, api.url("/api/csrf"), credentials="include"))
    for token in (victim_token, attacker_token):
        assert_blocked(post_note(sibling, api, token))
    r = fetch(sibling, api.url("/api/notes"), method="POST", mode="no-cors", credentials="include",
              headers={"Content-Type": "text/plain"}, body='{"text": "sibling"}')
    assert r.get("type") == "opaque", r
    assert api.count() == before


def test_planted_cookie_does_not_lock_out_the_app(context, api, static_site):
    app = open_page(context, static_site.trusted)
    plant_cookie_from_sibling(context, static_site, api)
    token = csrf_token(app, api)                      # even a fresh token from the real app
    r = post_note(app, api, token)
    assert r.get("status") == 201, r


def _seed_snippet(api: Api) -> str:
    return SEED_SNIPPET.replace("https://WORKSPACE.flowlet.app", api.origin).replace("ENDPOINT", "notes")


def _run_seed_snippet(page, api: Api, *, add_credentials: bool = False) -> dict:
    """Run the snippet unchanged; a local ``fetch`` records what the real one answered and a
    local ``setError`` what the snippet reported."""
    snippet = _seed_snippet(api)
    if add_credentials:   # docs/csrf.md: from another origin of the same site, add this to both calls
        snippet = snippet.replace("/api/csrf')", "/api/csrf', { credentials: 'include' })")
        snippet = snippet.replace("method: 'POST',", "method: 'POST',\n    credentials: 'include',")
        assert snippet.count("credentials: 'include'") == 2
    script = ("async () => {\n"
              "  const seen = []; let reported = null;\n"
              "  const setError = (message) => { reported = message; };\n"
              "  const fetch = async (url, init) => {\n"
              "    const r = await window.fetch(url, init);\n"
              "    const text = await r.clone().text();\n"
              "    seen.push({url, status: r.status, body: JSON.parse(text)});\n"
              "    return r;\n"
              "  };\n"
              + textwrap.indent(snippet, "  ") + "\n"
              "  return {seen, reported};\n"
              "}")
    return page.evaluate(script)


def test_seed_csrf_snippet_works_as_written_on_the_api_origin(context, api):
    assert " ".join(SEED_SNIPPET.split()) in " ".join((ROOT / "docs" / "csrf.md").read_text().split()), \
        "docs/csrf.md no longer quotes the product's CSRF snippet that this test runs"
    page = context.new_page()
    assert page.goto(api.url("/api/count")).status == 200      # any page on the API's own origin
    before = api.count()
    result = _run_seed_snippet(page, api)
    assert result["reported"] is None, result
    (csrf, post) = result["seen"]
    assert csrf["status"] == 200 and set(csrf["body"]) == {"token"}
    assert post["status"] == 201, post
    assert post["body"]["saved"] == {"...": "..."}
    assert api.count() == before + 1


def test_seed_csrf_snippet_from_app_origin_needs_credentials_include(context, api, static_site):
    """As docs/csrf.md says: cross-origin, the snippet as written reads a token but the cookie
    is neither stored nor sent, so the POST is refused (and the snippet does not notice);
    with credentials: 'include' on both calls it works."""
    page = open_page(context, static_site.trusted)
    before = api.count()
    as_written = _run_seed_snippet(page, api)
    assert as_written["reported"] is None
    assert as_written["seen"][0]["status"] == 200
    assert as_written["seen"][1]["status"] == 400 and as_written["seen"][1]["body"] == CSRF_ERROR
    assert api.count() == before

    fixed = _run_seed_snippet(page, api, add_credentials=True)
    assert fixed["reported"] is None
    assert fixed["seen"][1]["status"] == 201, fixed
    assert api.count() == before + 1


def test_csrf_cookie_with_domain_setting(context, static_site, tls_files, tmp_path):
    """``domain: example.test`` in flowlet.yaml: the browser accepts ``Domain=example.test``
    from api.example.test and the protected call works as before."""
    files = workspace_files(static_site.trusted)
    files = {k: files[k] for k in ("functions/__init__.py", "functions/counter.py", "flows/notes-post.yaml")}
    files["flowlet.yaml"] = f"name: {REALM}\ndomain: example.test\n"
    root = make_workspace(tmp_path, files)
    cert, key = tls_files
    with run_server(root, "--tls-cert", str(cert), "--tls-key", str(key)) as server:
        api = Api(root, server, "https://api.example.test:" + server.url.rsplit(":", 1)[1], {})
        page = open_page(context, static_site.trusted)
        token = csrf_token(page, api)
        (cookie,) = [c for c in context.cookies() if c["name"] == "csrf"]
        assert cookie["domain"] == ".example.test" and cookie["path"] == "/api"
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        r = post_note(page, api, token)
        assert r.get("status") == 201 and r["body"]["count"] == 1, r
        assert post_note(page, api, None)["body"] == CSRF_ERROR


def _notes_only_workspace(tmp_path: Path, trusted: str) -> Path:
    files = workspace_files(trusted)
    files = {k: files[k] for k in ("flowlet.yaml", "functions/__init__.py", "functions/counter.py",
                                   "flows/notes-post.yaml")}
    return make_workspace(tmp_path, files)


def run_demo_page(page, url: str) -> list[list[str]]:
    page.goto(url)
    page.wait_for_selector("body[data-state=done]")
    return page.eval_on_selector_all("[data-step]", "els => els.map(e => [e.dataset.step, e.dataset.result])")


def test_plain_http_localhost_development(context, plain_site, tmp_path):
    """docs/csrf.md: browsers treat http://localhost as secure, so the Secure cookie works
    without TLS -- as long as page and API use the same host name. A page on localhost calling
    the API as 127.0.0.1 is another *site*: the SameSite=Strict cookie is never stored, and
    every protected call is refused although CORS allows the page."""
    page_port = plain_site.port
    root = _notes_only_workspace(tmp_path, f"http://localhost:{page_port}, http://127.0.0.1:{page_port}")
    with run_server(root) as server:
        api_port = server.url.rsplit(":", 1)[1]
        for host in ("localhost", "127.0.0.1"):
            page = context.new_page()
            steps = run_demo_page(page, f"http://{host}:{page_port}/index.html?api=http://{host}:{api_port}")
            assert steps == [["csrf", "pass"], ["post", "pass"], ["no-token", "pass"]], (host, steps)
            (cookie,) = [c for c in context.cookies() if c["name"] == "csrf"]
            assert cookie["domain"] == host and cookie["secure"] and cookie["sameSite"] == "Strict"
            context.clear_cookies()

        page = context.new_page()
        steps = run_demo_page(page, f"http://localhost:{page_port}/index.html?api=http://127.0.0.1:{api_port}")
        assert steps == [["csrf", "pass"], ["post", "fail"], ["no-token", "pass"]], steps
        assert "CSRF token missing or invalid" in page.inner_text("[data-step=post]")
        assert [c for c in context.cookies() if c["name"] == "csrf"] == []


# ---- JWT ----------------------------------------------------------------------------------------------

def test_jwt_in_authorization_header_needs_no_credentials_mode(context, api, static_site):
    page = open_page(context, static_site.trusted)
    bearer = {"Authorization": "Bearer " + api.tokens["reader"]}
    r = fetch(page, api.url("/api/reports"), headers=bearer)        # credentials: 'same-origin'
    assert r.get("status") == 200, r
    assert r["body"] == {"reports": ["q1", "q2"], "sub": "ada"}
    r = fetch(page, api.url("/api/reports"), headers=bearer, credentials="omit")
    assert r.get("status") == 200, r

    # errors are readable cross-origin too (CORS headers on every response of the method)
    r = fetch(page, api.url("/api/reports"))
    assert r.get("status") == 401 and r["body"]["error"], r
    r = fetch(page, api.url("/api/reports"), headers={"Authorization": "Bearer " + api.tokens["other"]})
    assert r.get("status") == 403, r

    # the hostile site may send a stolen token, but never read the answer
    evil = open_page(context, static_site.hostile)
    assert_blocked(fetch(evil, api.url("/api/reports"), headers=bearer))


def test_jwt_from_cookie_with_credentials_include(context, api, static_site):
    context.add_cookies([{"name": "session", "value": api.tokens["reader"], "domain": "api.example.test",
                          "path": "/", "secure": True, "httpOnly": True, "sameSite": "Strict"}])
    page = open_page(context, static_site.trusted)
    r = fetch(page, api.url("/api/me"), credentials="include")
    assert r.get("status") == 200, r
    assert r["body"] == {"sub": "ada", "scopes": ["reports:read"]}
    # without credentials mode the browser does not send the cookie
    r = fetch(page, api.url("/api/me"))
    assert r.get("status") == 401, r
    # another site: the Strict cookie is not even sent, and the answer is unreadable anyway
    assert_blocked(fetch(open_page(context, static_site.hostile), api.url("/api/me"), credentials="include"))


# ---- Basic ---------------------------------------------------------------------------------------------

def test_basic_challenge_seen_by_the_browser(context, api):
    challenge = f'Basic realm="{REALM}", charset="UTF-8"'
    # a navigation: the browser receives the 401 and its challenge (headless Chromium has no
    # login dialog, so the navigation itself then ends in ERR_INVALID_AUTH_CREDENTIALS)
    page = context.new_page()
    with page.expect_response(api.url("/api/private")) as answer:
        try:
            page.goto(api.url("/api/private"))
        except PlaywrightError as exc:
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
    assert answer.value.status == 401
    assert answer.value.headers["www-authenticate"] == challenge

    # fetch on the API's own origin. credentials: 'omit' keeps the browser from answering the
    # challenge itself: with the default mode a same-origin 401 Basic opens the login dialog
    # (and in headless Chromium the fetch then never settles)
    page = context.new_page()
    assert page.goto(api.url("/api/count")).status == 200
    r = fetch(page, api.url("/api/private"), credentials="omit")
    assert r.get("status") == 401, r
    assert r["headers"]["www-authenticate"] == challenge
    assert r["body"]["error"]
    # an Authorization header the page builds itself: UTF-8 bytes, base64 (RFC 7617)
    ok = page.evaluate("""async ([url, user, pass]) => {
        const bytes = new TextEncoder().encode(user + ':' + pass);
        const b64 = btoa(String.fromCharCode(...bytes));
        const r = await fetch(url, {credentials: 'omit', headers: {Authorization: 'Basic ' + b64}});
        return {status: r.status, body: await r.json()};
    }""", [api.url("/api/private"), BASIC_USER, BASIC_PASSWORD])
    assert ok == {"status": 200, "body": {"hello": BASIC_USER}}


def test_basic_credentials_answered_by_the_browser_itself(browser, api):
    """The browser answers the challenge with stored credentials (a non-ASCII password: it
    must encode it as UTF-8, as charset="UTF-8" asks)."""
    ctx = browser.new_context(ignore_https_errors=True,
                              http_credentials={"username": BASIC_USER, "password": BASIC_PASSWORD})
    try:
        page = ctx.new_page()
        resp = page.goto(api.url("/api/private"))
        assert resp.status == 200
        assert resp.json() == {"hello": BASIC_USER}
    finally:
        ctx.close()


# ---- the demo page -----------------------------------------------------------------------------------

def test_demo_page_fetches_a_token_and_calls_the_protected_endpoint(context, api, static_site, tmp_path):
    page = context.new_page()
    page.set_viewport_size({"width": 900, "height": 640})
    before = api.count()
    page.goto(f"{static_site.trusted}/index.html?api={api.origin}")
    page.wait_for_selector("body[data-state=done]")
    steps = page.eval_on_selector_all("[data-step]", "els => els.map(e => [e.dataset.step, e.dataset.result])")
    assert steps == [["csrf", "pass"], ["post", "pass"], ["no-token", "pass"]], steps
    assert "201" in page.inner_text("[data-step=post]")
    assert "CSRF token missing or invalid" in page.inner_text("[data-step=no-token]")
    assert api.count() == before + 1

    shot = tmp_path / "browser-demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FLOWLET_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)
    assert SCREENSHOT.exists(), "run with FLOWLET_UPDATE_SCREENSHOT=1 to write docs/browser-demo.png"


