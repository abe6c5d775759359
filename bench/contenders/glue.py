"""What the Starlette and FastAPI contenders share: the case's settings and key material.

The harness starts a contender with these environment variables:

- ``BENCH_CASE``: which middleware stack to build (``open``, ``preflight``, ``cors``, ``basic``,
  ``jwt-hs256``, ``jwt-rs256``, ``jwt-es256``, ``jwt-eddsa``, ``jwt-es256-fresh``, ``csrf``,
  ``routes-1``, ``routes-1000``, ``post``, ``validated``);
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

# The `post` and `validated` cases: a sign-up body of ten fields. `validated` checks it against
# SIGNUP_SCHEMA (Flowlet: `input.body`; FastAPI and Starlette: the equivalent pydantic model).
SIGNUP_BODY = {"name": "Ada Lovelace", "email": "ada@example.com", "age": 36, "country": "GB", "plan": "pro",
               "seats": 3, "newsletter": True, "score": 9.5, "tags": ["math", "engines"],
               "address": {"city": "London", "zip": "W1"}}
SIGNUP_SCHEMA = {
    "type": "object",
    "required": ["name", "email", "age", "country", "plan"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "email": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "country": {"enum": ["DE", "FR", "US", "GB", "JP"]},
        "plan": {"enum": ["free", "pro", "team"]},
        "seats": {"type": "integer", "minimum": 1, "default": 1},
        "newsletter": {"type": "boolean"},
        "score": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "address": {"type": "object", "additionalProperties": False, "required": ["city"],
                    "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
    },
}


def signup_model():
    """SIGNUP_SCHEMA as a pydantic model (strict: no "36" for 36, as in JSON Schema)."""
    from typing import Annotated, Literal

    from pydantic import BaseModel, ConfigDict, Field

    class Address(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        city: str
        zip: str | None = None

    class Signup(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        name: Annotated[str, Field(min_length=1, max_length=100)]
        email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
        age: Annotated[int, Field(ge=0, le=150)]
        country: Literal["DE", "FR", "US", "GB", "JP"]
        plan: Literal["free", "pro", "team"]
        seats: Annotated[int, Field(ge=1)] = 1
        newsletter: bool | None = None
        score: Annotated[float, Field(ge=0)] | None = None
        tags: Annotated[list[str], Field(max_length=10)] | None = None
        address: Address | None = None

    return Signup

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
