"""JWT bearer authentication: the policy, its verifier, the auth: block, key sets from a URL."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.secrets.model import BasicSecret, JwtSecret, ValueSecret
from flowlet.security.auth import OPEN_AUTH, compile_auth, parse_auth
from flowlet.security.jwt import MAX_TOKEN, InvalidToken, JwtPolicy, keyset_from_secret, verify_signature
from flowlet.security.runtime import AuthRuntime
from flowlet.source import load_yaml
from fakes import Clock as _Clock
from conftest import JsonServer
from fakes import View, refused, request, run

HS_KEY = b"k" * 32
NOW = 1_700_000_000


def Clock(now: float = NOW) -> _Clock:
    return _Clock(now)


def Mono() -> _Clock:
    """The monotonic clock: cache lifetimes and key-set refresh intervals."""
    return _Clock(1000.0)


def bearer(token: str) -> Request:
    return request([("authorization", f"Bearer {token}")])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs_token(claims: dict | None = None, header: dict | None = None, key: bytes = HS_KEY, **extra) -> str:
    claims = {"sub": "alice", "exp": NOW + 3600, **(claims or {}), **extra}
    header = header or {"alg": "HS256"}
    return jose_jwt.encode(header, claims, OctKey.import_key(key), algorithms=[header["alg"]])


def raw_token(header: str | bytes, payload: str | bytes, key: bytes = HS_KEY, alg: str = "sha256") -> str:
    """Hand-made HS token: header and payload given as raw JSON text, correctly MACed."""
    import hashlib
    import hmac
    h = b64(header.encode() if isinstance(header, str) else header)
    p = b64(payload.encode() if isinstance(payload, str) else payload)
    mac = hmac.new(key, f"{h}.{p}".encode(), getattr(hashlib, alg)).digest()
    return f"{h}.{p}.{b64(mac)}"


def policy(secret: JwtSecret | None = None, *, clock=None, cookie=None, view=None, realm="shop",
           monotonic=None) -> JwtPolicy:
    view = view or View(secret or JwtSecret("j", hs_key=HS_KEY))
    rt = AuthRuntime(clock=clock or Clock(), monotonic=monotonic or Mono())
    return JwtPolicy("j", realm=realm, secrets=view, runtime=rt, token_cookie=cookie)


def challenge(err: HTTPError) -> bytes:
    return dict(err.headers)[b"www-authenticate"]


# ---- reading the token ------------------------------------------------------------------------

def test_bearer_token_is_accepted_and_gives_the_auth_value():
    auth = run(policy().authenticate(bearer(hs_token(scope="a b"))))
    assert auth == {"type": "jwt", "user": "alice", "scopes": ["a", "b"],
                    "claims": {"sub": "alice", "exp": NOW + 3600, "scope": "a b"}}


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_bearer_scheme_is_case_insensitive(scheme):
    req = request([("authorization", f"{scheme} {hs_token()}")])
    assert run(policy().authenticate(req))["user"] == "alice"


def test_missing_token_is_401_with_bearer_realm_and_no_error():
    err = refused(policy(), request())
    assert challenge(err) == b'Bearer realm="shop"'
    assert err.message == "bearer token required"


def test_invalid_token_is_401_with_invalid_token_error():
    err = refused(policy(), bearer("abc.def.ghi"))
    assert challenge(err) == b'Bearer realm="shop", error="invalid_token"'


def test_realm_quotes_are_escaped():
    err = refused(policy(realm='my "api"\\x'), request())
    assert challenge(err) == b'Bearer realm="my \\"api\\"\\\\x"'


def test_other_authorization_scheme_counts_as_no_token():
    err = refused(policy(), request([("authorization", "Basic YTpi")]))
    assert challenge(err) == b'Bearer realm="shop"'


def test_empty_bearer_value_is_an_invalid_token():
    err = refused(policy(), request([("authorization", "Bearer ")]))
    assert b"invalid_token" in challenge(err)


def test_token_cookie_is_read_when_configured():
    req = request([("cookie", f"theme=dark; session={hs_token()}")])
    assert run(policy(cookie="session").authenticate(req))["user"] == "alice"


def test_token_cookie_is_ignored_when_not_configured():
    err = refused(policy(), request([("cookie", f"session={hs_token()}")]))
    assert challenge(err) == b'Bearer realm="shop"'


def test_authorization_header_wins_over_the_cookie():
    req = request([("authorization", "Bearer not-a-token"), ("cookie", f"session={hs_token()}")])
    refused(policy(cookie="session"), req)


def test_repeated_token_cookie_is_refused():
    req = request([("cookie", f"session={hs_token()}; session={hs_token(sub='mallory')}")])
    err = refused(policy(cookie="session"), req)
    assert b"invalid_token" in challenge(err)
    assert err.message == "invalid token: sent more than once or empty"


def test_repeated_authorization_header_is_refused():
    req = request([("authorization", f"Bearer {hs_token()}"), ("authorization", f"Bearer {hs_token()}")])
    assert refused(policy(), req).message == "invalid token: sent more than once or empty"


def test_token_in_query_string_is_never_read():
    req = request(query=f"access_token={hs_token()}".encode())
    err = refused(policy(), req)
    assert challenge(err) == b'Bearer realm="shop"'


def test_oversized_token_is_refused_before_parsing():
    big = hs_token(pad="x" * MAX_TOKEN)
    err = refused(policy(), bearer(big))
    assert b"invalid_token" in challenge(err) and "too large" in err.message


# ---- claims --------------------------------------------------------------------------------------

def test_exp_is_required():
    token = jose_jwt.encode({"alg": "HS256"}, {"sub": "alice"}, OctKey.import_key(HS_KEY))
    assert "exp is required" in refused(policy(), bearer(token)).message


def test_expired_token_is_refused_after_the_leeway():
    token = hs_token(exp=NOW - 61)
    assert "expired" in refused(policy(), bearer(token)).message


def test_expired_token_within_the_leeway_is_accepted():
    assert run(policy().authenticate(bearer(hs_token(exp=NOW - 30))))["user"] == "alice"


def test_leeway_comes_from_the_secret():
    secret = JwtSecret("j", hs_key=HS_KEY, leeway=0)
    refused(policy(secret), bearer(hs_token(exp=NOW - 1)))


def test_not_before_in_the_future_is_refused():
    assert "not valid yet" in refused(policy(), bearer(hs_token(nbf=NOW + 120))).message


def test_not_before_within_the_leeway_is_accepted():
    run(policy().authenticate(bearer(hs_token(nbf=NOW + 30))))


def test_issued_in_the_future_is_refused():
    assert "future" in refused(policy(), bearer(hs_token(iat=NOW + 120))).message


@pytest.mark.parametrize("exp", ["1800000000", True, None, [NOW + 10], {"t": 1}])
def test_exp_of_the_wrong_type_is_refused(exp):
    refused(policy(), bearer(hs_token(exp=exp)))


def test_issuer_is_checked_when_the_secret_names_one():
    secret = JwtSecret("j", hs_key=HS_KEY, issuer="https://idp")
    run(policy(secret).authenticate(bearer(hs_token(iss="https://idp"))))
    assert "issuer" in refused(policy(secret), bearer(hs_token(iss="https://evil"))).message
    refused(policy(secret), bearer(hs_token()))


def test_issuer_is_not_checked_when_the_secret_names_none():
    run(policy().authenticate(bearer(hs_token(iss="anyone"))))


@pytest.mark.parametrize("aud", ["api", ["web", "api"]])
def test_audience_may_be_a_string_or_a_list(aud):
    secret = JwtSecret("j", hs_key=HS_KEY, audience="api")
    run(policy(secret).authenticate(bearer(hs_token(aud=aud))))


@pytest.mark.parametrize("aud", ["web", ["web"], None, 5, ["api", 5]])
def test_wrong_or_missing_audience_is_refused(aud):
    secret = JwtSecret("j", hs_key=HS_KEY, audience="api")
    claims = {} if aud is None else {"aud": aud}
    refused(policy(secret), bearer(hs_token(claims)))


def test_sub_must_be_a_string():
    refused(policy(), bearer(hs_token(sub=42)))


def test_token_without_sub_has_no_user():
    token = jose_jwt.encode({"alg": "HS256"}, {"exp": NOW + 10}, OctKey.import_key(HS_KEY))
    assert run(policy().authenticate(bearer(token)))["user"] is None


# ---- scopes from claims ---------------------------------------------------------------------------

@pytest.mark.parametrize("claims,scopes", [
    ({"scope": "read write"}, ["read", "write"]),
    ({"scp": ["read", "write"]}, ["read", "write"]),
    ({"scp": "read write"}, ["read", "write"]),
    ({"scopes": ["admin"]}, ["admin"]),
    ({"scope": "a", "scp": ["b"], "scopes": ["c"]}, ["a"]),
    ({"scp": ["b"], "scopes": ["c"]}, ["b"]),
    ({}, []),
])
def test_scopes_come_from_the_first_present_of_scope_scp_scopes(claims, scopes):
    assert run(policy().authenticate(bearer(hs_token(claims))))["scopes"] == scopes


@pytest.mark.parametrize("separator", ["\u00a0", "\t", "\n", "\u2003", "\u3000", "\x1f"])
def test_scopes_are_split_on_the_space_character_only(separator):
    # RFC 6749 section 3.3: scope tokens are separated by U+0020; "x<NBSP>read" is one odd token
    auth = run(policy().authenticate(bearer(hs_token(scope=f"x{separator}read"))))
    assert auth["scopes"] == [f"x{separator}read"]
    assert "read" not in auth["scopes"]


def test_repeated_spaces_between_scopes_give_no_empty_scope():
    assert run(policy().authenticate(bearer(hs_token(scope=" a  b "))))["scopes"] == ["a", "b"]


def test_scope_claim_named_by_the_secret_replaces_the_defaults():
    secret = JwtSecret("j", hs_key=HS_KEY, scope_claim="permissions")
    auth = run(policy(secret).authenticate(bearer(hs_token(permissions=["x:read"], scope="admin"))))
    assert auth["scopes"] == ["x:read"]
    assert run(policy(secret).authenticate(bearer(hs_token(scope="admin"))))["scopes"] == []


@pytest.mark.parametrize("value", [5, {"a": 1}, ["a", 1], True])
def test_scopes_of_the_wrong_type_are_refused(value):
    refused(policy(), bearer(hs_token(scope=value)))


# ---- algorithms are pinned by the secret ----------------------------------------------------------

def test_shared_key_defaults_to_hs256_only():
    token = hs_token(header={"alg": "HS512"})
    assert "not accepted" in refused(policy(), bearer(token)).message


def test_algorithms_of_the_secret_replace_the_default():
    secret = JwtSecret("j", hs_key=HS_KEY, algorithms=("HS512",))
    run(policy(secret).authenticate(bearer(hs_token(header={"alg": "HS512"}))))
    refused(policy(secret), bearer(hs_token()))


def _pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def _private_pem(private_key) -> bytes:
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(private_key, alg: str, claims: dict | None = None, header: dict | None = None) -> str:
    pem = _private_pem(private_key)
    cls = {"RS": RSAKey, "PS": RSAKey, "ES": ECKey, "Ed": OKPKey}[alg[:2]]
    key = cls.import_key(pem)
    return jose_jwt.encode({"alg": alg, **(header or {})}, {"sub": "alice", "exp": NOW + 60, **(claims or {})},
                           key, algorithms=[alg])


def test_rsa_public_key_defaults_to_rs256(rsa_key):
    secret = JwtSecret("j", public_pem=_pem(rsa_key))
    run(policy(secret).authenticate(bearer(_sign(rsa_key, "RS256"))))
    refused(policy(secret), bearer(_sign(rsa_key, "PS256")))
    refused(policy(secret), bearer(_sign(rsa_key, "RS512")))


def test_rsa_key_with_ps256_pinned(rsa_key):
    secret = JwtSecret("j", public_pem=_pem(rsa_key), algorithms=("PS256",))
    run(policy(secret).authenticate(bearer(_sign(rsa_key, "PS256"))))
    refused(policy(secret), bearer(_sign(rsa_key, "RS256")))


@pytest.mark.parametrize("curve,alg", [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384"),
                                       (ec.SECP521R1(), "ES512")])
def test_ec_keys_default_to_the_algorithm_of_their_curve(curve, alg):
    key = ec.generate_private_key(curve)
    run(policy(JwtSecret("j", public_pem=_pem(key))).authenticate(bearer(_sign(key, alg))))


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")   # from signing the test token
def test_ed25519_key_defaults_to_eddsa():
    key = ed25519.Ed25519PrivateKey.generate()
    run(policy(JwtSecret("j", public_pem=_pem(key))).authenticate(bearer(_sign(key, "EdDSA"))))


def test_private_key_secret_verifies_with_its_public_half():
    key = ec.generate_private_key(ec.SECP256R1())
    secret = JwtSecret("j", private_pem=_private_pem(key))
    assert run(policy(secret).authenticate(bearer(_sign(key, "ES256"))))["user"] == "alice"


def test_another_keys_signature_is_refused():
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    err = refused(policy(JwtSecret("j", public_pem=_pem(key))), bearer(_sign(other, "ES256")))
    assert "signature" in err.message


def test_rsa_public_key_used_as_hmac_secret_is_refused(rsa_key):
    """The classic confusion: HS256 'signed' with the server's public PEM."""
    pem = _pem(rsa_key)
    forged = raw_token('{"alg":"HS256"}', json.dumps({"sub": "admin", "exp": NOW + 60}), key=pem)
    refused(policy(JwtSecret("j", public_pem=pem)), bearer(forged))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case_is_refused(alg):
    header = b64(json.dumps({"alg": alg}).encode())
    payload = b64(json.dumps({"sub": "admin", "exp": NOW + 60}).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}.{b64(b'x')}"):
        refused(policy(), bearer(token))


