"""Build what the contenders serve: Flowlet workspaces (secrets through the real CLI), the same
key material for the glue apps, and the tokens and CSRF pairs the load generator sends."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path

FLOWLET = [sys.executable, "-m", "flowlet.cli"]
PASSWORD = "bench-password-1"
HS_KEY = "bench-shared-key-" + "k" * 40          # >= 32 bytes for HS256
JWT_KEYS = ("hs", "rs", "es", "ed")
ALG = {"hs": "HS256", "rs": "RS256", "es": "ES256", "ed": "EdDSA"}

HELLO = "respond:\n  body: {message: Hello from Flowlet}\n"
# counted on every request, never reached: what is measured is the counting
LIMITED = ("endpoint:\n  method: GET\n  path: /limited\n"
           "  rate_limit: {limit: 1000000000, window_s: 86400, key: client}\n" + HELLO)
REDIS_URL = "redis://127.0.0.1:6379/0"


def _cli(*args: str, input: str | None = None, retries: int = 3) -> str:
    """Run `python -m flowlet.cli ARGS`; retried a few times (other engineers may be mid-edit)."""
    for attempt in range(retries):
        proc = subprocess.run([*FLOWLET, *args], input=input, capture_output=True, text=True, timeout=120)
        if proc.returncode == 0:
            return proc.stdout
        if attempt == retries - 1:
            raise RuntimeError(f"flowlet {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr.strip()}")
        time.sleep(2)
    raise AssertionError("unreachable")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def _private_pems() -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    keys = {"rs": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "es": ec.generate_private_key(ec.SECP256R1()),
            "ed": ed25519.Ed25519PrivateKey.generate()}
    return {name: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()) for name, k in keys.items()}


def _public_pem(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def main_flows(cases: set[str]) -> dict[str, str]:
    """The bench workspace: one flow per case (only those whose secrets the run creates)."""
    flows = {"flows/hello.yaml": "endpoint:\n  method: GET\n  path: /hello\n" + HELLO}
    if cases & {"preflight", "cors"}:
        flows["flows/cors.yaml"] = textwrap.dedent("""\
            endpoint:
              method: GET
              path: /cors
              cors:
                allow: selected
                domains: "*.example.com"
                headers: Content-Type
                credentials: true
                max_age: 300
            """) + HELLO
    if "basic" in cases:
        flows["flows/basic.yaml"] = ("endpoint:\n  method: GET\n  path: /basic\n"
                                     "  auth: {type: basic, secret: users}\n" + HELLO)
    for name in jwt_keys_needed(cases):
        flows[f"flows/jwt-{name}.yaml"] = (f"endpoint:\n  method: GET\n  path: /jwt/{name}\n"
                                           f"  auth: {{type: jwt, secret: {name}, scope: read}}\n" + HELLO)
    if cases & {"ratelimit-local", "ratelimit-redis"}:
        flows["flows/limited.yaml"] = LIMITED
    signup = "respond:\n  body: {ok: true, name: \"=body.name\"}\n"
    if "post" in cases:
        flows["flows/signup-raw.yaml"] = "endpoint:\n  method: POST\n  path: /signup-raw\n" + signup
    if "validated" in cases:
        # The schema the glue apps' pydantic model mirrors (contenders/glue.py), as JSON in YAML.
        flows["flows/signup.yaml"] = ("endpoint:\n  method: POST\n  path: /signup\n  input:\n    body: "
                                      + json.dumps(_glue().SIGNUP_SCHEMA) + "\n" + signup)
    if "csrf" in cases:
        flows["flows/notes.yaml"] = textwrap.dedent("""\
            endpoint:
              method: POST
              path: /notes
              csrf: true
            respond:
              status: 201
              body: {saved: "=body"}
            """)
    if "csrf-off" in cases:               # the CSRF case's baseline: the same flow without CSRF
        flows["flows/notes-open.yaml"] = textwrap.dedent("""\
            endpoint:
              method: POST
              path: /notes-open
            respond:
              status: 201
              body: {saved: "=body"}
            """)
    return flows


def _glue():
    """The contenders' shared module (the signup body and schema live there)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_glue", Path(__file__).parent / "contenders" / "glue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jwt_keys_needed(cases: set[str]) -> list[str]:
    out = []
    for name, case in (("hs", "jwt-hs256"), ("rs", "jwt-rs256"), ("es", "jwt-es256"), ("ed", "jwt-eddsa")):
        if case in cases or (name == "es" and "jwt-es256-fresh" in cases):
            out.append(name)
    return out


