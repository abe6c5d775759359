"""Built-in endpoints, compiled into handlers with the same interface as a flow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowlet.flows.flow import JSON_CT, Response
from flowlet.security.csrf import CsrfKeys, CsrfSettings, issue_token

if TYPE_CHECKING:
    from flowlet.flows.steps import RunContext

_NO_STORE = (b"cache-control", b"no-store")


class OpenApiHandler:
    """``GET <api_prefix><openapi.path>``: the workspace's OpenAPI document, encoded at load."""

    __slots__ = ("fixed",)
    variables: frozenset[str] = frozenset()
    steps: tuple[()] = ()

    def __init__(self, document: bytes):
        self.fixed: Response | None = Response(200, [JSON_CT], document)

    async def run(self, env: dict[str, object], ctx: RunContext) -> Response:
        assert self.fixed is not None
        return self.fixed


class CsrfTokenHandler:
    """``GET <api_prefix>/csrf``: a fresh token in the body, its keyed hash in the cookie."""

    __slots__ = ("settings", "keys", "api_prefix", "domain")
    fixed: Response | None = None
    variables: frozenset[str] = frozenset()
    steps: tuple[()] = ()

    def __init__(self, settings: CsrfSettings, keys: CsrfKeys, *, api_prefix: str, domain: str | None):
        self.settings = settings
        self.keys = keys
        self.api_prefix = api_prefix or "/"
        self.domain = domain

    async def run(self, env: dict[str, object], ctx: RunContext) -> Response:
        body, cookie = issue_token(self.settings, self.keys, api_prefix=self.api_prefix, domain=self.domain)
        return Response(200, [JSON_CT, _NO_STORE, (b"set-cookie", cookie)], body)