def test_none_in_the_secret_is_a_load_error():
    with pytest.raises(ValueError):
        keyset_from_secret(JwtSecret("j", hs_key=HS_KEY, algorithms=("none",)))


# ---- hostile tokens: always 401, never another exception -------------------------------------------

def _deep(n: int) -> str:
    return "[" * n + "]" * n


HOSTILE = {
    "deep header": lambda: raw_token('{"alg":"HS256","x":' + _deep(2000) + "}", '{"exp":1800000000}'),
    "deep claims": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000,"x":' + _deep(2000) + "}"),
    "deep objects": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000,"x":' + '{"a":' * 900
                                      + "1" + "}" * 900 + "}"),
    "mildly deep claims": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000,"x":' + _deep(40) + "}"),
    "huge exp": lambda: raw_token('{"alg":"HS256"}', '{"exp":1e999}'),
    "huge int exp": lambda: raw_token('{"alg":"HS256"}', '{"exp":' + "9" * 5000 + "}"),
    "NaN exp": lambda: raw_token('{"alg":"HS256"}', '{"exp":NaN}'),
    "Infinity exp": lambda: raw_token('{"alg":"HS256"}', '{"exp":Infinity}'),
    "negative huge exp": lambda: raw_token('{"alg":"HS256"}', '{"exp":-1e400}'),
    "exp string": lambda: raw_token('{"alg":"HS256"}', '{"exp":"1800000000"}'),
    "exp bool": lambda: raw_token('{"alg":"HS256"}', '{"exp":true}'),
    "exp null": lambda: raw_token('{"alg":"HS256"}', '{"exp":null}'),
    "claims array": lambda: raw_token('{"alg":"HS256"}', "[1,2]"),
    "claims string": lambda: raw_token('{"alg":"HS256"}', '"x"'),
    "claims not json": lambda: raw_token('{"alg":"HS256"}', "not json"),
    "claims not utf-8": lambda: raw_token('{"alg":"HS256"}', b'{"exp":1800000000,"x":"\xff"}'),
    "lone surrogate": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000,"sub":"\\ud800"}'),
    "header array": lambda: raw_token('["HS256"]', '{"exp":1800000000}'),
    "header alg number": lambda: raw_token('{"alg":256}', '{"exp":1800000000}'),
    "header no alg": lambda: raw_token('{"typ":"JWT"}', '{"exp":1800000000}'),
    "header kid number": lambda: raw_token('{"alg":"HS256","kid":5}', '{"exp":1800000000}'),
    "duplicate header key": lambda: raw_token('{"alg":"HS256","alg":"HS256"}', '{"exp":1800000000}'),
    "duplicate alg smuggling": lambda: raw_token('{"alg":"none","alg":"HS256"}', '{"exp":1800000000}'),
    "duplicate claim": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000,"sub":"a","sub":"admin"}'),
    "embedded jwk": lambda: raw_token('{"alg":"HS256","jwk":{"kty":"oct","k":"' + b64(HS_KEY) + '"}}',
                                      '{"exp":1800000000}'),
    "jku": lambda: raw_token('{"alg":"HS256","jku":"http://127.0.0.1:1/keys"}', '{"exp":1800000000}'),
    "x5u": lambda: raw_token('{"alg":"HS256","x5u":"http://127.0.0.1:1/cert"}', '{"exp":1800000000}'),
    "x5c": lambda: raw_token('{"alg":"HS256","x5c":["MIIB"]}', '{"exp":1800000000}'),
    "crit": lambda: raw_token('{"alg":"HS256","crit":["exp"]}', '{"exp":1800000000}'),
    "crit empty": lambda: raw_token('{"alg":"HS256","crit":[]}', '{"exp":1800000000}'),
    "b64 false": lambda: raw_token('{"alg":"HS256","b64":false,"crit":["b64"]}', '{"exp":1800000000}'),
    "typ at+jwt": lambda: raw_token('{"alg":"HS256","typ":"at+jwt"}', '{"exp":1800000000}'),
    "typ number": lambda: raw_token('{"alg":"HS256","typ":1}', '{"exp":1800000000}'),
    "nested jwt": lambda: raw_token('{"alg":"HS256","cty":"JWT"}', '{"exp":1800000000}'),
    "two parts": lambda: "eyJhbGciOiJIUzI1NiJ9.e30",
    "four parts": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000}') + ".x",
    "five parts (JWE)": lambda: "a.b.c.d.e",
    "padding": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000}') + "=",
    "standard base64": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000}')[:-2] + "+/",
    "space inside": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000}').replace(".", ". ", 1),
    "non-ascii": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000}') + "\u00e9",
    "json serialization": lambda: '{"payload":"e30","signatures":[]}',
    "only dots": lambda: "..",
    "oversize": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000,"x":"' + "a" * 9000 + '"}'),
    "huge signature": lambda: raw_token('{"alg":"HS256"}', '{"exp":1800000000}')[:-5] + "A" * 7000,
}


