"""Trusted proxies: forwarding headers believed only from trusted peers, walked from the right."""

from __future__ import annotations

import pytest

from flowlet.edge.proxy import compile_proxies, parse_allow_ips, parse_proxy_settings
from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.source import load_yaml


def request(peer: str | None, *headers: tuple[str, str], scheme: str = "http") -> Request:
    scope = {"type": "http", "method": "GET", "path": "/api/x", "scheme": scheme,
             "client": (peer, 5000) if peer else None,
             "headers": [(b"host", b"internal:8080"), *((k.encode(), v.encode()) for k, v in headers)]}
    return Request(scope)


PROXIES = compile_proxies(["10.0.0.0/8", "::1"])


def applied(peer, *headers):
    req = request(peer, *headers)
    PROXIES.apply(req)
    return req.client, req.secure, req.host


def test_nobody_is_trusted_by_default():
    assert compile_proxies([], []) is None


def test_untrusted_peer_headers_change_nothing():
    assert applied("203.0.113.9", ("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"),
                   ("x-forwarded-host", "api.example.com")) == ("203.0.113.9", False, "internal:8080")


def test_untrusted_peer_malformed_header_is_ignored_not_refused():
    assert applied("203.0.113.9", ("x-forwarded-for", "not an address"))[0] == "203.0.113.9"


def test_trusted_peer_x_forwarded_headers_apply():
    assert applied("10.0.0.2", ("x-forwarded-for", "198.51.100.7"), ("x-forwarded-proto", "https"),
                   ("x-forwarded-host", "api.example.com")) == ("198.51.100.7", True, "api.example.com")


