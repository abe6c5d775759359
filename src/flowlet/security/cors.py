"""CORS: the per-flow ``cors:`` config model and the compiled answer of a path.

Load time (slow and careful): :func:`parse_cors` validates one flow's block; :func:`merge_path`
merges the flows of one path by the least strict rule into a :class:`PathCors`, whose header
lists are built once, as byte pairs. Request time (lean): match the ``Origin`` against the
parsed domain entries (cached per origin string) and copy a ready list.

Choices CORS leaves to the server (docs/cors.md explains them to users):

- ``Access-Control-Allow-Methods`` lists the methods in a fixed order, writes before reads
  (PUT, POST, PATCH, DELETE, then GET, then any other alphabetically), so the answer never
  depends on file names; docs/cors.md's PUT and GET flows give ``PUT, GET``. ``HEAD`` is allowed
  whenever ``GET`` is, but not listed: it is CORS-safelisted, browsers never need it listed.
- Headers keep the spelling of their first mention, in that same method order, then
  ``Authorization`` and the CSRF header. ``headers`` defaults to ``Content-Type`` (what a JSON
  front end sends); ``max_age`` defaults to 300, as in docs/cors.md.
- No header is allowed implicitly: a browser names a CORS-safelisted header in
  ``Access-Control-Request-Headers`` only when its value is not safelisted, and then it checks
  the header against ``Access-Control-Allow-Headers`` itself.
- Every response of a method in the answer carries ``Vary: Origin``, also when the origin is
  not allowed, absent, or the answer is ``*``: a shared cache must never hand one origin's
  answer to another. A refused preflight carries ``Vary: Origin`` and nothing else.
- ``allow: all`` answers ``*`` to every request of those methods, ``null`` origins included
  (``*`` is what the browser checks; a ``null`` page could read a simple request anyway).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

import idna
from publicsuffixlist import PublicSuffixList

from flowlet.errors import ConfigError
from flowlet.headers import is_token
from flowlet.http import Request
from flowlet.source import YList, YMap, check_keys, get_bool, get_int, get_str

DEFAULT_MAX_AGE = 300
MAX_MAX_AGE = 86400          # Firefox's cap (Chromium caps at 7200): more would silently shrink
DEFAULT_HEADERS = ("Content-Type",)
ALLOW_CHOICES = ("none", "all", "selected")

# Writes before reads: "PUT, GET" for a path with both, whatever the flow files are called.
_METHOD_RANK = {m: i for i, m in enumerate(("PUT", "POST", "PATCH", "DELETE", "GET"))}

_CACHE_MAX = 512             # distinct Origin strings remembered per path
_ORIGIN_MAX = 300            # longer than any valid origin (253-byte host + scheme + port)

_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_REQ_LABEL_RE = re.compile(r"[a-z0-9_-]{1,63}")
# An Origin as browsers serialize it: scheme "://" host [":" port], nothing else.
_ORIGIN_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]{1,5}))?")
_DEFAULT_PORT = {"http": 80, "https": 443}

_ACAO = b"access-control-allow-origin"
_ACAC = (b"access-control-allow-credentials", b"true")
_VARY = (b"vary", b"Origin")


# ---- domain entries ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DomainPattern:
    """One parsed ``domains`` entry: ``[scheme://]host[:port]``, at most one ``*`` label.

    ``prefix``/``suffix`` are the ASCII labels left and right of the ``*`` (``wildcard`` set),
    or ``prefix`` is the whole host. ``port`` is always concrete (443 for https by default).
    """

    scheme: str
    prefix: tuple[str, ...]
    suffix: tuple[str, ...]
    wildcard: bool
    port: int
    text: str               # canonical: https://*.example.com, default port dropped

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, ".".join(self.prefix), self.port)

    def matches(self, scheme: str, labels: tuple[str, ...], port: int) -> bool:
        if scheme != self.scheme or port != self.port:
            return False
        if not self.wildcard:
            return labels == self.prefix
        np, ns = len(self.prefix), len(self.suffix)
        return (len(labels) > np + ns and labels[:np] == self.prefix
                and labels[len(labels) - ns:] == self.suffix)

    def sample(self) -> tuple[str, ...]:
        """Labels of a host this pattern matches, with a label no real host has for ``*``:
        another pattern that matches the sample matches everything this one does."""
        return self.prefix + ("\x00",) + self.suffix if self.wildcard else self.prefix


def parse_domain(entry: str) -> DomainPattern:
    """Parse one domain entry; raises ConfigError (without location) explaining the problem."""
    text = entry.strip()
    if text.lower() == "null":
        raise ConfigError("the 'null' origin (sandboxed iframes, file: pages, redirects) can "
                          "never be allowed: any site can send it")
    if text == "*":
        raise ConfigError("'*' is not a domain entry: use allow: all to allow every origin")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "https", text
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORT:
        raise ConfigError(f"domain entry {entry!r}: scheme must be http or https")
    if any(c in rest for c in "/?#"):
        raise ConfigError(f"domain entry {entry!r} must not have a path, query or fragment "
                          f"(an origin is only [scheme://]host[:port])")
    if "@" in rest:
        raise ConfigError(f"domain entry {entry!r} must not contain user information")
    host, port = rest, _DEFAULT_PORT[scheme]
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ConfigError(f"domain entry {entry!r}: unclosed '[' in an IPv6 address")
        host, tail = host[:end + 1], host[end + 1:]
    else:
        host, colon, tail = host.partition(":")
        tail = colon + tail
    if tail:
        if not (tail.startswith(":") and tail[1:].isascii() and tail[1:].isdigit()
                and 0 < int(tail[1:]) < 65536):
            raise ConfigError(f"domain entry {entry!r}: port must be a number from 1 to 65535")
        port = int(tail[1:])
    labels = _pattern_host_labels(host, entry)
    wildcard = "*" in labels
    if wildcard:
        i = labels.index("*")
        prefix, suffix = labels[:i], labels[i + 1:]
        if "*" in suffix:
            raise ConfigError(f"domain entry {entry!r}: only one '*' is allowed")
        if not (len(suffix) >= 2 or suffix == ("localhost",)) or suffix[-1].isdigit():
            raise ConfigError(f"domain entry {entry!r} is too broad: '*' needs a registered "
                              f"domain after it, such as *.example.com")
        if suffix != ("localhost",) and _public_suffixes().is_public(".".join(suffix)):
            raise ConfigError(f"domain entry {entry!r} is too broad: {'.'.join(suffix)} is a public "
                              f"suffix, where anyone can register a domain, so '*' would allow "
                              f"other people's sites; name your own domain, such as "
                              f"*.example.{'.'.join(suffix)}")
    else:
        prefix, suffix = labels, ()
    host_text = ".".join(labels)
    default = port == _DEFAULT_PORT[scheme]
    canonical = f"{scheme}://{host_text}" + ("" if default else f":{port}")
    return DomainPattern(scheme, prefix, suffix, wildcard, port, canonical)


@lru_cache(maxsize=1)
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List (ICANN and private sections) bundled with the package: read once,
    when the first wildcard entry is checked; nothing is downloaded."""
    return PublicSuffixList()


def _pattern_host_labels(host: str, entry: str) -> tuple[str, ...]:
    if host.startswith("["):
        try:
            return (f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]",)
        except ValueError:
            raise ConfigError(f"domain entry {entry!r}: not a valid IPv6 address") from None
    if not host:
        raise ConfigError(f"domain entry {entry!r} has no host")
    if host.endswith("."):
        raise ConfigError(f"domain entry {entry!r}: remove the trailing dot (browsers send "
                          f"origins without it)")
    labels = host.split(".")
    out = []
    for label in labels:
        if label == "*":
            out.append("*")
            continue
        if "*" in label:
            raise ConfigError(f"domain entry {entry!r}: '*' must be a whole label, "
                              f"as in *.example.com")
        if not label.isascii():
            try:
                label = idna.encode(label, uts46=True).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                raise ConfigError(f"domain entry {entry!r}: {label!r} is not a valid "
                                  f"international domain name") from None
        label = label.lower()
        if not _LABEL_RE.fullmatch(label):
            raise ConfigError(f"domain entry {entry!r}: {label!r} is not a valid host name label")
        out.append(label)
    if len(".".join(out)) > 253:
        raise ConfigError(f"domain entry {entry!r}: host name longer than 253 characters")
    return tuple(out)


def parse_origin(origin: str) -> tuple[str, tuple[str, ...], int] | None:
    """``(scheme, host labels, port)`` of a request's Origin, or None when it is malformed
    (``null``, a path/query/fragment, userinfo, a trailing dot, non-ASCII, a bad port)."""
    if len(origin) > _ORIGIN_MAX:
        return None
    m = _ORIGIN_RE.fullmatch(origin)
    if m is None:
        return None
    scheme, host, port_text = m.group(1).lower(), m.group(2).lower(), m.group(3)
    default = _DEFAULT_PORT.get(scheme)
    if default is None:
        return None
    port = default if port_text is None else int(port_text)
    if not 0 < port < 65536:
        return None
    if host.startswith("["):
        try:
            return scheme, (f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]",), port
        except ValueError:
            return None
    labels = tuple(host.split("."))
    if len(host) > 253 or not all(_REQ_LABEL_RE.fullmatch(label) for label in labels):
        return None
    return scheme, labels, port


# ---- the per-flow config model ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CorsConfig:
    """One flow's ``cors:`` block, validated. ``domains``/``headers`` are deduplicated."""

    allow: str
    domains: tuple[DomainPattern, ...] = ()
    headers: tuple[str, ...] = DEFAULT_HEADERS
    credentials: bool = False
    max_age: int = DEFAULT_MAX_AGE
    file: str | None = field(default=None, compare=False)
    line: int = field(default=1, compare=False)
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    def where(self, key: str | None = None) -> tuple[str | None, int]:
        for k, line in self.key_lines:
            if k == key:
                return self.file, line
        return self.file, self.line

    def describe(self) -> dict:
        return {"allow": self.allow, "domains": [d.text for d in self.domains],
                "headers": list(self.headers), "credentials": self.credentials,
                "max_age": self.max_age}


def parse_cors(raw: Any) -> CorsConfig:
    """Validate a flow's ``cors:`` mapping; every problem is a ConfigError with FILE:LINE."""
    if not isinstance(raw, YMap):
        kind = "null" if raw is None else type(raw).__name__
        raise ConfigError(f"cors must be a mapping with allow: none | all | selected, not {kind}")
    check_keys(raw, ("allow", "domains", "headers", "credentials", "max_age"), "cors")
    if "allow" in raw:
        allow = get_str(raw, "allow", choices=ALLOW_CHOICES)
    elif "domains" in raw:
        allow = "selected"
    else:
        raise raw.error("cors needs 'allow: none | all | selected'")
    domains: list[DomainPattern] = []
    seen: set[str] = set()
    for entry, line in _items(raw, "domains"):
        try:
            pattern = parse_domain(entry)
        except ConfigError as exc:
            raise ConfigError(exc.message, raw.file, line) from None
        if pattern.text not in seen:
            seen.add(pattern.text)
            domains.append(pattern)
    headers: list[str] = []
    seen = set()
    items = _items(raw, "headers") if "headers" in raw else [(h, raw.line) for h in DEFAULT_HEADERS]
    for name, line in items:
        if name == "*":
            raise ConfigError("headers: '*' is not supported: list the header names the front "
                              "end sends", raw.file, line)
        if not is_token(name):
            raise ConfigError(f"headers: {name!r} is not a valid header name", raw.file, line)
        if name.lower() not in seen:
            seen.add(name.lower())
            headers.append(name)
    credentials = get_bool(raw, "credentials", False)
    max_age = get_int(raw, "max_age", DEFAULT_MAX_AGE, minimum=0, maximum=MAX_MAX_AGE)
    if allow == "all" and credentials:
        raise raw.error("credentials: true cannot be combined with allow: all (browsers refuse "
                        "credentials when Access-Control-Allow-Origin is '*'); list the "
                        "domains with allow: selected", "credentials")
    if allow == "selected" and not domains:
        raise raw.error("allow: selected needs at least one entry in 'domains'",
                        "domains" if "domains" in raw else "allow")
    return CorsConfig(allow, tuple(domains), tuple(headers), credentials, max_age,
                      raw.file, raw.line, tuple(getattr(raw, "key_lines", {}).items()))


def _items(m: YMap, key: str) -> list[tuple[str, int]]:
    """The entries of a comma string or YAML list, each with its line."""
    if key not in m:
        return []
    value = m[key]
    _, line = m.where(key)
    if value is None:
        raise m.error(f"{key!r} is null: give a string with commas or a list"
                      + (" (the 'null' origin can never be allowed)" if key == "domains" else ""),
                      key)
    if isinstance(value, str):
        return [(part.strip(), line) for part in value.split(",") if part.strip()]
    if isinstance(value, YList):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                what = "null" if item is None else type(item).__name__
                raise value.error(f"items of {key!r} must be strings, not {what}", i)
            _, item_line = value.where(i)
            out.extend((part.strip(), item_line) for part in item.split(",") if part.strip())
        return out
    raise m.error(f"{key!r} must be a string with commas or a list of strings", key)


# ---- the compiled answer of one path ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FlowCorsInput:
    """What merge_path needs to know of one flow on the path."""

    method: str
    cors: CorsConfig | None
    uses_auth: bool = False
    csrf: bool = False
    where: tuple[str | None, int] = (None, 1)


class PathCors:
    """The one CORS answer of a path. Immutable after construction, except the origin cache."""

    __slots__ = ("methods", "allow", "method_order", "domains", "headers", "credentials",
                 "max_age", "_exact", "_wild", "_allowed_headers", "_static", "_no_origin",
                 "_preflight_tail", "_actual_tail", "_cache")

    def __init__(self, *, methods: Iterable[str], allow: str, domains: Iterable[DomainPattern],
                 headers: Iterable[str], credentials: bool, max_age: int):
        order = sorted(set(methods), key=method_key)
        self.method_order: tuple[str, ...] = tuple(order)
        allowed = set(order)
        if "GET" in allowed:
            allowed.add("HEAD")     # HEAD carries what GET carries
        self.methods: frozenset[str] = frozenset(allowed)
        self.allow = allow
        self.domains: tuple[DomainPattern, ...] = tuple(domains)
        self.headers: tuple[str, ...] = tuple(headers)
        self.credentials = credentials
        self.max_age = max_age
        self._exact = frozenset(d.key for d in self.domains if not d.wildcard)
        self._wild = tuple(d for d in self.domains if d.wildcard)
        self._allowed_headers = frozenset(h.lower() for h in self.headers)

        listed = [m for m in order if m != "HEAD"] or order
        tail = [(b"access-control-allow-methods", ", ".join(listed).encode("ascii"))]
        if self.headers:
            tail.append((b"access-control-allow-headers", ", ".join(self.headers).encode("ascii")))
        tail.append((b"access-control-max-age", str(max_age).encode("ascii")))
        if credentials:
            tail.append(_ACAC)
        tail.append(_VARY)
        self._preflight_tail = tuple(tail)
        self._actual_tail = (_ACAC, _VARY) if credentials else (_VARY,)
        if allow == "all":
            star = (_ACAO, b"*")
            self._static: tuple | None = ((star, _VARY), (star, *self._preflight_tail))
            self._no_origin = self._static[0]
        else:
            self._static = None
            self._no_origin = (_VARY,)
        self._cache: dict[str, tuple] = {}

    # -- request time --------------------------------------------------------------------------

    def _lookup(self, origin: str) -> tuple:
        """``(actual headers, preflight headers)`` for an allowed origin, else ``()``."""
        entry = self._static
        if entry is not None:
            return entry
        entry = self._cache.get(origin)
        if entry is None:
            entry = self._compute(origin)
            if len(origin) <= _ORIGIN_MAX:
                cache = self._cache
                if len(cache) >= _CACHE_MAX:
                    cache.clear()   # bounded: a flood of odd origins only costs recomputation
                cache[origin] = entry
        return entry

    def _compute(self, origin: str) -> tuple:
        if not self._origin_matches(origin):
            return ()
        echo = (_ACAO, origin.encode("latin-1"))
        return ((echo, *self._actual_tail), (echo, *self._preflight_tail))

    def _origin_matches(self, origin: str) -> bool:
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        scheme, labels, port = parsed
        if (scheme, ".".join(labels), port) in self._exact:
            return True
        return any(d.matches(scheme, labels, port) for d in self._wild)

    def preflight(self, req: Request) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Answer an ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``:
        204 and the headers, or 403 with ``Vary: Origin`` only (the server adds the body)."""
        h = req.headers
        origin = h.get("origin")
        if origin is None or h.get("access-control-request-method") not in self.methods:
            return 403, [_VARY]
        entry = self._lookup(origin)
        if not entry:
            return 403, [_VARY]
        requested = h.get("access-control-request-headers")
        if requested:
            allowed = self._allowed_headers
            requested = requested.lower()
            if requested not in allowed:
                for name in requested.split(","):
                    name = name.strip()
                    if name and name not in allowed:
                        return 403, [_VARY]
        return 204, list(entry[1])

    def refusal_reason(self, req: Request) -> str:
        """Which check a refused preflight failed ("origin", "method" or "header"), for
        metrics and the log; asked only after ``preflight`` answered 403."""
        h = req.headers
        if h.get("access-control-request-method") not in self.methods:
            return "method"
        origin = h.get("origin")
        return "header" if origin is not None and self._lookup(origin) else "origin"

    def actual_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """Headers for an actual response of a method in ``methods``: allow-origin (echoed or
        ``*``), credentials and ``Vary: Origin``; only ``Vary: Origin`` when not allowed."""
        if origin is None:
            return list(self._no_origin)
        entry = self._lookup(origin)
        return list(entry[0]) if entry else [_VARY]

    def allows_origin(self, origin: str) -> bool:
        return bool(self._lookup(origin))

    # -- load time -----------------------------------------------------------------------------

    def describe(self) -> dict:
        return {"allow": self.allow, "methods": list(self.method_order),
                "domains": [d.text for d in self.domains], "headers": list(self.headers),
                "credentials": self.credentials, "max_age": self.max_age}

    def __repr__(self) -> str:
        return f"PathCors({self.describe()!r})"


def method_key(method: str) -> tuple[int, str]:
    return (_METHOD_RANK.get(method, len(_METHOD_RANK)), method)


def merge_path(path: str, flows: list[FlowCorsInput],
               csrf_header: str) -> tuple[PathCors | None, list[ConfigError]]:
    """Merge the flows of one path into its CORS answer by the least strict rule.

    Returns the answer (None when no flow there has CORS) and one warning per aspect
    (domains, headers, credentials, max_age) in which the answer is wider than a flow's own
    policy, located at that flow. Raises ConfigError for combinations a browser would reject
    or that would defeat CSRF protection.
    """
    members = sorted((f for f in flows if f.cors is not None and f.cors.allow != "none"),
                     key=lambda f: method_key(f.method))
    if not members:
        return None, []
    star = [f for f in members if f.cors.allow == "all"]
    if star:
        _check_star(path, flows, members, star)
    answer, domain_src, header_src = _merged(members, star, csrf_header)
    return answer, _widening_warnings(path, members, star, answer, domain_src, header_src, csrf_header)


def _check_star(path: str, flows: list[FlowCorsInput], members: list[FlowCorsInput],
                star: list[FlowCorsInput]) -> None:
    """allow: all on a path admits neither credentials nor CSRF protection on it."""
    for f in members:
        if f.cors.credentials:
            file, line = f.cors.where("credentials")
            raise ConfigError(
                f"{f.method} {path}: credentials: true cannot share a path with "
                f"{star[0].method}'s allow: all (all methods of a path share one CORS "
                f"answer, and browsers refuse credentials with '*')", file, line)
    for f in flows:
        if f.csrf:
            raise ConfigError(
                f"{f.method} {path}: csrf: true on a path whose CORS answer is allow: all "
                f"(from {star[0].method}): every origin would pass the CSRF origin check",
                *f.where)


def _merged(members: list[FlowCorsInput], star: list[FlowCorsInput],
            csrf_header: str) -> tuple[PathCors, dict[str, list[str]], dict[str, list[str]]]:
    """The path's answer, and why each domain and header is in it (for the warnings)."""
    domains: dict[str, DomainPattern] = {}
    headers: dict[str, str] = {}                  # lower -> spelling
    header_src: dict[str, list[str]] = {}         # lower -> reasons
    domain_src: dict[str, list[str]] = {}
    for f in members:
        for d in (f.cors.domains if f.cors.allow == "selected" else ()):
            domains.setdefault(d.text, d)
            domain_src.setdefault(d.text, []).append(f"{f.method} allows it")
        for name in f.cors.headers:
            headers.setdefault(name.lower(), name)
            header_src.setdefault(name.lower(), []).append(f"{f.method} allows it")
    for f in members:
        if f.uses_auth:
            headers.setdefault("authorization", "Authorization")
            header_src.setdefault("authorization", []).append(f"{f.method} uses auth")
    for f in members:
        if f.csrf:
            headers.setdefault(csrf_header.lower(), csrf_header)
            header_src.setdefault(csrf_header.lower(), []).append(f"{f.method} requires CSRF")
    answer = PathCors(methods=[f.method for f in members], allow="all" if star else "selected",
                      domains=() if star else domains.values(), headers=headers.values(),
                      credentials=any(f.cors.credentials for f in members),
                      max_age=max(f.cors.max_age for f in members))
    return answer, domain_src, header_src


def _widening_warnings(path: str, members: list[FlowCorsInput], star: list[FlowCorsInput],
                       answer: PathCors, domain_src: dict[str, list[str]],
                       header_src: dict[str, list[str]], csrf_header: str) -> list[ConfigError]:
    """One warning per flow and aspect in which the merged answer is wider than the flow's own."""
    warnings: list[ConfigError] = []
    credentials, max_age = answer.credentials, answer.max_age

    def warn(f: FlowCorsInput, key: str, message: str) -> None:
        file, line = f.cors.where(key)
        warnings.append(ConfigError(f"{f.method} {path}: {message}", file or f.where[0],
                                    line if file else f.where[1]))

    for f in members:
        cfg = f.cors
        if cfg.allow == "all" and cfg.domains:
            warn(f, "domains", "domains are ignored with allow: all")
        if cfg.allow == "selected":
            if star:
                warn(f, "allow", f"every origin allowed because {_names(star)} "
                                 f"{'allows' if len(star) == 1 else 'allow'} all")
            else:
                extra = [d for d in answer.domains
                         if not any(o.matches(d.scheme, d.sample(), d.port) for o in cfg.domains)]
                if extra:
                    warn(f, "domains", _because([d.text for d in extra], domain_src, f.method))
        own_headers = {h.lower() for h in cfg.headers}
        if f.uses_auth:
            own_headers.add("authorization")
        if f.csrf:
            own_headers.add(csrf_header.lower())
        extra_h = [h for h in answer.headers if h.lower() not in own_headers]
        if extra_h:
            warn(f, "headers", _because(extra_h, {h: header_src[h.lower()] for h in extra_h},
                                        f.method))
        if credentials and not cfg.credentials:
            sources = [g.method for g in members if g.cors.credentials]
            warn(f, "credentials", f"credentials allowed because {', '.join(sources)} "
                                   f"{'allows' if len(sources) == 1 else 'allow'} them")
        if cfg.max_age < max_age:
            sources = [g.method for g in members if g.cors.max_age == max_age]
            warn(f, "max_age", f"preflights cached for {max_age} s, not {cfg.max_age} s, "
                               f"because {', '.join(sources)} "
                               f"{'sets' if len(sources) == 1 else 'set'} max_age: {max_age}")
    return warnings


def _names(flows: list[FlowCorsInput]) -> str:
    return ", ".join(f.method for f in flows)


def _because(items: list[str], sources: dict[str, list[str]], self_method: str) -> str:
    """'X-Foo allowed because POST allows it', grouping items that share their reasons."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for item in items:
        reasons = tuple(r for r in sources[item] if not r.startswith(self_method + " "))
        groups.setdefault(reasons, []).append(item)
    parts = []
    for reasons, names in groups.items():
        if len(names) > 1:
            reasons = tuple(r.replace(" it", " them") for r in reasons)
        parts.append(f"{', '.join(names)} allowed because {' and '.join(reasons)}")
    return "; ".join(parts)


def csrf_endpoint_cors(policies: list[PathCors]) -> PathCors | None:
    """The answer of ``GET <api_prefix>/csrf``: every origin the CSRF-protected paths allow,
    with credentials (the cookie must be stored). It reads no request headers, so allowing
    the union of those paths' headers (and Content-Type) is harmless and spares front ends
    whose fetch wrapper adds them to every request a failing preflight."""
    domains: dict[str, DomainPattern] = {}
    headers: dict[str, str] = {"content-type": "Content-Type"}
    max_age = 0
    for p in policies:
        if p is None or p.allow != "selected":
            continue
        for d in p.domains:
            domains.setdefault(d.text, d)
        for h in p.headers:
            headers.setdefault(h.lower(), h)
        max_age = max(max_age, p.max_age)
    if not domains:
        return None
    return PathCors(methods=["GET"], allow="selected", domains=domains.values(),
                    headers=headers.values(), credentials=True, max_age=max_age)