def test_hostile_tokens_other_than_oversize_fit_under_the_size_cap():
    for name, make in HOSTILE.items():
        if name not in ("oversize", "huge signature"):
            assert len(make()) <= MAX_TOKEN, name


def test_json_nesting_limit_is_exact():
    from flowlet.security.jwt import MAX_JSON_DEPTH, strict_json
    assert strict_json(_deep(MAX_JSON_DEPTH).encode(), "x") is not None
    assert strict_json(('["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",' + _deep(MAX_JSON_DEPTH - 1) + "]").encode(), "x")
    with pytest.raises(InvalidToken):
        strict_json(_deep(MAX_JSON_DEPTH + 1).encode(), "x")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_token_is_a_401_and_nothing_else(name):
    err = refused(policy(clock=Clock(1_750_000_000)), bearer(HOSTILE[name]()))
    assert b"invalid_token" in challenge(err)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_token_raises_only_invalid_token_at_the_signature_layer(name):
    keyset = keyset_from_secret(JwtSecret("j", hs_key=HS_KEY))
    try:
        header, payload = verify_signature(HOSTILE[name](), keyset)
    except InvalidToken:
        return
    # Signature-valid ones must then fail on their claims (the policy test above proves the 401).
    from flowlet.security.jwt import check_claims, decode_claims
    with pytest.raises(InvalidToken):
        check_claims(decode_claims(payload), issuer=None, audience=None, leeway=60, now=1_750_000_000)


