"""Read a workspace folder and compile it: settings, flows, per-route policies, the route table.

Everything here runs once, at load. Errors are collected across files and reported as
``FILE:LINE: error: ...``; nothing on the request path re-reads or re-validates config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowlet.errors import ConfigError, ConfigErrors
from flowlet.expr import compile_expr
from flowlet.flows.flow import Flow, compile_flow
from flowlet.routing import PathPattern, RouteTable, parse_path
from flowlet.workspace.settings import Settings, load_settings
from flowlet.source import YMap, check_keys, expect_map, get_bool, get_str, load_yaml

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class Route:
    """One endpoint (method + path) with its compiled policies and flow."""

    method: str
    pattern: PathPattern
    file: str
    line: int
    flow: Flow
    auth_config: Any = None        # AuthConfig, for `routes`
    auth: Any = None               # AuthPolicy | None
    scope: Any = None              # ScopePolicy | None
    csrf: Any = None               # CsrfPolicy | None
    csrf_required: bool = False
    cors_config: Any = None        # CorsConfig | None
    cors: Any = None               # PathCors when this method is in the path's CORS answer, else None
    description: str | None = None
    path_entry: Any = None         # the PathEntry this route belongs to


@dataclass
class PathEntry:
    """Every flow on one path; they share one CORS answer and one `Allow` list."""

    pattern: PathPattern
    full_path: str
    routes: dict[str, Route] = field(default_factory=dict)
    cors: Any = None               # PathCors | None
    allow: bytes = b""             # the Allow header value
    builtin: Any = None            # for built-in endpoints (CSRF token)

    def finish(self) -> None:
        methods = [m for m in METHODS if m in self.routes]
        if "GET" in methods:
            methods.insert(1, "HEAD")
        methods.append("OPTIONS")
        self.allow = ", ".join(methods).encode()


@dataclass
class Workspace:
    root: Path
    settings: Settings
    routes: list[Route]
    paths: list[PathEntry]
    table: RouteTable
    warnings: list[ConfigError]
    store: Any = None              # flowlet.secrets Store, when opened
    secrets: Any = None            # SecretsView
    csrf_keys: Any = None
    csrf_entry: PathEntry | None = None

    def close(self) -> None:
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
    errors: list[ConfigError] = []

    def rel(p: Path) -> str:
        r = p.relative_to(root).as_posix()
        return f"{display_root.rstrip('/')}/{r}" if display_root else r

    try:
        settings = load_settings(root, rel(root / "flowlet.yaml"))
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None

    # 1. Parse every flow file into its config models.
    flows_dir = root / "flows"
    files = sorted(flows_dir.rglob("*.yaml")) + sorted(flows_dir.rglob("*.yml")) if flows_dir.is_dir() else []
    parsed: list[tuple[str, YMap, dict]] = []
    for path in files:
        name = rel(path)
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"), name)
            if doc is None:
                raise ConfigError("empty flow file", name, 1)
            if not isinstance(doc, YMap):
                raise ConfigError("a flow file must be a mapping with 'endpoint', 'steps' and 'respond'", name, 1)
            parsed.append((name, doc, _parse_endpoint(doc)))
        except ConfigError as exc:
            errors.append(exc.located(name, 1))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ConfigError(f"cannot read flow file: {exc}", name, 1))

    # 2. Secrets are needed when a flow names one (auth, secret()) and when serving (CSRF key).
    store = secrets = None
    if open_secrets and (parsed or settings.dev_secrets):
        from flowlet.secrets.open import StoreError, open_store
        from flowlet.secrets.view import SecretsView
        try:
            store = open_store(root, settings.store)
            secrets = SecretsView(store)
            secrets.refresh()
        except StoreError as exc:
            raise ConfigErrors(errors + [ConfigError(str(exc), rel(root / "flowlet.yaml"), 1)]) from None
        pending = [d for d in settings.dev_secrets if secrets.get(d.name) is None]
        if pending and not serving:
            secrets = _DevPlaceholders(secrets, pending)

    # 3. Compile flows and policies.
    routes: list[Route] = []
    for name, doc, ep in parsed:
        try:
            routes.append(_compile_route(name, doc, ep, settings, root, secrets))
        except ConfigError as exc:
            errors.append(exc.located(name, doc.line))

    # 4. Group by path, check conflicts, merge CORS per path.
    table = RouteTable(settings.api_prefix)
    entries: dict[str, PathEntry] = {}
    csrf_path = f"{settings.api_prefix}/csrf"
    for route in routes:
        full = settings.api_prefix + (route.pattern.text if route.pattern.text != "/" else "/")
        if route.pattern.text == "/csrf":
            errors.append(ConfigError(f"{csrf_path} is the built-in CSRF token endpoint; choose another path",
                                      route.file, route.line))
            continue
        entry = entries.get(route.pattern.shape)
        if entry is None:
            entry = entries[route.pattern.shape] = PathEntry(route.pattern, full)
        elif entry.pattern.text != route.pattern.text:
            other = next(iter(entry.routes.values()))
            errors.append(ConfigError(
                f"{route.method} {full} and {other.method} {entry.full_path} ({other.file}) differ only in "
                f"parameter names; use the same names on one path", route.file, route.line))
            continue
        if route.method in entry.routes:
            other = entry.routes[route.method]
            errors.append(ConfigError(f"duplicate endpoint {route.method} {full}: also in "
                                      f"{other.file}:{other.line}", route.file, route.line))
            continue
        entry.routes[route.method] = route
        route.path_entry = entry

    warnings: list[ConfigError] = []
    if isinstance(secrets, _DevPlaceholders):
        for d in secrets.pending:
            warnings.append(ConfigError(f"development secret {d.name!r} does not exist yet; "
                                        f"`flowlet serve` creates it", rel(root / "flowlet.yaml"), 1))
    from flowlet.security.cors import FlowCorsInput, csrf_endpoint_cors, merge_path
    for entry in entries.values():
        inputs = [FlowCorsInput(r.method, r.cors_config, r.auth is not None, r.csrf_required, (r.file, r.line))
                  for r in entry.routes.values()]
        try:
            entry.cors, found = merge_path(entry.full_path, inputs, settings.csrf.header)
            warnings.extend(found)
        except ConfigError as exc:
            errors.append(exc)
            continue
        for r in entry.routes.values():
            r.cors = entry.cors if entry.cors is not None and r.method in entry.cors.methods else None
        entry.finish()
        table.add(entry.pattern, entry)

    if errors:
        if store is not None:
            store.close()
        raise ConfigErrors(errors)

    # 5. CSRF: policies per protected route, and the built-in token endpoint.
    csrf_keys = None
    csrf_entry = None
    if secrets is not None:
        from flowlet.security.csrf import CsrfKeys, CsrfPolicy
        csrf_keys = CsrfKeys(secrets, store)
        for route in routes:
            if route.csrf_required:
                route.csrf = CsrfPolicy(settings.csrf, csrf_keys, route.path_entry.cors)
        protected = [e.cors for e in entries.values()
                     if e.cors is not None and any(r.csrf_required for r in e.routes.values())]
        csrf_entry = PathEntry(PathPattern("/csrf", "/csrf", (("static", "csrf"),)), csrf_path)
        csrf_entry.cors = csrf_endpoint_cors(protected)
        csrf_entry.builtin = "csrf"
        csrf_entry.allow = b"GET, HEAD, OPTIONS"
        table.static[csrf_path] = csrf_entry

    return Workspace(root=root, settings=settings, routes=routes, paths=list(entries.values()), table=table,
                     warnings=warnings, store=store, secrets=secrets, csrf_keys=csrf_keys, csrf_entry=csrf_entry)


def _parse_endpoint(doc: YMap) -> dict:
    check_keys(doc, ("endpoint", "steps", "respond", "description"), "a flow file")
    if "endpoint" not in doc:
        raise doc.error("a flow file needs an 'endpoint' block (method, path, and its security settings)")
    ep = expect_map(doc["endpoint"], doc, "endpoint", "'endpoint'")
    check_keys(ep, ("method", "path", "auth", "cors", "csrf", "description"), "endpoint")
    method = get_str(ep, "method").upper()
    if method not in METHODS:
        raise ep.error(f"method must be one of {', '.join(METHODS)} (HEAD and OPTIONS are answered "
                       f"automatically); got {method!r}", "method")
    pattern = parse_path(get_str(ep, "path"), ep.where("path"))
    out: dict[str, Any] = {"method": method, "pattern": pattern, "block": ep,
                           "csrf": get_bool(ep, "csrf", False),
                           "description": get_str(ep, "description", None) or get_str(doc, "description", None)}
    out["auth"] = out["cors"] = None
    if ep.get("auth") is not None:
        from flowlet.security.auth import parse_auth
        out["auth"] = parse_auth(expect_map(ep["auth"], ep, "auth", "'auth'"))
    if ep.get("cors") is not None:
        from flowlet.security.cors import parse_cors
        out["cors"] = parse_cors(expect_map(ep["cors"], ep, "cors", "'cors'"))
    return out


def _compile_route(name: str, doc: YMap, ep: dict, settings: Settings, root: Path, secrets: Any) -> Route:
    flow = compile_flow(doc, root=root, secrets=secrets)
    route = Route(method=ep["method"], pattern=ep["pattern"], file=name, line=ep["block"].line, flow=flow,
                  auth_config=ep["auth"], cors_config=ep["cors"], csrf_required=ep["csrf"],
                  description=ep["description"])
    if ep["auth"] is not None:
        from flowlet.security.auth import compile_auth
        if secrets is None:
            raise ConfigError("authentication needs the secrets store", name, ep["block"].line)
        route.auth, route.scope = compile_auth(
            ep["auth"], realm=settings.name, secrets=secrets,
            compile_expr=lambda src, where: compile_expr(src, where, allow_secret=False))
    return route


class _DevPlaceholders:
    """A SecretsView that also answers for declared, not yet created development secrets."""

    def __init__(self, view: Any, pending: list):
        from flowlet.secrets.model import BasicSecret, JwtSecret
        self.view = view
        self.pending = pending
        self.placeholders = {d.name: (BasicSecret(d.name, {}) if d.type == "basic"
                                      else JwtSecret(d.name, hs_key=bytes(32), algorithms=("HS256",)))
                             for d in pending}

    def get(self, name: str) -> Any:
        return self.view.get(name) or self.placeholders.get(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)
