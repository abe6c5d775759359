"""What the Starlette and FastAPI contenders share: the case's settings and key material.

The harness starts a contender with these environment variables:

- ``BENCH_CASE``: which middleware stack to build (``open``, ``preflight``, ``cors``, ``basic``,
  ``jwt-hs256``, ``jwt-rs256``, ``jwt-es256``, ``jwt-eddsa``, ``jwt-es256-fresh``, ``csrf``,
  ``routes-1``, ``routes-1000``);
- ``BENCH_MATERIAL``: a folder with the key material the harness made for Flowlet too
  (``hs.key``, ``rs.pub.pem``, ``es.pub.pem``, ``ed.pub.pem``, ``basic.hash``, ``csrf.secret``);
- ``BENCH_JWT_LIB``: ``pyjwt`` (default) or ``joserfc``.

Every contender answers the same paths with the same JSON bodies as the bench workspace, so
the only difference between contenders is how the security work is done.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CASE = os.environ.get("BENCH_CASE", "open")
MATERIAL = Path(os.environ.get("BENCH_MATERIAL", "."))
JWT_LIB = os.environ.get("BENCH_JWT_LIB", "pyjwt")

HELLO = {"message": "Hello from Flowlet"}
REALM = "bench"

# The bench workspace's CORS flow allows "*.example.com" (https), Content-Type, credentials,
# max_age 300: the same policy as a regular expression for CORSMiddleware.
CORS_KWARGS = dict(
    allow_origin_regex=r"https://([a-z0-9-]+\.)+example\.com",
    allow_methods=["GET"],
    allow_headers=["Content-Type"],
    allow_credentials=True,
    max_age=300,
)

JWT_CASES = {
    "jwt-hs256": ("hs", "HS256"),
    "jwt-rs256": ("rs", "RS256"),
    "jwt-es256": ("es", "ES256"),
    "jwt-eddsa": ("ed", "EdDSA"),
    "jwt-es256-fresh": ("es", "ES256"),
}


def routes_count() -> int:
    m = re.fullmatch(r"routes-(\d+)", CASE)
    return int(m.group(1)) if m else 0


def jwt_settings() -> tuple[str, str, str]:
    """(URL path, algorithm, key name) of this case's JWT endpoint."""
    name, alg = JWT_CASES[CASE]
    return f"/api/jwt/{name}", alg, name


def jwt_verifier():
    """A function token -> claims that raises on any invalid token (the usual glue: the key is
    loaded once, the algorithm pinned, ``exp`` required, every request verified)."""
    _, alg, name = jwt_settings()
    if name == "hs":
        material = (MATERIAL / "hs.key").read_bytes()
    else:
        material = (MATERIAL / f"{name}.pub.pem").read_bytes()
    if JWT_LIB == "joserfc":
        from joserfc import jwt as jose_jwt
        from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

        key = {"hs": OctKey, "rs": RSAKey, "es": ECKey, "ed": OKPKey}[name].import_key(material)
        registry = jose_jwt.JWTClaimsRegistry(exp={"essential": True}, leeway=60)

        def verify(token: str) -> dict:
            tok = jose_jwt.decode(token, key, algorithms=[alg])
            registry.validate(tok.claims)
            return tok.claims
        return verify

    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization

    key = material if name == "hs" else serialization.load_pem_public_key(material)

    def verify(token: str) -> dict:
        return pyjwt.decode(token, key, algorithms=[alg], options={"require": ["exp"]}, leeway=60)
    return verify


def scopes_of(claims: dict) -> list[str]:
    scope = claims.get("scope", "")
    return scope.split() if isinstance(scope, str) else list(scope)


def basic_hash() -> str:
    return (MATERIAL / "basic.hash").read_text().strip()


def csrf_secret() -> str:
    return (MATERIAL / "csrf.secret").read_text().strip()
