"""Trusted reverse proxies: who the client really is, and which scheme and host it used.

Config model: ``proxy: {trusted: [ADDR_OR_CIDR, ...]}`` in flowlet.yaml, plus the
``--forwarded-allow-ips`` list of ``flowlet serve``; the two are joined. Nobody is trusted by
default. Compiled policy: :class:`TrustedProxies`, whose :meth:`~TrustedProxies.apply` sets the
request's effective ``client``, ``secure`` and ``host`` once per request.

Only when the direct peer is trusted are ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` /
``-Proto`` / ``-Host`` read; when both kinds arrive they must agree (a proxy rewrites one and
may pass the other through from the client), else 400. The hop list is walked from the right,
skipping trusted addresses; the first untrusted one is the client (nginx's
``real_ip_recursive``). From an untrusted peer these headers change nothing; a malformed one
from a trusted peer is a 400, since a proxy we trust that sends nonsense is misconfigured and
guessing would hand the choice of client address to whoever is in front of it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Union

from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.source import YList, YMap, check_keys, expect_map

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Where = tuple[Union[str, None], int]

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# one forwarded-pair: token "=" (token / quoted-string), then the delimiter that follows it
_PAIR = re.compile(rf"[ \t]*({_TOKEN})=(?:({_TOKEN})|\"((?:[^\"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e])*)\")[ \t]*([;,]|$)")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(:[0-9]{1,5})?")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")
ENV_ALLOW_IPS = "FLOWLET_FORWARDED_ALLOW_IPS"     # `flowlet serve --forwarded-allow-ips` for the workers
_TRUST_CACHE_MAX = 4096
MAX_HOPS = 64            # longer chains are refused rather than walked


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """``proxy:`` in flowlet.yaml: the peers whose forwarding headers are believed."""

    trusted: tuple[str, ...] = ()
    where: Where = (None, 1)


def parse_proxy_settings(raw: object, parent: YMap | None = None) -> ProxySettings:
    """``proxy: {trusted: [...]}``; ``trusted`` may also be one string with commas."""
    if raw is None:
        return ProxySettings()
    m = expect_map(raw, parent, "proxy", "'proxy'")
    check_keys(m, ("trusted",), "proxy")
    value = m.get("trusted")
    if value is None:
        return ProxySettings(where=m.where())
    if isinstance(value, str):
        items = [(part.strip(), m.where("trusted")) for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            where = value.where(i) if isinstance(value, YList) else m.where("trusted")
            if not isinstance(item, str):
                raise ConfigError("items of 'trusted' must be addresses or CIDRs (strings)", *where)
            items.append((item.strip(), where))
    else:
        raise m.error("'trusted' must be a list of addresses or CIDRs", "trusted")
    for text, where in items:
        parse_network(text, where)
    return ProxySettings(tuple(text for text, _ in items), m.where("trusted"))


def parse_network(text: str, where: Where = (None, 1)) -> Network | None:
    """One entry: an address, a CIDR, or ``*`` (every peer: returns None)."""
    if text == "*":
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"{text!r} is not an IP address or CIDR (such as 10.0.0.0/8 or ::1)", *where) from None


def parse_allow_ips(value: str) -> tuple[str, ...]:
    """``--forwarded-allow-ips``: a comma-separated list; raises ValueError with a message."""
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    for item in items:
        try:
            parse_network(item)
        except ConfigError as exc:
            raise ValueError(f"--forwarded-allow-ips: {exc.message}") from None
    return items


def from_environment() -> tuple[str, ...]:
    """The ``--forwarded-allow-ips`` list a worker was started with (validated by the CLI)."""
    import os
    value = os.environ.get(ENV_ALLOW_IPS, "")
    return tuple(part.strip() for part in value.split(",") if part.strip())


def compile_proxies(*lists: Iterable[str]) -> "TrustedProxies | None":
    """The policy for the union of the lists; None when nobody is trusted (the request path
    then skips this stage entirely)."""
    entries = [e for entries in lists for e in entries]
    if not entries:
        return None
    nets = [parse_network(e) for e in entries]
    return TrustedProxies(tuple(n for n in nets if n is not None), trust_all=any(n is None for n in nets))


class TrustedProxies:
    """The compiled trust list: an immutable network list plus a small per-process cache."""

    __slots__ = ("networks", "trust_all", "_cache")

    def __init__(self, networks: tuple[Network, ...], trust_all: bool = False):
        self.networks = networks
        self.trust_all = trust_all
        self._cache: dict[str, bool] = {}

    def trusts(self, addr: str | None) -> bool:
        if addr is None:
            return self.trust_all
        known = self._cache.get(addr)
        if known is not None:
            return known
        ip = _ip(addr)
        found = ip is not None and (self.trust_all or any(ip in net for net in self.networks))
        if len(self._cache) >= _TRUST_CACHE_MAX:
            self._cache.clear()     # peers of a proxied deployment are few; a flood just starts over
        self._cache[addr] = found
        return found

    def apply(self, req: Request) -> None:
        """Set ``req.client``, ``req.secure`` and ``req.host`` from the forwarding headers of a
        trusted peer. Raises HTTPError(400) when such a header is malformed."""
        if not self.trusts(req.client):
            return
        headers = req.headers
        legacy = "x-forwarded-for" in headers or "x-forwarded-proto" in headers or "x-forwarded-host" in headers
        if "forwarded" in headers:
            client, proto, host = self._pick(_parse_forwarded(_joined(req, "forwarded")), req.client)
            if legacy:
                # A proxy rewrites one of the two and passes the other through from the client:
                # unless they agree, one of them is forged, and we cannot tell which.
                other = self._pick(_x_forwarded(req), req.client)
                if other[0] != client or _differ(other[1], proto) or _differ(other[2], host):
                    raise HTTPError(400, "Forwarded and X-Forwarded-* headers disagree")
        elif legacy:
            client, proto, host = self._pick(_x_forwarded(req), req.client)
        else:
            return
        req.client = client
        if proto is not None:
            req.secure = proto == "https"
        if host is not None:
            req.host = host

    def _pick(self, hops: list[Hop], peer: str | None) -> Hop:
        """Walk from the right past trusted hops; the first untrusted ``for`` is the client."""
        if len(hops) > MAX_HOPS:
            raise HTTPError(400, "forwarding header lists too many hops")
        for hop in reversed(hops):
            # None is only ever the direct peer on a Unix socket, already trusted to get here
            if hop[0] is not None and not self.trusts(hop[0]):
                return hop
        if hops:
            return hops[0]            # everyone trusted: the left-most address, as nginx does
        return (peer, None, None)


Hop = tuple[Union[str, None], Union[str, None], Union[str, None]]     # (for, proto, host)


def _differ(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() != b.lower()


def _malformed(name: str) -> HTTPError:
    return HTTPError(400, f"malformed {name} header from a trusted proxy")


def _joined(req: Request, name: str) -> str:
    """Every field line of a list header, in order, joined with commas (RFC 9110 5.3)."""
    if req.rsgi or name in req.duplicates:      # granian's map: one call, no scan for repeats
        return ", ".join(req.header_values(name))
    return req.headers[name]


def _parse_forwarded(value: str) -> list[Hop]:
    hops: list[Hop] = []
    pos, end = 0, len(value)
    while pos < end and value[pos] in " \t,":          # empty list elements are allowed
        pos += 1
    element: dict[str, str] = {}
    while True:
        m = _PAIR.match(value, pos)
        if m is None:
            raise _malformed("Forwarded")
        name = m.group(1).lower()
        raw = m.group(2) if m.group(2) is not None else re.sub(r"\\(.)", r"\1", m.group(3))
        if name in element:
            raise _malformed("Forwarded")       # a parameter at most once per element
        element[name] = raw
        pos = m.end()
        if m.group(4) != ";":
            hops.append(_forwarded_hop(element))
            element = {}
            if pos >= end:
                return hops
            while pos < end and value[pos] in " \t,":    # empty list elements are allowed
                pos += 1
            if pos >= end:
                return hops


def _forwarded_hop(element: dict[str, str]) -> Hop:
    node = element.get("for")
    client = _node(node) if node is not None else None
    proto = element.get("proto")
    if proto is not None:
        proto = proto.lower()
        if proto not in ("http", "https"):
            raise _malformed("Forwarded")
    host = element.get("host")
    if host is not None and not _HOST.fullmatch(host):
        raise _malformed("Forwarded")
    if node is None:
        raise _malformed("Forwarded")           # a hop without `for` cannot be walked
    return client, proto, host


def _node(node: str) -> str:
    """RFC 7239 node -> an address string, or the obfuscated identifier / ``unknown`` as sent."""
    if node.lower() == "unknown" or _OBFUSCATED.fullmatch(node):
        return node.lower() if node.lower() == "unknown" else node
    if node.startswith("["):
        close = node.find("]")
        if close < 0 or (close + 1 < len(node) and not _port_suffix(node[close + 1:])):
            raise _malformed("Forwarded")
        ip = _ip(node[1:close])
        if ip is None or ip.version != 6:
            raise _malformed("Forwarded")
        return str(ip)
    host, sep, port = node.partition(":")
    if sep and not _PORT.fullmatch(port):
        raise _malformed("Forwarded")
    ip = _ip(host)
    if ip is None or ip.version != 4:
        raise _malformed("Forwarded")
    return str(ip)


def _port_suffix(text: str) -> bool:
    return text.startswith(":") and _PORT.fullmatch(text[1:]) is not None


def _x_forwarded(req: Request) -> list[Hop]:
    fors = [_xff_entry(e.strip()) for e in _joined(req, "x-forwarded-for").split(",") if e.strip()] \
        if "x-forwarded-for" in req.headers else []
    protos = _list(req, "x-forwarded-proto")
    hosts = _list(req, "x-forwarded-host")
    for p in protos:
        if p.lower() not in ("http", "https"):
            raise _malformed("X-Forwarded-Proto")
    for h in hosts:
        if not _HOST.fullmatch(h):
            raise _malformed("X-Forwarded-Host")
    peer = req.client
    addrs = [*fors, peer]
    n = len(fors)
    hops: list[Hop] = []
    for i, addr in enumerate(addrs):
        # Proxies that append to X-Forwarded-Proto/-Host do so alongside X-Forwarded-For: align
        # the lists from the right; a single value (the usual case) applies to every hop.
        hops.append((addr, _aligned(protos, n, i, str.lower), _aligned(hosts, n, i, None)))
    return hops


def _aligned(values: list[str], n: int, i: int, norm) -> str | None:
    if not values:
        return None
    index = min(max(len(values) - (n - i), 0), len(values) - 1)
    return norm(values[index]) if norm is not None else values[index]


def _list(req: Request, name: str) -> list[str]:
    if name not in req.headers:
        return []
    items = [e.strip() for e in _joined(req, name).split(",") if e.strip()]
    if not items:
        raise _malformed(name)
    return items


def _xff_entry(entry: str) -> str:
    """``1.2.3.4``, ``1.2.3.4:port``, ``::1``, ``[::1]`` or ``[::1]:port`` -> the address."""
    if entry.startswith("["):
        close = entry.find("]")
        rest = entry[close + 1:] if close > 0 else ""
        ip = _ip(entry[1:close]) if close > 0 else None
        if ip is None or ip.version != 6 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            raise _malformed("X-Forwarded-For")
        return str(ip)
    ip = _ip(entry)
    if ip is None and entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit() and len(port) <= 5:
            ip = _ip(host)
            if ip is not None and ip.version != 4:
                ip = None
    if ip is None:
        raise _malformed("X-Forwarded-For")
    return str(ip)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A parsed address; IPv4-mapped IPv6 (a dual-stack socket's view of IPv4) as IPv4."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