def test_well_formed_hand_made_token_passes():
    """The hand-made tokens above fail for their defect, not because raw_token is broken."""
    token = raw_token('{"alg":"HS256","typ":"JWT"}', '{"exp":1800000000,"sub":"bob"}')
    assert run(policy(clock=Clock(1_750_000_000)).authenticate(bearer(token)))["user"] == "bob"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "Jwt"])
def test_typ_jwt_in_any_case_is_accepted(typ):
    token = raw_token(json.dumps({"alg": "HS256", "typ": typ}), '{"exp":1800000000}')
    run(policy(clock=Clock(1_750_000_000)).authenticate(bearer(token)))


# ---- key sets and kid ---------------------------------------------------------------------------------

def _ec_jwks(*keys):
    return {"keys": [dict(ECKey.import_key(_private_pem(k)).as_dict(private=False), kid=kid) for kid, k in keys]}


def test_key_set_selects_the_key_by_kid():
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    secret = JwtSecret("j", jwks=_ec_jwks(("one", k1), ("two", k2)))
    assert run(policy(secret).authenticate(bearer(_sign(k2, "ES256", header={"kid": "two"}))))["user"] == "alice"
    refused(policy(secret), bearer(_sign(k2, "ES256", header={"kid": "one"})))


def test_kid_is_required_when_the_set_has_several_keys():
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    secret = JwtSecret("j", jwks=_ec_jwks(("one", k1), ("two", k2)))
    assert "kid required" in refused(policy(secret), bearer(_sign(k1, "ES256"))).message


