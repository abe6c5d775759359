"""Read a workspace folder and compile it: settings, flows, per-route policies, the route table.

Everything here runs once, at load, in named phases: parse the flow files, resolve secrets,
compile each flow and its authentication, merge per path (conflicts, one CORS answer), then
build the immutable routes and the route table. Errors are collected across files and
reported as ``FILE:LINE: error: ...``; nothing on the request path re-reads config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from flowlet.contracts.contract import InputContract, OutputContract, compile_input, compile_output
from flowlet.contracts.schemas import SchemaFiles
from flowlet.edge.authlimit import AuthThrottle
from flowlet.edge.ratelimit import EndpointLimit, Limiter, compile_endpoint_limit
from flowlet.errors import ConfigError, ConfigErrors
from flowlet.expr import compile_expr
from flowlet.flows.flow import Flow, compile_flow
from flowlet.routing import PathPattern, RouteTable, parse_path
from flowlet.security.auth import compile_auth
from flowlet.security.cors import FlowCorsInput, PathCors, csrf_endpoint_cors, merge_path
from flowlet.security.csrf import CsrfKeys, CsrfPolicy
from flowlet.security.runtime import AuthRuntime
from flowlet.source import YMap, load_yaml
from flowlet.workspace.builtin import CsrfTokenHandler, OpenApiHandler
from flowlet.workspace.endpoint import METHODS, EndpointConfig, parse_endpoint
from flowlet.workspace.routes import PathEntry, Route, allow_header
from flowlet.workspace.settings import DevSecret, Settings, load_settings

if TYPE_CHECKING:
    from flowlet.secrets.model import Secret
    from flowlet.secrets.store import Store
    from flowlet.secrets.view import SecretsView
    from flowlet.security.auth import AuthPolicy
    from flowlet.security.scopes import ScopePolicy

__all__ = ["METHODS", "EndpointConfig", "PathEntry", "Route", "Workspace", "load_workspace"]

CSRF_PATTERN = PathPattern("/csrf", "/csrf", (("static", "csrf"),))


@dataclass
class Workspace:
    root: Path
    settings: Settings
    routes: list[Route]                   # the workspace's own endpoints, built-ins excluded
    paths: list[PathEntry]
    table: RouteTable[PathEntry]
    warnings: list[ConfigError]
    store: Store | None = None
    secrets: SecretsView | None = None
    csrf_keys: CsrfKeys | None = None
    csrf_entry: PathEntry | None = None
    auth_runtime: AuthRuntime = field(default_factory=AuthRuntime)
    limiter: Limiter | None = None        # rate-limit counters (this worker's view)
    schema_files: SchemaFiles | None = None    # every schema file read, for `flowlet openapi`
    openapi_entry: PathEntry | None = None

    def close(self) -> None:
        self.auth_runtime.close()
        if self.limiter is not None:
            self.limiter.close()
        if self.store is not None:
            self.store.close()


def load_workspace(root: str | Path, *, display_root: str | None = None, open_secrets: bool = True,
                   serving: bool = False) -> Workspace:
    """Load and compile; raises ConfigErrors listing every problem found.

    ``display_root`` is how file names are shown (``flows/x.yaml`` relative to it). When not
    ``serving`` (check, routes), declared development secrets that `serve` would create are
    stood in for, so a fresh checkout of a workspace can be checked before its first start.
    """
    root = Path(root)

    def rel(p: Path) -> str:
        r = p.relative_to(root).as_posix()
        return f"{display_root.rstrip('/')}/{r}" if display_root else r

    try:
        settings = load_settings(root, rel(root / "flowlet.yaml"))
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    errors: list[ConfigError] = []
    parsed = _parse_flows(root, rel, errors)
    secrets = _resolve_secrets(root, settings, rel(root / "flowlet.yaml"), errors, serving=serving,
                               wanted=open_secrets and bool(parsed or settings.dev_secrets))
    limiter = Limiter(settings.rate_limits)
    throttle = AuthThrottle(limiter)
    auth_runtime = AuthRuntime(throttle=throttle if throttle.enabled else None)
    try:
        schema_files = SchemaFiles(root, lambda r: rel(root / r))
        endpoints = _compile_endpoints(parsed, settings, root, secrets.lookup, auth_runtime, errors, limiter,
                                       schema_files)
        errors.extend(schema_files.check_unused())
        groups = _group_by_path(endpoints, settings.api_prefix, errors, settings.openapi_path)
        warnings = list(secrets.warnings)
        path_cors = _merge_cors(groups, settings.csrf.header, errors, warnings)
        if errors:
            raise ConfigErrors(errors)
        return _build(root, settings, groups, path_cors, secrets, warnings, auth_runtime, limiter, schema_files)
    except BaseException:
        auth_runtime.close()
        limiter.close()
        secrets.close()
        raise


# ---- phase 1: parse ----------------------------------------------------------------------

def _parse_flows(root: Path, rel: Callable[[Path], str], errors: list[ConfigError]
                 ) -> list[tuple[YMap, EndpointConfig]]:
    """Every flow file under ``flows/`` as (its document, its endpoint config)."""
    flows_dir = root / "flows"
    files = sorted(flows_dir.rglob("*.yaml")) + sorted(flows_dir.rglob("*.yml")) if flows_dir.is_dir() else []
    parsed: list[tuple[YMap, EndpointConfig]] = []
    for path in files:
        name = rel(path)
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"), name)
            if doc is None:
                raise ConfigError("empty flow file", name, 1)
            if not isinstance(doc, YMap):
                raise ConfigError("a flow file must be a mapping with 'endpoint', 'steps' and 'respond'", name, 1)
            parsed.append((doc, parse_endpoint(doc, name)))
        except ConfigError as exc:
            errors.append(exc.located(name, 1))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ConfigError(f"cannot read flow file: {exc}", name, 1))
    return parsed


# ---- phase 2: resolve secrets ------------------------------------------------------------

@dataclass
class _Secrets:
    """The opened store, its view, and what compilation looks secrets up in."""

    store: Store | None = None
    view: SecretsView | None = None
    lookup: SecretsView | _DevPlaceholders | None = None
    warnings: list[ConfigError] = field(default_factory=list)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _resolve_secrets(root: Path, settings: Settings, settings_file: str, errors: list[ConfigError], *,
                     wanted: bool, serving: bool) -> _Secrets:
    """Secrets are needed when a flow names one (auth, secret()) and when serving (CSRF key)."""
    if not wanted:
        return _Secrets()
    from flowlet.secrets.open import StoreError, open_store
    from flowlet.secrets.view import SecretsView
    try:
        store = open_store(root, settings.store)
        view = SecretsView(store)
        view.refresh()
    except StoreError as exc:
        raise ConfigErrors(errors + [ConfigError(str(exc), settings_file, 1)]) from None
    pending = [d for d in settings.dev_secrets if view.get(d.name) is None]
    if not pending or serving:
        return _Secrets(store, view, view)
    warnings = [ConfigError(f"development secret {d.name!r} does not exist yet; `flowlet serve` creates it",
                            settings_file, 1, severity="warning") for d in pending]
    return _Secrets(store, view, _DevPlaceholders(view, pending), warnings)


class _DevPlaceholders:
    """Secret lookups that also answer for declared, not yet created development secrets."""

    def __init__(self, view: SecretsView, pending: list[DevSecret]):
        from flowlet.secrets.model import BasicSecret, JwtSecret
        self.view = view
        self.placeholders: dict[str, Secret] = {
            d.name: (BasicSecret(d.name, {}) if d.type == "basic"
                     else JwtSecret(d.name, hs_key=bytes(32), algorithms=("HS256",)))
            for d in pending}

    def get(self, name: str) -> Secret | None:
        return self.view.get(name) or self.placeholders.get(name)

    def get_key(self, name: str) -> bytes | None:
        return self.view.get_key(name)


# ---- phase 3: compile each flow and its authentication -----------------------------------

@dataclass(frozen=True, slots=True)
class _Endpoint:
    config: EndpointConfig
    flow: Flow
    auth: AuthPolicy | None
    scope_policy: ScopePolicy | None
    rate_limit: EndpointLimit | None = None
    contract: InputContract | None = None
    output: OutputContract | None = None


def _compile_endpoints(parsed: list[tuple[YMap, EndpointConfig]], settings: Settings, root: Path,
                       secrets: SecretsView | _DevPlaceholders | None, auth_runtime: AuthRuntime,
                       errors: list[ConfigError], limiter: Limiter, schema_files: SchemaFiles) -> list[_Endpoint]:
    out: list[_Endpoint] = []
    for doc, cfg in parsed:
        try:
            output = compile_output(cfg.output, schema_files) if cfg.output is not None else None
            flow = compile_flow(doc, root=root, secrets=secrets, output=output,
                                concurrency=settings.concurrency)
            contract = None
            if cfg.input is not None:
                path_params = {name: kind for kind, name in cfg.pattern.segments if kind != "static"}
                contract = compile_input(cfg.input, schema_files, path_params)
            auth = scope_policy = None
            if cfg.auth is not None:
                if secrets is None:
                    raise ConfigError("authentication needs the secrets store", cfg.file, cfg.line)
                auth, scope_policy = compile_auth(
                    cfg.auth, realm=settings.name, secrets=secrets, runtime=auth_runtime,
                    compile_expr=lambda src, where: compile_expr(src, where, allow_secret=False))
            rate_limit = None
            if cfg.rate_limit is not None:
                rate_limit = compile_endpoint_limit(
                    cfg.rate_limit, route_id=f"{cfg.method} {cfg.pattern.text}", limiter=limiter,
                    uses_auth=auth is not None,
                    compile_expr=lambda src, where: compile_expr(src, where, allow_secret=False))
            out.append(_Endpoint(cfg, flow, auth, scope_policy, rate_limit, contract, output))
        except ConfigError as exc:
            errors.append(exc.located(cfg.file, doc.line))
    return out


# ---- phase 4: merge per path -------------------------------------------------------------

@dataclass
class _PathGroup:
    pattern: PathPattern
    full_path: str
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)


def _group_by_path(endpoints: list[_Endpoint], api_prefix: str, errors: list[ConfigError],
                   openapi_path: str | None = None) -> list[_PathGroup]:
    """One group per path shape; conflicting and duplicate endpoints are errors."""
    groups: dict[str, _PathGroup] = {}
    for ep in endpoints:
        cfg = ep.config
        full = api_prefix + cfg.pattern.text
        if cfg.pattern.text == CSRF_PATTERN.text:
            errors.append(ConfigError(f"{api_prefix}/csrf is the built-in CSRF token endpoint; choose another "
                                      f"path", cfg.file, cfg.line))
            continue
        if cfg.pattern.text == openapi_path:
            errors.append(ConfigError(f"{full} serves the OpenAPI document (openapi.path in flowlet.yaml); "
                                      f"choose another path", cfg.file, cfg.line))
            continue
        group = groups.get(cfg.pattern.shape)
        if group is None:
            group = groups[cfg.pattern.shape] = _PathGroup(cfg.pattern, full)
        elif group.pattern.text != cfg.pattern.text:
            other = next(iter(group.endpoints.values())).config
            errors.append(ConfigError(
                f"{cfg.method} {full} and {other.method} {group.full_path} ({other.file}) differ only in "
                f"parameter names; use the same names on one path", cfg.file, cfg.line))
            continue
        if cfg.method in group.endpoints:
            other = group.endpoints[cfg.method].config
            errors.append(ConfigError(f"duplicate endpoint {cfg.method} {full}: also in "
                                      f"{other.file}:{other.line}", cfg.file, cfg.line))
            continue
        group.endpoints[cfg.method] = ep
    return list(groups.values())


def _merge_cors(groups: list[_PathGroup], csrf_header: str, errors: list[ConfigError],
                warnings: list[ConfigError]) -> list[PathCors | None]:
    """The one CORS answer of each path (least strict of its flows), in the order of ``groups``."""
    answers: list[PathCors | None] = []
    for group in groups:
        inputs = [FlowCorsInput(ep.config.method, ep.config.cors, ep.auth is not None, ep.config.csrf,
                                (ep.config.file, ep.config.line)) for ep in group.endpoints.values()]
        try:
            answer, found = merge_path(group.full_path, inputs, csrf_header)
        except ConfigError as exc:
            errors.append(exc)
            answer, found = None, []
        warnings.extend(w.as_warning() for w in found)
        answers.append(answer)
    return answers


# ---- phase 5: build the immutable routes and the table -----------------------------------

def _build(root: Path, settings: Settings, groups: list[_PathGroup], path_cors: list[PathCors | None],
           secrets: _Secrets, warnings: list[ConfigError], auth_runtime: AuthRuntime,
           limiter: Limiter, schema_files: SchemaFiles) -> Workspace:
    csrf_keys = None
    if secrets.view is not None:
        csrf_keys = CsrfKeys(secrets.view, secrets.store)
    table: RouteTable[PathEntry] = RouteTable(settings.api_prefix)
    paths = [_path_entry(g, cors, settings, csrf_keys) for g, cors in zip(groups, path_cors)]
    for entry in paths:
        table.add(entry.pattern, entry)
    csrf_entry = None
    if csrf_keys is not None:
        csrf_entry = _csrf_entry(settings, csrf_keys, paths)
        table.add(csrf_entry.pattern, csrf_entry)
    routes = [r for e in paths for r in e.routes.values()]
    openapi_entry = None
    if settings.openapi_path is not None:
        openapi_entry = _openapi_entry(settings, routes, schema_files)
        table.add(openapi_entry.pattern, openapi_entry)
    return Workspace(root=root, settings=settings, routes=routes,
                     paths=paths, table=table, warnings=warnings, store=secrets.store, secrets=secrets.view,
                     csrf_keys=csrf_keys, csrf_entry=csrf_entry, auth_runtime=auth_runtime, limiter=limiter,
                     schema_files=schema_files, openapi_entry=openapi_entry)


def _path_entry(group: _PathGroup, cors: PathCors | None, settings: Settings,
                csrf_keys: CsrfKeys | None) -> PathEntry:
    routes = {method: _compile_route(ep, cors, settings, csrf_keys) for method, ep in group.endpoints.items()}
    return PathEntry(group.pattern, group.full_path, routes, cors, allow_header(list(routes)))


def _compile_route(ep: _Endpoint, path_cors: PathCors | None, settings: Settings,
                   csrf_keys: CsrfKeys | None) -> Route:
    """The endpoint's immutable route: its handler and every compiled policy (``None`` when unused)."""
    in_cors = path_cors is not None and ep.config.method in path_cors.methods
    csrf = CsrfPolicy(settings.csrf, csrf_keys, path_cors) if ep.config.csrf and csrf_keys is not None else None
    # A body sent with GET, HEAD or DELETE has no meaning (RFC 9110 9.3): unless the endpoint reads
    # it (its flow or its input schema), it is left unread, and the request costs no lookups of
    # Content-Length and Transfer-Encoding. Other methods always read it: a malformed one is a 400.
    reads_body = ep.config.method not in _BODILESS or "body" in ep.flow.variables \
        or (ep.contract is not None and ep.contract.body is not None)
    return Route(ep.config, ep.flow, cors=path_cors if in_cors else None, auth=ep.auth,
                 scope_policy=ep.scope_policy, csrf=csrf, rate_limit=ep.rate_limit, reads_body=reads_body,
                 contract=ep.contract, output=ep.output)


