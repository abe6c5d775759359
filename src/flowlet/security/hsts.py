"""HSTS: the Strict-Transport-Security header sent on every response served over TLS.

Config model (``hsts:`` in flowlet.yaml) and the ready header pair, built once at load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowlet.errors import ConfigError
from flowlet.source import YMap, check_keys, get_bool, get_int

HSTS_HEADER = b"strict-transport-security"
PRELOAD_MIN_AGE = 31536000       # hstspreload.org: at least one year, includeSubDomains
DEFAULT_MAX_AGE = 31536000


@dataclass(frozen=True, slots=True)
class HstsSettings:
    """flowlet.yaml ``hsts:``; sent on every response served over TLS."""

    max_age: int = DEFAULT_MAX_AGE
    include_subdomains: bool = True
    preload: bool = False


def parse_hsts_settings(raw: Any) -> HstsSettings | None:
    """``None`` (absent or empty) gives the defaults; ``false`` turns the header off."""
    if raw is None:
        return HstsSettings()
    if raw is False:
        return None
    if not isinstance(raw, YMap):
        raise ConfigError("'hsts' must be a mapping with max_age, include_subdomains, preload "
                          "(or false to send no Strict-Transport-Security header)")
    check_keys(raw, ("max_age", "include_subdomains", "preload"), "hsts")
    settings = HstsSettings(
        max_age=get_int(raw, "max_age", DEFAULT_MAX_AGE, minimum=0),
        include_subdomains=get_bool(raw, "include_subdomains", True),
        preload=get_bool(raw, "preload", False),
    )
    if settings.preload and (settings.max_age < PRELOAD_MIN_AGE or not settings.include_subdomains):
        raise raw.error("'preload: true' needs max_age of at least 31536000 and "
                        "include_subdomains: true (browser preload lists refuse anything less)",
                        "preload")
    return settings


def hsts_header(settings: Any) -> tuple[bytes, bytes] | None:
    """The ready header pair, built once at load; None when HSTS is off.

    Accepts :class:`HstsSettings` (or None), or any object with an ``hsts`` attribute
    holding one (the workspace settings).
    """
    if settings is not None and not isinstance(settings, HstsSettings):
        settings = getattr(settings, "hsts", None)
    if settings is None:
        return None
    value = f"max-age={settings.max_age}"
    if settings.include_subdomains:
        value += "; includeSubDomains"
    if settings.preload:
        value += "; preload"
    return HSTS_HEADER, value.encode("ascii")