def test_single_key_set_needs_no_kid_but_refuses_a_wrong_one():
    k1 = ec.generate_private_key(ec.SECP256R1())
    secret = JwtSecret("j", jwks=_ec_jwks(("one", k1)))
    run(policy(secret).authenticate(bearer(_sign(k1, "ES256"))))
    assert "unknown key" in refused(policy(secret), bearer(_sign(k1, "ES256", header={"kid": "x"}))).message


def test_pem_secret_ignores_the_kid():
    k1 = ec.generate_private_key(ec.SECP256R1())
    secret = JwtSecret("j", public_pem=_pem(k1))
    run(policy(secret).authenticate(bearer(_sign(k1, "ES256", header={"kid": "whatever"}))))


def test_encryption_keys_in_a_set_are_not_used_for_signatures():
    k1 = ec.generate_private_key(ec.SECP256R1())
    jwks = _ec_jwks(("one", k1))
    jwks["keys"][0]["use"] = "enc"
    with pytest.raises(ValueError):
        keyset_from_secret(JwtSecret("j", jwks=jwks))


# ---- the verified-token cache -----------------------------------------------------------------------

def test_cache_hit_skips_signature_verification():
    pol = policy()
    token = hs_token()
    run(pol.authenticate(bearer(token)))
    pol._v.keyset = keyset_from_secret(JwtSecret("x", hs_key=b"other key" * 4))
    assert run(pol.authenticate(bearer(token)))["user"] == "alice"         # from the cache
    refused(pol, bearer(hs_token(sub="bob")))                               # a new token is checked


def test_cached_token_stops_at_its_exp_plus_leeway():
    clock = Clock()
    pol = policy(clock=clock)
    token = hs_token(exp=NOW + 10)
    run(pol.authenticate(bearer(token)))
    clock.now = NOW + 10 + 59
    run(pol.authenticate(bearer(token)))
    clock.now = NOW + 10 + 60
    assert "expired" in refused(pol, bearer(token)).message


def test_cache_is_dropped_when_the_secret_changes():
    view = View(JwtSecret("j", hs_key=HS_KEY))
    pol = policy(view=view)
    token = hs_token()
    run(pol.authenticate(bearer(token)))
    view.put(JwtSecret("j", hs_key=b"rotated-key" * 3))
    refused(pol, bearer(token))
    run(pol.authenticate(bearer(hs_token(key=b"rotated-key" * 3))))


def test_issuer_added_to_the_secret_applies_to_cached_tokens():
    view = View(JwtSecret("j", hs_key=HS_KEY))
    pol = policy(view=view)
    token = hs_token()
    run(pol.authenticate(bearer(token)))
    view.put(JwtSecret("j", hs_key=HS_KEY, issuer="https://idp"))
    refused(pol, bearer(token))


def test_deleted_secret_refuses_at_request_time():
    view = View(JwtSecret("j", hs_key=HS_KEY))
    pol = policy(view=view)
    token = hs_token()
    run(pol.authenticate(bearer(token)))
    del view.secrets["j"]
    refused(pol, bearer(token))


def test_secret_turned_into_another_type_refuses():
    view = View(JwtSecret("j", hs_key=HS_KEY))
    pol = policy(view=view)
    view.put(ValueSecret("j", "x"))
    refused(pol, bearer(hs_token()))


def test_cache_is_bounded(monkeypatch):
    import flowlet.security.jwt as jwt_module
    monkeypatch.setattr(jwt_module, "CACHE_MAX", 5)
    pol = policy()
    for i in range(12):
        run(pol.authenticate(bearer(hs_token(sub=f"u{i}"))))
    assert len(pol._v.cache) <= 5


def _bulky_token(i: int, items: int = 1500) -> str:
    """A valid token just under MAX_TOKEN whose claims decode into thousands of objects."""
    return hs_token(sub=f"u{i}", x=[{}] * items)


def test_a_token_with_bulky_claims_is_verified_but_not_cached():
    pol = policy()
    token = _bulky_token(0)
    assert len(token) < MAX_TOKEN
    for _ in range(2):
        assert run(pol.authenticate(bearer(token)))["user"] == "u0"
    assert len(pol._v.cache) == 0