_BODILESS = frozenset({"GET", "HEAD", "DELETE"})


def _csrf_entry(settings: Settings, keys: CsrfKeys, paths: list[PathEntry]) -> PathEntry:
    """The built-in token endpoint, a route like any other whose handler issues the token."""
    protected = [e.cors for e in paths if e.cors is not None and any(r.config.csrf for r in e.routes.values())]
    cors = csrf_endpoint_cors(protected)
    config = EndpointConfig("GET", CSRF_PATTERN, file="(built-in)", line=0,
                            description="CSRF token (double submit cookie)")
    handler = CsrfTokenHandler(settings.csrf, keys, api_prefix=settings.api_prefix, domain=settings.domain)
    route = Route(config, handler, cors=cors, reads_body=False)
    return PathEntry(CSRF_PATTERN, f"{settings.api_prefix}/csrf", {"GET": route}, cors, allow_header(["GET"]))


def _openapi_entry(settings: Settings, routes: list[Route], schema_files: SchemaFiles) -> PathEntry:
    """The built-in OpenAPI document (``openapi: {path: ...}``), encoded once."""
    import json

    from flowlet.workspace.apidoc import build_openapi
    pattern = parse_path(settings.openapi_path, ("flowlet.yaml", 1))
    document = json.dumps(build_openapi(settings, routes, schema_files), separators=(",", ":"),
                          ensure_ascii=False).encode()
    config = EndpointConfig("GET", pattern, file="(built-in)", line=0, description="OpenAPI document")
    route = Route(config, OpenApiHandler(document), reads_body=False)
    return PathEntry(pattern, settings.api_prefix + pattern.text, {"GET": route}, None, allow_header(["GET"]))