def routes_flows(n: int) -> dict[str, str]:
    return {f"flows/items{i:04d}.yaml": f"endpoint:\n  method: GET\n  path: /items{i}/{{id:int}}\n" + HELLO
            for i in range(n)}


class Material:
    """Everything generated for one run, under ``root``."""

    def __init__(self, root: Path, cases: set[str], fresh_tokens: int = 0):
        self.root = root
        self.cases = cases
        self.ws = root / "ws"                  # the bench workspace
        self.glue = root / "glue"              # key material for the Starlette/FastAPI apps
        self.ws_routes: dict[int, Path] = {}   # N -> workspace with N endpoints
        self.ws_redis = root / "ws-redis"      # rate limits counted in Redis
        self.tokens: dict[str, str] = {}       # key name -> a token made by `flowlet token`
        self.fresh_tokens = fresh_tokens
        self.fresh_files: dict[str, Path] = {}
        self.basic_header = "Basic " + base64.b64encode(f"u:{PASSWORD}".encode()).decode()
        self.signup_body = _glue().SIGNUP_BODY

    def build(self) -> None:
        self.ws.mkdir(parents=True)
        self.glue.mkdir(parents=True)
        _write(self.ws, {"flowlet.yaml": "name: bench\n", **main_flows(self.cases)})
        (self.glue / "csrf.secret").write_text(secrets.token_urlsafe(32))
        if "basic" in self.cases:
            _cli("secrets", "set", "users", "-w", str(self.ws), "--type", "basic", "--user", "u",
                 "--password-stdin", input=PASSWORD)
            from argon2 import PasswordHasher
            (self.glue / "basic.hash").write_text(PasswordHasher().hash(PASSWORD))
        needed = jwt_keys_needed(self.cases)
        pems = _private_pems() if set(needed) - {"hs"} else {}
        for name in needed:
            if name == "hs":
                _cli("secrets", "set", "hs", "-w", str(self.ws), "--type", "jwt", "--hs-key-stdin", input=HS_KEY)
                (self.glue / "hs.key").write_bytes(HS_KEY.encode())
            else:
                pem = self.glue / f"{name}.pem"
                pem.write_bytes(pems[name])
                os.chmod(pem, 0o600)
                _cli("secrets", "set", name, "-w", str(self.ws), "--type", "jwt", "--private-key", str(pem))
                (self.glue / f"{name}.pub.pem").write_bytes(_public_pem(pems[name]))
            self.tokens[name] = _cli("token", "-w", str(self.ws), "--secret", name, "--scope", "read",
                                     "--sub", "bench", "--ttl", "86400").strip()
        if "ratelimit-redis" in self.cases:
            prefix = f"flowlet-bench:{secrets.token_hex(6)}:"       # this run's keys only
            _write(self.ws_redis, {"flowlet.yaml": f"name: bench\nrate_limits:\n  store: {REDIS_URL}\n"
                                                   f"  key_prefix: '{prefix}'\n",
                                   "flows/limited.yaml": LIMITED})
        for case in self.cases:
            if case.startswith("routes-"):
                n = int(case.split("-")[1])
                self._routes_ws(n)
        if "jwt-es256-fresh" in self.cases:
            pem = (self.glue / "es.pem").read_bytes()
            for label, count in (("warm", max(2000, self.fresh_tokens // 5)), ("main", self.fresh_tokens)):
                path = self.root / f"fresh-es-{label}.txt"
                path.write_text("\n".join(sign_tokens(pem, "ES256", count)) + "\n")
                self.fresh_files[label] = path

    def _routes_ws(self, n: int) -> Path:
        if n not in self.ws_routes:
            ws = self.root / f"ws-routes-{n}"
            ws.mkdir(parents=True)
            _write(ws, {"flowlet.yaml": "name: bench\n", **routes_flows(n)})
            self.ws_routes[n] = ws
        return self.ws_routes[n]


def sign_tokens(private_pem: bytes, alg: str, count: int) -> list[str]:
    """``count`` distinct valid tokens (scope read, a day's lifetime) signed with joserfc."""
    from joserfc import jwt
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    key_cls = {"ES256": ECKey, "RS256": RSAKey, "EdDSA": OKPKey}[alg]
    key = key_cls.import_key(private_pem)
    now = int(time.time())
    header = {"alg": alg, "typ": "JWT"}
    return [jwt.encode(header, {"sub": f"user{i}", "scope": "read", "iat": now, "exp": now + 86400,
                                "jti": f"{i}"}, key, algorithms=[alg]) for i in range(count)]


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
