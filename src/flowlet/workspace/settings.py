"""The model of ``flowlet.yaml``: workspace-wide settings, validated once at load."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowlet.errors import ConfigError
from flowlet.source import (YMap, check_keys, expect_map, get_int, get_number, get_str,
                                      load_yaml)

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
_NAME = re.compile(r"^[\x20-\x7e]{1,100}$")
_DOMAIN = re.compile(r"^\.?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DEV_SECRET_TYPES = ("basic", "jwt")


@dataclass(frozen=True)
class DevSecret:
    """A development secret the workspace declares: created with random credentials on first start."""

    name: str
    type: str
    user: str | None = None


@dataclass(frozen=True)
class AdminSettings:
    """``admin: {port: P, host: H}``: the admin listener (health, readiness, metrics)."""

    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    name: str
    api_prefix: str
    domain: str | None
    csrf: Any            # flowlet.security.csrf.CsrfSettings
    hsts: Any            # flowlet.security.hsts.HstsSettings
    body_bytes: int
    timeout_s: float
    store: str
    dev_secrets: tuple[DevSecret, ...] = ()
    proxy: Any = None    # flowlet.edge.proxy.ProxySettings
    rate_limits: Any = None   # flowlet.edge.ratelimit.RateLimitSettings
    openapi_path: str | None = None     # where the OpenAPI document is served, under api_prefix
    concurrency: int = 16    # per endpoint: calls of its blocking function steps running at once
    admin: AdminSettings | None = None
    console: Any = None  # flowlet.console.config.ConsoleSettings, when the console is on


def load_settings(root: Path, rel: str = "flowlet.yaml") -> Settings:
    from flowlet.security.csrf import parse_csrf_settings
    from flowlet.security.hsts import parse_hsts_settings

    path = root / "flowlet.yaml"
    if not path.is_file():
        raise ConfigError(f"{root} is not a Flowlet workspace: flowlet.yaml is missing "
                          f"(create one with: flowlet init DIR)", rel, 1)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read flowlet.yaml: {exc}", rel, 1) from None
    raw = load_yaml(text, rel)
    if raw is None:
        raw = YMap()
        raw.file, raw.line, raw.key_lines = rel, 1, {}
    m = expect_map(raw, None, None, "flowlet.yaml")
    if not isinstance(raw, YMap):
        raise ConfigError("flowlet.yaml must be a mapping", rel, 1)
    check_keys(m, ("name", "api_prefix", "domain", "csrf", "hsts", "limits", "store", "dev_secrets",
                   "proxy", "rate_limits", "openapi", "admin", "console"), "flowlet.yaml")

    name = get_str(m, "name", root.resolve().name or "flowlet")
    if not _NAME.match(name) or '"' in name or "\\" in name:
        raise m.error("'name' must be 1-100 printable ASCII characters without quotes or backslashes "
                      "(it is the authentication realm)", "name")

    prefix = get_str(m, "api_prefix", "/api")
    if prefix == "/":
        prefix = ""
    if not _PREFIX.match(prefix):
        raise m.error(f"'api_prefix' must look like /api (a leading slash, no trailing slash); got {prefix!r}",
                      "api_prefix")

    domain = m.get("domain")
    if domain is not None:
        domain = get_str(m, "domain")
        if not _DOMAIN.match(domain) or len(domain) > 253:
            raise m.error(f"'domain' must be a host name such as example.com; got {domain!r}", "domain")

    csrf = parse_csrf_settings(_sub(m, "csrf"))
    hsts = parse_hsts_settings(m["hsts"] if m.get("hsts") is False else _sub(m, "hsts"))  # false: no HSTS

    limits = _sub(m, "limits")
    body_bytes, timeout_s, concurrency = 1048576, 30.0, 16
    if limits is not None:
        check_keys(limits, ("body_bytes", "timeout_s", "concurrency"), "limits")
        body_bytes = get_int(limits, "body_bytes", body_bytes, minimum=0)
        timeout_s = float(get_number(limits, "timeout_s", timeout_s, minimum=0.001))
        concurrency = get_int(limits, "concurrency", concurrency, minimum=1)

    store = get_str(m, "store", "sqlite")
    if store != "sqlite" and not store.startswith(("postgresql://", "postgres://")):
        raise m.error("'store' must be sqlite or a postgresql:// URL", "store")

    from flowlet.edge.proxy import parse_proxy_settings
    from flowlet.edge.ratelimit import parse_rate_limit_settings
    return Settings(name=name, api_prefix=prefix, domain=domain, csrf=csrf, hsts=hsts,
                    body_bytes=body_bytes, timeout_s=timeout_s, store=store,
                    dev_secrets=_dev_secrets(m), proxy=parse_proxy_settings(m.get("proxy"), m),
                    rate_limits=parse_rate_limit_settings(m.get("rate_limits"), m),
                    openapi_path=_openapi_path(m), concurrency=concurrency, admin=_admin(m),
                    console=_console(m))


def _openapi_path(m: YMap) -> str | None:
    """``openapi: {path: /openapi.json}``: serve the workspace's OpenAPI document there."""
    block = _sub(m, "openapi")
    if block is None:
        return None
    check_keys(block, ("path",), "openapi")
    path = get_str(block, "path", "/openapi.json")
    if not _PREFIX.match(path) or not path:
        raise block.error(f"'path' must look like /openapi.json; got {path!r}", "path")
    if path == "/csrf":
        raise block.error("/csrf is the built-in CSRF token endpoint", "path")
    return path


def _sub(m: YMap, key: str) -> YMap | None:
    value = m.get(key)
    if value is None:
        return None
    return expect_map(value, m, key, f"'{key}'")


def _admin(m: YMap) -> AdminSettings | None:
    block = _sub(m, "admin")
    if block is None:
        return None
    check_keys(block, ("port", "host"), "admin")
    if "port" not in block:
        raise block.error("'admin' needs a 'port' (the admin listener's TCP port)")
    port = get_int(block, "port", minimum=0)
    if port > 65535:
        raise block.error(f"'port' must be from 0 to 65535, got {port}", "port")
    host = get_str(block, "host", "127.0.0.1")
    if not host or any(c.isspace() for c in host):
        raise block.error(f"'host' must be an address such as 127.0.0.1, got {host!r}", "host")
    return AdminSettings(port=port, host=host)


def _console(m: YMap) -> Any:
    from flowlet.console.config import parse_console_settings
    return parse_console_settings(_sub(m, "console"))


def _dev_secrets(m: YMap) -> tuple[DevSecret, ...]:
    """``dev_secrets: {NAME: {type: basic, user: demo}, NAME2: {type: jwt}}``."""
    block = _sub(m, "dev_secrets")
    if block is None:
        return ()
    out = []
    for name, decl in block.items():
        decl = expect_map(decl, block, name, f"dev secret {name!r}")
        check_keys(decl, ("type", "user"), f"dev secret {name!r}")
        kind = get_str(decl, "type", choices=_DEV_SECRET_TYPES)
        user = get_str(decl, "user", "dev") if kind == "basic" else None
        if kind != "basic" and "user" in decl:
            raise decl.error("'user' is only for basic secrets", "user")
        out.append(DevSecret(str(name), kind, user))
    return tuple(out)