def test_a_flood_of_bulky_tokens_does_not_grow_memory():
    import gc
    import tracemalloc

    pol = policy()
    tokens = [_bulky_token(i) for i in range(600)]

    async def flood():
        for token in tokens:
            await pol.authenticate(bearer(token))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(flood())
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 8 << 20       # kept, these would hold about 90 KB each: over 50 MB


def test_cache_is_bounded_by_estimated_bytes(monkeypatch):
    import flowlet.security.jwt as jwt_module
    monkeypatch.setattr(jwt_module, "CACHE_MAX_BYTES", 256 << 10)
    pol = policy()
    for i in range(60):
        run(pol.authenticate(bearer(_bulky_token(i, items=100))))     # about 14 KB each, by estimate
    assert pol._v.cache.size <= 256 << 10
    assert 10 < len(pol._v.cache) < 40
    assert run(pol.authenticate(bearer(_bulky_token(59, items=100))))["user"] == "u59"


@pytest.mark.parametrize("claims", [
    {"x": [{}] * 1000}, {"x": [[]] * 1000}, {"x": list(range(1000, 2000))}, {"x": [1.5] * 1000},
    {f"k{i}": i for i in range(500)}, {"x": [f"s{i}" for i in range(800)]}, {"x": [[[[[]]]]] * 300},
    {"sub": "alice", "iss": "https://idp.example.com", "aud": "api", "scope": "read write"},
])
def test_the_size_estimate_is_not_far_below_what_an_entry_holds(claims):
    import tracemalloc

    from flowlet.security.expiring import ENTRY_OVERHEAD, json_cost
    from flowlet.security.jwt import decode_claims

    payload = json.dumps({"exp": NOW + 60, **claims}).encode()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [decode_claims(payload) for _ in range(20)]
        held = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert json_cost(payload) + ENTRY_OVERHEAD > held / 2


def test_endpoints_sharing_a_secret_share_one_verifier():
    view = View(JwtSecret("j", hs_key=HS_KEY))
    rt = AuthRuntime()
    a = JwtPolicy("j", realm="r", secrets=view, runtime=rt)
    b = JwtPolicy("j", realm="r", secrets=view, runtime=rt, token_cookie="c")
    assert a._v is b._v
    assert JwtPolicy("j", realm="r", secrets=view, runtime=AuthRuntime())._v is not a._v


# ---- jwks_url -------------------------------------------------------------------------------------------

@pytest.fixture
def jwks_server():
    """A real HTTP server that serves a JWK set (its ``body``) and counts requests."""
    server = JsonServer({"keys": []}, path="/jwks.json")
    yield server
    server.close()



def _url_policy(server, clock=None):
    view = View(JwtSecret("j", jwks_url=server.url))
    mono = Mono()
    pol = policy(view=view, clock=clock or Clock(), monotonic=mono)
    return pol, mono


def test_jwks_url_is_fetched_on_first_use_and_then_cached(jwks_server):
    k1 = ec.generate_private_key(ec.SECP256R1())
    jwks_server.body = _ec_jwks(("one", k1))
    pol, mono = _url_policy(jwks_server)

    async def scenario():
        for i in range(5):
            await pol.authenticate(bearer(_sign(k1, "ES256", {"n": i}, header={"kid": "one"})))
    run(scenario())
    assert len(jwks_server.hits) == 1


def test_unknown_kid_refreshes_once_then_waits_for_the_cooldown(jwks_server):
    k1, k2, k3 = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    jwks_server.body = _ec_jwks(("one", k1))
    pol, mono = _url_policy(jwks_server)

    async def scenario():
        await pol.authenticate(bearer(_sign(k1, "ES256", header={"kid": "one"})))
        mono.now += 31
        jwks_server.body = _ec_jwks(("one", k1), ("two", k2))
        auth = await pol.authenticate(bearer(_sign(k2, "ES256", header={"kid": "two"})))
        assert auth["user"] == "alice" and len(jwks_server.hits) == 2
        jwks_server.body = _ec_jwks(("one", k1), ("two", k2), ("three", k3))
        with pytest.raises(HTTPError):          # within the cooldown: no fetch, refused
            await pol.authenticate(bearer(_sign(k3, "ES256", header={"kid": "three"})))
        assert len(jwks_server.hits) == 2
        mono.now += 31
        await pol.authenticate(bearer(_sign(k3, "ES256", header={"kid": "three"})))
        assert len(jwks_server.hits) == 3
    run(scenario())


def test_last_good_keys_are_kept_while_the_url_is_down(jwks_server):
    k1 = ec.generate_private_key(ec.SECP256R1())
    jwks_server.body = _ec_jwks(("one", k1))
    pol, mono = _url_policy(jwks_server)

    async def scenario():
        await pol.authenticate(bearer(_sign(k1, "ES256", header={"kid": "one"})))
        jwks_server.status = 500
        mono.now += 301                      # a background refresh is due, and fails
        await pol.authenticate(bearer(_sign(k1, "ES256", {"n": 1}, header={"kid": "one"})))
        await asyncio.sleep(0.2)
        await pol.authenticate(bearer(_sign(k1, "ES256", {"n": 2}, header={"kid": "one"})))
    run(scenario())
    assert len(jwks_server.hits) == 2


