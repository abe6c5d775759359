"""The compiled, immutable route: an endpoint's handler plus every policy the pipeline applies.

A new policy adds its compiled object as one field of ``Route`` (``None`` when the endpoint
does not use it), built in ``build_route``; the pipeline in ``flowlet.server.app`` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

from flowlet.flows.flow import Response
from flowlet.routing import PathPattern
from flowlet.workspace.endpoint import METHODS, EndpointConfig

if TYPE_CHECKING:
    from flowlet.contracts.contract import InputContract, OutputContract
    from flowlet.edge.ratelimit import EndpointLimit
    from flowlet.flows.steps import RunContext
    from flowlet.security.auth import AuthPolicy
    from flowlet.security.cors import PathCors
    from flowlet.security.csrf import CsrfPolicy
    from flowlet.security.scopes import ScopePolicy


class Handler(Protocol):
    """What answers a routed request: a compiled flow, or a built-in endpoint.

    ``fixed`` is the whole answer when it never changes; ``variables`` the base variables the
    handler reads (the server builds only those); ``steps`` is empty when nothing is awaited.
    """

    fixed: Response | None
    variables: frozenset[str]
    steps: Sequence[object]

    async def run(self, env: dict[str, object], ctx: RunContext) -> Response: ...


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint (method + path) with its handler and its compiled policies, built once."""

    config: EndpointConfig
    handler: Handler
    cors: PathCors | None = None          # the path's CORS answer when this method is in it
    auth: AuthPolicy | None = None
    scope_policy: ScopePolicy | None = None
    csrf: CsrfPolicy | None = None
    rate_limit: EndpointLimit | None = None
    reads_body: bool = True
    contract: InputContract | None = None  # validates and types the input (400 with problems)
    output: OutputContract | None = None   # the answers' schemas: literal bodies at load, all under --dev


@dataclass(frozen=True, slots=True)
class PathEntry:
    """Every route on one path; they share one CORS answer and one ``Allow`` list."""

    pattern: PathPattern
    full_path: str
    routes: Mapping[str, Route]
    cors: PathCors | None
    allow: bytes                          # the Allow header value


def allow_header(methods: Sequence[str]) -> bytes:
    """``GET, HEAD, ..., OPTIONS`` in a fixed order: HEAD follows GET, OPTIONS is always last."""
    ordered = [m for m in METHODS if m in methods]
    if "GET" in ordered:
        ordered.insert(1, "HEAD")
    ordered.append("OPTIONS")
    return ", ".join(ordered).encode()