def test_rightmost_untrusted_address_is_the_client():
    # the left-most entry is whatever the client typed; only the hops our proxies added count
    got = applied("10.0.0.2", ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1"))
    assert got[0] == "198.51.100.7"


def test_all_hops_trusted_gives_the_leftmost():
    assert applied("10.0.0.2", ("x-forwarded-for", "10.9.9.9, 10.1.1.1"))[0] == "10.9.9.9"


def test_repeated_x_forwarded_for_lines_are_one_list():
    got = applied("10.0.0.2", ("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.7, 10.1.1.1"))
    assert got[0] == "198.51.100.7"


def test_xff_entries_with_ports_and_ipv6():
    assert applied("10.0.0.2", ("x-forwarded-for", "198.51.100.7:4711"))[0] == "198.51.100.7"
    assert applied("10.0.0.2", ("x-forwarded-for", "[2001:db8::1]:443"))[0] == "2001:db8::1"
    assert applied("10.0.0.2", ("x-forwarded-for", "2001:db8::1"))[0] == "2001:db8::1"


def test_ipv4_mapped_peer_is_matched_as_ipv4():
    assert applied("::ffff:10.0.0.2", ("x-forwarded-for", "198.51.100.7"))[0] == "198.51.100.7"


@pytest.mark.parametrize("headers", [
    (("x-forwarded-for", "evil"),),
    (("x-forwarded-for", "1.2.3.4, <script>"),),
    (("x-forwarded-for", "999.1.1.1"),),
    (("x-forwarded-proto", "ftp"),),
    (("x-forwarded-proto", ","),),
    (("x-forwarded-host", "a b"),),
    (("x-forwarded-host", "evil.com/path"),),
    (("forwarded", "for"),),
    (("forwarded", "for=1.2.3.4;for=5.6.7.8"),),
    (("forwarded", "for=\"[::1\""),),
    (("forwarded", "for=1.2.3.4;proto=gopher"),),
    (("forwarded", "proto=https"),),
    (("forwarded", "for=300.1.1.1"),),
])
def test_malformed_header_from_trusted_peer_is_400(headers):
    with pytest.raises(HTTPError) as info:
        applied("10.0.0.2", *headers)
    assert info.value.status == 400


def test_forwarded_is_walked_from_the_right():
    got = applied("10.0.0.2",
                  ("forwarded", 'for=6.6.6.6;proto=http, for=198.51.100.7;proto=https;host="api.example.com", '
                                'for="[::1]:8443";proto=http'))
    # ::1 is trusted, so the hop it added is skipped; 198.51.100.7's element was written by a trusted hop
    assert got == ("198.51.100.7", True, "api.example.com")


def test_forged_forwarded_passed_through_a_proxy_that_sets_xff_is_400():
    # nginx appends to X-Forwarded-For but passes a client's Forwarded on untouched
    with pytest.raises(HTTPError) as info:
        applied("10.0.0.2", ("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "1.1.1.1, 198.51.100.7"))
    assert info.value.status == 400


def test_forwarded_and_xff_that_agree_are_fine():
    got = applied("10.0.0.2", ("forwarded", "for=198.51.100.7;proto=https"), ("x-forwarded-for", "198.51.100.7"),
                  ("x-forwarded-proto", "https"))
    assert got[:2] == ("198.51.100.7", True)


def test_forwarded_case_insensitive_names_and_quoted_values():
    assert applied("10.0.0.2", ("forwarded", 'For="198.51.100.7:1234";Proto=HTTPS'))[:2] == ("198.51.100.7", True)


def test_forwarded_obfuscated_and_unknown_nodes_are_untrusted_clients():
    assert applied("10.0.0.2", ("forwarded", "for=_hidden"))[0] == "_hidden"
    assert applied("10.0.0.2", ("forwarded", "for=unknown"))[0] == "unknown"


def test_proto_lists_align_from_the_right_with_the_chosen_hop():
    got = applied("10.0.0.2", ("x-forwarded-for", "198.51.100.7, 10.1.1.1"), ("x-forwarded-proto", "https, http"))
    assert got[:2] == ("198.51.100.7", True)


def test_trusted_peer_without_forwarding_headers_keeps_everything():
    assert applied("10.0.0.2") == ("10.0.0.2", False, "internal:8080")


def test_star_trusts_every_peer():
    req = request("203.0.113.9", ("x-forwarded-for", "198.51.100.7"))
    compile_proxies(["*"]).apply(req)
    assert req.client == "198.51.100.7"


def test_config_errors_name_file_and_line():
    doc = load_yaml("proxy:\n  trusted:\n    - 10.0.0.0/8\n    - nonsense\n", "flowlet.yaml")
    with pytest.raises(ConfigError) as info:
        parse_proxy_settings(doc["proxy"])
    assert str(info.value).startswith("flowlet.yaml:4: error:") and "nonsense" in str(info.value)


def test_config_unknown_key():
    doc = load_yaml("proxy:\n  trust: [127.0.0.1]\n", "flowlet.yaml")
    with pytest.raises(ConfigError) as info:
        parse_proxy_settings(doc["proxy"])
    assert "flowlet.yaml:2" in str(info.value) and "trusted" in str(info.value)


def test_config_accepts_list_or_comma_string():
    doc = load_yaml("proxy: {trusted: '127.0.0.1, 10.0.0.0/8'}\n", "flowlet.yaml")
    assert parse_proxy_settings(doc["proxy"]).trusted == ("127.0.0.1", "10.0.0.0/8")


def test_cli_list_is_validated():
    assert parse_allow_ips("127.0.0.1, 10.0.0.0/8") == ("127.0.0.1", "10.0.0.0/8")
    with pytest.raises(ValueError, match="forwarded-allow-ips"):
        parse_allow_ips("127.0.0.1,localhost")


def test_unix_socket_peer_with_star_uses_the_forwarded_client():
    req = request(None, ("x-forwarded-for", "198.51.100.7"), ("x-forwarded-proto", "https"))
    compile_proxies(["*"]).apply(req)
    assert (req.client, req.secure) == ("198.51.100.7", True)


def test_unix_socket_peer_is_not_trusted_without_star():
    req = request(None, ("x-forwarded-for", "198.51.100.7"))
    PROXIES.apply(req)
    assert req.client is None
