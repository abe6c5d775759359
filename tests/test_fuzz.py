"""Schemathesis fuzzes the demo and the contracts workspace through their served OpenAPI
documents: no answer may be a 5xx, and no answer may break the schema declared for it.

Credentials (Basic, JWT, the CSRF token and cookie) come from Schemathesis auth hooks, so
the generated requests get past the security checks and reach the contracts and the flows.
The number of examples is bounded: this runs in every test run.
"""

from __future__ import annotations

import base64
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from conftest import DEMO, flowlet, run_server  # noqa: E402
from shopws import Credentials, prepare  # noqa: E402

EXAMPLES = 30          # per operation; every operation runs its own bounded search


def prepare_demo(dest: Path) -> Credentials:
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns(".flowlet", "__pycache__"))
    password = "demo-fuzz-password"
    for args, stdin in ((("demo-users", "--type", "basic", "--user", "demo", "--password-stdin"), password),
                        (("demo-jwt", "--type", "jwt", "--hs-key-stdin"), "k" * 48)):
        assert flowlet("secrets", "set", *args, "-w", str(dest), input=stdin).returncode == 0
    token = flowlet("token", "-w", str(dest), "--secret", "demo-jwt", "--scope", "read", "--sub", "fuzz")
    assert token.returncode == 0, token.stderr
    return Credentials(("demo", password), token.stdout.strip())


class Credentialed:
    """Reads the document's security requirements and CSRF parameters once, then hands each
    generated case the credentials its operation needs."""

    def __init__(self, url: str, doc: dict, creds: Credentials):
        self.url = url
        self.doc = doc
        self.creds = creds
        self.csrf: tuple[str, str] | None = None

    def needs(self, method: str, path: str) -> tuple[str | None, tuple[str, str] | None]:
        op = self.doc["paths"][path][method.lower()]
        scheme = None
        for requirement in op.get("security", []):
            for name in requirement:
                scheme = self.doc["components"]["securitySchemes"][name]["scheme"]
        params = op.get("parameters", [])
        header = next((p["name"] for p in params if p["in"] == "header" and p["name"].lower() == "x-csrf-token"), None)
        cookie = next((p["name"] for p in params if p["in"] == "cookie"), None)
        return scheme, (header, cookie) if header and cookie else None

    def csrf_pair(self) -> tuple[str, str]:
        if self.csrf is None:
            r = httpx.get(self.url + "/api/csrf")
            cookie = r.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
            self.csrf = (r.json()["token"], cookie)
        return self.csrf

    def apply(self, case) -> None:
        scheme, csrf = self.needs(case.method, case.path)
        headers = dict(case.headers or {})
        cookies = dict(case.cookies or {})
        if scheme == "basic":
            user, password = self.creds.basic
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif scheme == "bearer":
            headers["Authorization"] = f"Bearer {self.creds.token}"
        if csrf is not None:
            token, value = self.csrf_pair()
            headers[csrf[0]] = token
            cookies[csrf[1]] = value
        case.headers, case.cookies = headers, cookies


def fuzz(url: str, creds: Credentials) -> tuple[list[str], dict[str, Counter]]:
    doc = httpx.get(url + "/api/openapi.json").json()
    schema = schemathesis.openapi.from_url(url + "/api/openapi.json")
    credentialed = Credentialed(url, doc, creds)

    @schema.auth()
    class FlowletAuth:
        def get(self, case, context):
            return credentialed

        def set(self, case, data, context):
            data.apply(case)

    failures: list[str] = []
    statuses: dict[str, Counter] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        seen = statuses.setdefault(op.label, Counter())

        # Valid input (it must reach the flow) and invalid input (it must get a 4xx, never a 5xx).
        @given(case=st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        def run(case):
            response = case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
            seen[response.status_code] += 1

        try:
            run()
        except Exception as exc:      # Schemathesis reports every check that failed, with a curl line
            failures.append(f"{op.label}: {exc}")
    return failures, statuses


@pytest.mark.parametrize("name", ["demo", "contracts"])
def test_fuzzing_finds_no_server_error_and_no_answer_off_its_schema(tmp_path, name):
    dest = tmp_path / name
    creds = prepare_demo(dest) if name == "demo" else prepare(dest)
    with run_server(dest, "--no-access-log") as srv:
        failures, statuses = fuzz(srv.url, creds)
    assert not failures, "\n\n".join(failures)
    # The auth hooks worked: every operation behind Basic, JWT or CSRF was answered 2xx at least once.
    doc_ops = [label for label in statuses if "secure" in label or label in (
        "GET /api/private", "GET /api/reports", "POST /api/notes")]
    assert doc_ops
    for label in doc_ops:
        assert any(200 <= s < 300 for s in statuses[label]), (label, dict(statuses[label]))
