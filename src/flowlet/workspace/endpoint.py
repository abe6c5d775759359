"""A flow file's ``endpoint`` block as a typed, frozen config: what the file asks for, not yet compiled.

Each policy has its config model here (parsed and validated by its own module); the compiled
policies live on ``flowlet.workspace.routes.Route``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowlet.contracts.contract import InputConfig, OutputConfig, parse_input, parse_output
from flowlet.edge.ratelimit import EndpointRateLimit, parse_endpoint_rate_limit
from flowlet.routing import PathPattern, parse_path
from flowlet.security.auth import AuthConfig, parse_auth
from flowlet.security.cors import CorsConfig, parse_cors
from flowlet.source import YMap, check_keys, expect_map, get_bool, get_str

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ENDPOINT_KEYS = ("method", "path", "auth", "cors", "csrf", "description", "rate_limit", "input", "output")


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One endpoint as written: method, path, and the config model of each of its policies."""

    method: str
    pattern: PathPattern
    file: str
    line: int
    auth: AuthConfig | None = None
    cors: CorsConfig | None = None
    csrf: bool = False
    description: str | None = None
    rate_limit: EndpointRateLimit | None = None
    input: InputConfig | None = None        # JSON Schemas of body, query, params, headers
    output: OutputConfig | None = None      # JSON Schema of the answer, per status


def parse_endpoint(doc: YMap, file: str) -> EndpointConfig:
    """The ``endpoint`` block of a flow file; errors name FILE:LINE."""
    check_keys(doc, ("endpoint", "steps", "respond", "description"), "a flow file")
    if "endpoint" not in doc:
        raise doc.error("a flow file needs an 'endpoint' block (method, path, and its security settings)")
    ep = expect_map(doc["endpoint"], doc, "endpoint", "'endpoint'")
    check_keys(ep, ENDPOINT_KEYS, "endpoint")
    method = get_str(ep, "method").upper()
    if method not in METHODS:
        raise ep.error(f"method must be one of {', '.join(METHODS)} (HEAD and OPTIONS are answered "
                       f"automatically); got {method!r}", "method")
    return EndpointConfig(
        method=method,
        pattern=parse_path(get_str(ep, "path"), ep.where("path")),
        file=file,
        line=ep.line,
        auth=parse_auth(expect_map(ep["auth"], ep, "auth", "'auth'")) if ep.get("auth") is not None else None,
        cors=parse_cors(expect_map(ep["cors"], ep, "cors", "'cors'")) if ep.get("cors") is not None else None,
        csrf=get_bool(ep, "csrf", False),
        description=get_str(ep, "description", None) or get_str(doc, "description", None),
        rate_limit=parse_endpoint_rate_limit(ep["rate_limit"], ep) if ep.get("rate_limit") is not None else None,
        input=parse_input(expect_map(ep["input"], ep, "input", "'input'")) if ep.get("input") is not None else None,
        output=(parse_output(expect_map(ep["output"], ep, "output", "'output'"))
                if ep.get("output") is not None else None),
    )
