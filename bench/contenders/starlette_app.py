"""Starlette with the usual middleware for the case in ``BENCH_CASE`` (see glue.py).

- CORS: ``starlette.middleware.cors.CORSMiddleware``;
- Basic: ``AuthenticationMiddleware`` with a backend that verifies the argon2id hash on every
  request (as in Starlette's documentation example; the hash check is synchronous);
- JWT: ``AuthenticationMiddleware`` with a bearer backend (PyJWT, or joserfc with
  ``BENCH_JWT_LIB=joserfc``) and ``@requires("read")`` for the scope;
- CSRF: ``starlette_csrf.CSRFMiddleware`` (signed double-submit cookie);
- ``routes-N``: N routes ``/api/items{i}/{id:int}``.
"""

from __future__ import annotations

import base64
import binascii

import glue
from starlette.applications import Starlette
from starlette.authentication import (AuthCredentials, AuthenticationBackend, AuthenticationError,
                                      SimpleUser, requires)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request: Request) -> JSONResponse:
    return JSONResponse(glue.HELLO)


def _on_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=401)


class BasicBackend(AuthenticationBackend):
    def __init__(self) -> None:
        from argon2 import PasswordHasher
        self.hasher = PasswordHasher()
        self.users = {"u": glue.basic_hash()}

    async def authenticate(self, conn):
        auth = conn.headers.get("authorization")
        if not auth:
            return None
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise AuthenticationError("invalid basic auth credentials")
        phc = self.users.get(user)
        try:
            self.hasher.verify(phc or self.users["u"], password)
        except Exception:
            raise AuthenticationError("invalid user name or password")
        if phc is None:
            raise AuthenticationError("invalid user name or password")
        return AuthCredentials(["authenticated"]), SimpleUser(user)


class BearerBackend(AuthenticationBackend):
    def __init__(self) -> None:
        self.verify = glue.jwt_verifier()

    async def authenticate(self, conn):
        auth = conn.headers.get("authorization")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            claims = self.verify(token)
        except Exception:
            raise AuthenticationError("invalid token")
        return AuthCredentials(["authenticated", *glue.scopes_of(claims)]), SimpleUser(claims.get("sub", ""))


def build() -> Starlette:
    case = glue.CASE
    middleware: list[Middleware] = []
    routes = [Route("/api/hello", hello)]
    if case in ("preflight", "cors"):
        from starlette.middleware.cors import CORSMiddleware
        middleware.append(Middleware(CORSMiddleware, **glue.CORS_KWARGS))
        routes.append(Route("/api/cors", hello))
    elif case == "basic":
        middleware.append(Middleware(AuthenticationMiddleware, backend=BasicBackend(), on_error=_on_error))

        @requires("authenticated", status_code=401)
        async def basic(request: Request) -> JSONResponse:
            return JSONResponse(glue.HELLO)
        routes.append(Route("/api/basic", basic))
    elif case in glue.JWT_CASES:
        path, _, _ = glue.jwt_settings()
        middleware.append(Middleware(AuthenticationMiddleware, backend=BearerBackend(), on_error=_on_error))

        @requires("read", status_code=403)
        async def protected(request: Request) -> JSONResponse:
            return JSONResponse(glue.HELLO)
        routes.append(Route(path, protected))
    elif case == "csrf":
        from starlette_csrf import CSRFMiddleware
        middleware.append(Middleware(CSRFMiddleware, secret=glue.csrf_secret(), cookie_secure=True,
                                     cookie_httponly=True, cookie_samesite="strict",
                                     header_name="x-csrf-token"))

        async def notes(request: Request) -> JSONResponse:
            body = await request.json() if await request.body() else None
            return JSONResponse({"saved": body}, status_code=201)
        routes.append(Route("/api/notes", notes, methods=["POST"]))
    elif case == "post":
        async def signup_raw(request: Request) -> JSONResponse:
            body = await request.json()
            return JSONResponse({"ok": True, "name": body["name"]})
        routes.append(Route("/api/signup-raw", signup_raw, methods=["POST"]))
    elif case == "validated":
        from pydantic import ValidationError
        signup_model = glue.signup_model()

        async def signup(request: Request) -> JSONResponse:
            try:
                body = signup_model.model_validate_json(await request.body())
            except ValidationError as exc:
                return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=422)
            return JSONResponse({"ok": True, "name": body.name})
        routes.append(Route("/api/signup", signup, methods=["POST"]))
    elif glue.routes_count():
        routes = [Route(f"/api/items{i}/{{id:int}}", hello) for i in range(glue.routes_count())]
    return Starlette(routes=routes, middleware=middleware)


app = build()