def test_background_refresh_picks_up_new_keys(jwks_server):
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks_server.body = _ec_jwks(("one", k1))
    pol, mono = _url_policy(jwks_server)

    async def scenario():
        await pol.authenticate(bearer(_sign(k1, "ES256", header={"kid": "one"})))
        jwks_server.body = _ec_jwks(("two", k2))
        mono.now += 301
        await pol.authenticate(bearer(_sign(k1, "ES256", {"n": 1}, header={"kid": "one"})))  # old keys still
        for _ in range(50):
            if len(jwks_server.hits) == 2 and pol._v.fetched_at == mono.now:
                break
            await asyncio.sleep(0.02)
        assert set(pol._v.keyset.by_kid) == {"two"}
    run(scenario())


def test_unreachable_jwks_url_is_a_401_not_an_error():
    view = View(JwtSecret("j", jwks_url="http://127.0.0.1:9/none"))
    pol = policy(view=view)
    pol._v.fetch_timeout = 1.0
    err = refused(pol, bearer(hs_token()))
    assert b"invalid_token" in challenge(err)


def test_server_never_fetches_a_url_named_by_the_token(jwks_server):
    k1 = ec.generate_private_key(ec.SECP256R1())
    secret = JwtSecret("j", public_pem=_pem(k1))
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwks_server.body = _ec_jwks(("evil", attacker))
    for member in ("jku", "x5u"):
        token = _sign(attacker, "ES256", header={member: jwks_server.url, "kid": "evil"})
        refused(policy(secret), bearer(token))
    assert jwks_server.hits == []


def test_key_dropped_from_the_url_set_also_ends_cached_tokens(jwks_server):
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks_server.body = _ec_jwks(("one", k1), ("two", k2))
    pol, mono = _url_policy(jwks_server)
    old = _sign(k1, "ES256", header={"kid": "one"})

    async def scenario():
        await pol.authenticate(bearer(old))
        jwks_server.body = _ec_jwks(("two", k2))
        mono.now += 31
        with pytest.raises(HTTPError):          # unknown kid: refresh, still unknown
            await pol.authenticate(bearer(_sign(k2, "ES256", header={"kid": "three"})))
        with pytest.raises(HTTPError):          # the cached token of the dropped key is gone too
            await pol.authenticate(bearer(old))
    run(scenario())
    assert len(jwks_server.hits) == 2


# ---- the auth: block -------------------------------------------------------------------------------------

def auth_block(text: str):
    return load_yaml("auth:\n" + "".join("  " + line + "\n" for line in text.strip().splitlines()),
                     "flows/a.yaml")["auth"]


def test_parse_auth_jwt_with_everything():
    cfg = parse_auth(auth_block("type: jwt\nsecret: users-jwt\nscope: [a, b]\ntoken_cookie: session"))
    assert (cfg.type, cfg.secret, cfg.scope, cfg.token_cookie) == ("jwt", "users-jwt", ["a", "b"], "session")
    assert cfg.describe() == {"type": "jwt", "secret": "users-jwt", "scope": ["a", "b"], "token_cookie": "session"}


def test_parse_auth_none_is_open():
    cfg = parse_auth(auth_block("type: none"))
    assert cfg.type == "none" and not cfg.uses_auth and cfg.describe() is None
    assert compile_auth(cfg, realm="r", secrets=View(), runtime=AuthRuntime(), compile_expr=None) == (None, None)


@pytest.mark.parametrize("text,line,fragment", [
    ("type: jwt\nsecret: s\nscopes: a", 4, "unknown key 'scopes'"),
    ("secret: s", 2, "missing required key 'type'"),
    ("type: oauth\nsecret: s", 2, "must be one of none, basic, jwt"),
    ("type: jwt", 2, "missing required key 'secret'"),
    ("type: jwt\nsecret: 5", 3, "must be a string"),
    ("type: basic\nsecret: s\nscope: a", 4, "needs type jwt"),
    ("type: basic\nsecret: s\ntoken_cookie: c", 4, "needs type jwt"),
    ("type: basic\nsecret: s\nscope_expr: 'true'", 4, "needs type jwt"),
    ("type: jwt\nsecret: s\nscope: a\nscope_expr: 'true'", 5, "either 'scope' or 'scope_expr'"),
    ("type: jwt\nsecret: s\ntoken_cookie: 'a b'", 4, "invalid cookie name"),
    ("type: none\nsecret: s", 3, "no effect with type none"),
    ("type: jwt\nsecret: s\nscope: []", 4, "empty scope list"),
])
def test_parse_auth_errors_name_the_line(text, line, fragment):
    with pytest.raises(ConfigError) as err:
        parse_auth(auth_block(text))
    assert err.value.file == "flows/a.yaml" and err.value.line == line
    assert fragment in err.value.message


def _compile(text: str, view: View):
    import cel
    return compile_auth(parse_auth(auth_block(text)), realm="r", secrets=view, runtime=AuthRuntime(),
                        compile_expr=lambda src, where: cel.compile(src))


