"""FastAPI with the usual middleware and dependencies for the case in ``BENCH_CASE`` (glue.py).

- CORS: ``CORSMiddleware``;
- Basic: the ``HTTPBasic`` dependency and a (sync, so threadpool) dependency verifying the
  argon2id hash on every request;
- JWT: the ``HTTPBearer`` dependency and an async dependency decoding with PyJWT (or joserfc)
  and checking the scope, as in FastAPI's security tutorial;
- CSRF: ``starlette_csrf.CSRFMiddleware``; the body is a ``dict`` parameter;
- ``routes-N``: N routes ``/api/items{i}/{id}`` with ``id: int``;
- ``post``: a ``dict`` body; ``validated``: the pydantic model of the same ten-field body.
"""

from __future__ import annotations

import glue
from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/api/hello")
async def hello():
    return glue.HELLO


case = glue.CASE

if case in ("preflight", "cors"):
    from fastapi.middleware.cors import CORSMiddleware
    app.add_middleware(CORSMiddleware, **glue.CORS_KWARGS)

    @app.get("/api/cors")
    async def cors():
        return glue.HELLO

elif case == "basic":
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    users = {"u": glue.basic_hash()}
    basic_scheme = HTTPBasic(realm=glue.REALM)

    def basic_user(credentials: HTTPBasicCredentials = Depends(basic_scheme)) -> str:
        phc = users.get(credentials.username)
        try:
            hasher.verify(phc or users["u"], credentials.password)
            ok = phc is not None
        except Exception:
            ok = False
        if not ok:
            raise HTTPException(401, "invalid user name or password",
                                headers={"WWW-Authenticate": f'Basic realm="{glue.REALM}"'})
        return credentials.username

    @app.get("/api/basic")
    async def basic(user: str = Depends(basic_user)):
        return glue.HELLO

elif case in glue.JWT_CASES:
    path, _, _ = glue.jwt_settings()
    verify = glue.jwt_verifier()
    bearer = HTTPBearer()

    async def claims(credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> dict:
        try:
            data = verify(credentials.credentials)
        except Exception:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
        if "read" not in glue.scopes_of(data):
            raise HTTPException(403, "insufficient scope",
                                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
        return data

    @app.get(path)
    async def protected(user: dict = Depends(claims)):
        return glue.HELLO

elif case == "csrf":
    from starlette_csrf import CSRFMiddleware
    app.add_middleware(CSRFMiddleware, secret=glue.csrf_secret(), cookie_secure=True,
                       cookie_httponly=True, cookie_samesite="strict", header_name="x-csrf-token")

    @app.post("/api/notes", status_code=201)
    async def notes(body: dict = Body(...)):
        return {"saved": body}

elif case == "post":
    @app.post("/api/signup-raw")
    async def signup_raw(body: dict = Body(...)):
        return {"ok": True, "name": body["name"]}

elif case == "validated":
    Signup = glue.signup_model()

    @app.post("/api/signup")
    async def signup(body: Signup):
        return {"ok": True, "name": body.name}

elif glue.routes_count():
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/api/hello"]

    def _add(i: int) -> None:
        async def item(id: int):
            return glue.HELLO
        app.add_api_route(f"/api/items{i}/{{id}}", item, methods=["GET"])

    for i in range(glue.routes_count()):
        _add(i)