def test_compile_auth_builds_a_jwt_policy_and_its_scope():
    auth, scope = _compile("type: jwt\nsecret: j\nscope: a", View(JwtSecret("j", hs_key=HS_KEY)))
    assert isinstance(auth, JwtPolicy) and scope is not None


def test_compile_auth_missing_secret_is_a_load_error_at_the_secret_line():
    with pytest.raises(ConfigError) as err:
        _compile("type: jwt\nsecret: nope", View())
    assert err.value.line == 3 and "does not exist" in err.value.message
    assert "flowlet secrets set nope" in err.value.message


@pytest.mark.parametrize("secret", [BasicSecret("j", {}), ValueSecret("j", "v")])
def test_compile_auth_secret_of_the_wrong_type_is_a_load_error(secret):
    with pytest.raises(ConfigError) as err:
        _compile("type: jwt\nsecret: j", View(secret))
    assert err.value.line == 3 and "needs a jwt secret" in err.value.message


def test_compile_auth_unusable_key_is_a_load_error():
    with pytest.raises(ConfigError) as err:
        _compile("type: jwt\nsecret: j", View(JwtSecret("j", public_pem=b"-----BEGIN PUBLIC KEY-----\nxx\n")))
    assert err.value.line == 3


def test_compile_auth_algorithm_the_key_cannot_do_is_a_load_error():
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigError) as err:
        _compile("type: jwt\nsecret: j", View(JwtSecret("j", public_pem=_pem(key), algorithms=("RS256",))))
    assert "cannot verify RS256" in err.value.message


def test_error_messages_and_reprs_never_show_key_material():
    secret = JwtSecret("j", hs_key=HS_KEY)
    pol = policy(secret)
    err = refused(pol, bearer(hs_token(key=b"x" * 32)))
    for text in (err.message, repr(pol), repr(pol._v.keyset)):
        assert HS_KEY.decode() not in text and b64(HS_KEY) not in text


def test_open_auth_constant():
    assert OPEN_AUTH == {"type": "none", "user": None, "claims": {}, "scopes": []}


# ---- over HTTP, through the real server ---------------------------------------------------------------

def test_jwt_auth_and_scopes_over_http(tmp_path):
    import httpx

    from conftest import assert_json_error, flowlet, make_workspace, run_server

    ws = make_workspace(tmp_path, {
        "flowlet.yaml": "name: shop\n",
        "flows/orders.yaml": """
            endpoint:
              method: GET
              path: "/orders/{id:int}"
              auth:
                type: jwt
                secret: api
                scope: {any: [admin, "orders:read"]}
                token_cookie: session
            respond: {body: {user: "=auth.user", scopes: "=auth.scopes", id: "=params.id"}}
        """,
        "flows/users.yaml": """
            endpoint:
              method: GET
              path: "/users/{id:int}"
              auth: {type: jwt, secret: api, scope_expr: "'admin' in scopes || claims.sub == string(params.id)"}
            respond: {body: {ok: true}}
        """,
    })
    done = flowlet("secrets", "set", "api", "-w", str(ws), "--type", "jwt", "--hs-key-stdin", input="k" * 32)
    assert done.returncode == 0, done.stderr

    def token(*args: str) -> str:
        out = flowlet("token", "-w", str(ws), "--secret", "api", *args)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    reader, other = token("--sub", "7", "--scope", "orders:read"), token("--sub", "8", "--scope", "x")
    with run_server(ws) as srv:
        base = srv.url + "/api"
        resp = httpx.get(base + "/orders/1", headers={"authorization": f"Bearer {reader}"})
        assert resp.status_code == 200 and resp.json() == {"user": "7", "scopes": ["orders:read"], "id": 1}
        resp = httpx.get(base + "/orders/1", headers={"cookie": f"session={reader}"})
        assert resp.status_code == 200

        resp = httpx.get(base + "/orders/1")
        assert_json_error(resp, 401, "bearer token required")
        assert resp.headers["www-authenticate"] == 'Bearer realm="shop"'
        resp = httpx.get(base + "/orders/1", params={"access_token": reader})
        assert resp.headers["www-authenticate"] == 'Bearer realm="shop"'

        resp = httpx.get(base + "/orders/1", headers={"authorization": f"Bearer {other}"})
        assert_json_error(resp, 403, "insufficient scope")
        assert resp.headers["www-authenticate"] == 'Bearer realm="shop", error="insufficient_scope"'

        assert httpx.get(base + "/users/7", headers={"authorization": f"Bearer {reader}"}).status_code == 200
        assert_json_error(httpx.get(base + "/users/8", headers={"authorization": f"Bearer {reader}"}), 403)

        for name in ("deep claims", "alg none", "huge int exp", "duplicate alg smuggling", "embedded jwk"):
            bad = HOSTILE[name]() if name in HOSTILE else (
                b64(b'{"alg":"none"}') + "." + b64(b'{"sub":"7","scope":"admin","exp":9999999999}') + ".")
            resp = httpx.get(base + "/orders/1", headers={"authorization": f"Bearer {bad}"})
            assert_json_error(resp, 401)
            assert resp.headers["www-authenticate"] == 'Bearer realm="shop", error="invalid_token"'
    assert reader not in srv.stderr and "k" * 32 not in srv.stderr

