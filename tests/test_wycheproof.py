"""Published JWS vectors through the verifier the JWT policy uses.

How the vectors reach the policy's code: every JWT request goes through
``flowlet.security.jwt.verify_signature(token, keyset)`` (format, header refusals, key choice,
pinned algorithms, signature) and only then through the claim checks. Wycheproof tokens carry
no ``exp`` (many payloads are not even JSON), so they are run at that signature layer, with a
key set built exactly as the policy builds it from a secret:

- form ``jwks``: the group's JWK as ``JwtSecret(jwks={"keys": [jwk]})`` -- its kid, alg, use
  and key_ops all count;
- form ``pem``: where the JWK carries no use/key_ops restriction, the same key as a secret an
  operator would type: ``--public-key FILE.pem`` (or ``--hs-key-stdin``) with
  ``--algorithms <the JWK's alg>`` when that alg is a JWS algorithm.

A valid vector must verify; an invalid one must raise an HTTPError (401) and nothing else.
Vectors whose stated result contradicts the same file are listed in ERRATA with the reason,
and the opposite outcome is asserted, so any change of behaviour shows up.

The RFC 7515 appendix A.1-A.3 and RFC 8037 A.4 examples run the same way, and A.1 also
end to end through JwtPolicy with the clock set before its ``exp``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import JWKRegistry

from flowlet.errors import HTTPError
from flowlet.secrets.model import JwtSecret
from flowlet.jose import SUPPORTED_ALGORITHMS
from flowlet.security.jwt import InvalidToken, JwtPolicy, keyset_from_jwks, keyset_from_secret, verify_signature
from flowlet.security.runtime import AuthRuntime
from fakes import View, refused, request, run

VECTORS = Path(__file__).parent / "data" / "wycheproof_json_web_signature_test.json"
DATA = json.loads(VECTORS.read_text())

ERRATA = {
    # The key's JWK says alg PS256 and the token is PS384. Keys are pinned to their JWK alg, as
    # tcIds 332-340 of this file require (a PS512 key must refuse RS256/PS256/PS384 tokens that
    # verify), so this one is refused too.
    ("jwks", 346): "refuse", ("jwks", 350): "refuse", ("pem", 346): "refuse",
    # The JWK says alg "ES521", which is no JWS algorithm (P-521 is ES512); joserfc will not use
    # the key for anything else. As a PEM secret (default algorithm by curve: ES512) it verifies.
    ("jwks", 347): "refuse", ("jwks", 351): "refuse",
    # Byte-identical to tcId 357, which is valid; the "invalid padding" was lost upstream.
    ("jwks", 367): "accept", ("jwks", 370): "accept", ("pem", 367): "accept", ("pem", 370): "accept",
    # Marked valid, but contain "?", which base64url (RFC 7515 section 2) does not have; the MAC
    # is 357's, so accepting needs a decoder that skips foreign characters. Refused.
    ("jwks", 372): "refuse", ("jwks", 373): "refuse", ("pem", 372): "refuse", ("pem", 373): "refuse",
}


def _verification_jwk(group: dict) -> dict:
    return group.get("public") or group["private"]


def _pem_form_ok(jwk: dict) -> bool:
    return jwk.get("use") in (None, "sig") and "key_ops" not in jwk


def _secret(form: str, jwk: dict) -> JwtSecret:
    if form == "jwks":
        return JwtSecret("wycheproof", jwks={"keys": [jwk]})
    key = JWKRegistry.import_key(jwk)
    alg = jwk.get("alg")
    algorithms = (alg,) if alg in SUPPORTED_ALGORITHMS else ()
    if key.key_type == "oct":
        return JwtSecret("wycheproof", hs_key=key.raw_value, algorithms=algorithms)
    pem = key.public_key.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return JwtSecret("wycheproof", public_pem=pem, algorithms=algorithms)


def _keyset(form: str, jwk: dict):
    """The key set the policy would use; a key set unusable as a whole is refused at load time
    (ValueError -> ConfigError), and at request time it verifies nothing."""
    secret = _secret(form, jwk)
    try:
        return keyset_from_secret(secret)
    except ValueError:
        return keyset_from_jwks(secret.jwks or {"keys": []})


def _cases():
    for group in DATA["testGroups"]:
        jwk = _verification_jwk(group)
        forms = ["jwks"] + (["pem"] if _pem_form_ok(jwk) else [])
        for form in forms:
            for test in group["tests"]:
                yield pytest.param(form, jwk, test, id=f"{form}-{test['tcId']}-{test['comment']}")


def _outcome(token: str, keyset) -> str:
    try:
        verify_signature(token, keyset)
    except HTTPError as exc:
        assert exc.status == 401 and isinstance(exc, InvalidToken)
        return "refuse"
    return "accept"


@pytest.mark.parametrize("form,jwk,test", list(_cases()))
def test_wycheproof_vector(form, jwk, test):
    keyset = _keyset(form, jwk)
    expected = "accept" if test["result"] == "valid" else "refuse"
    expected = ERRATA.get((form, test["tcId"]), expected)
    assert _outcome(test["jws"], keyset) == expected


def test_every_vector_is_run():
    assert DATA["numberOfTests"] == sum(len(g["tests"]) for g in DATA["testGroups"]) == 401
    assert len(list(_cases())) > 401


def test_errata_are_what_they_claim():
    cases = {(p.values[0], p.values[2]["tcId"]) for p in _cases()}
    assert set(ERRATA) <= cases
    tests = {t["tcId"]: t for g in DATA["testGroups"] for t in g["tests"]}
    assert tests[367]["jws"] == tests[370]["jws"] == tests[357]["jws"]
    assert tests[357]["result"] == "valid" and tests[367]["result"] == tests[370]["result"] == "invalid"
    assert "?" in tests[372]["jws"] and "?" in tests[373]["jws"]


def test_keys_restricted_to_encryption_cannot_make_a_secret():
    for group in DATA["testGroups"]:
        jwk = _verification_jwk(group)
        if jwk.get("use") == "enc" or ("key_ops" in jwk and "verify" not in jwk["key_ops"]):
            with pytest.raises(ValueError):
                keyset_from_secret(JwtSecret("enc", jwks={"keys": [jwk]}))


# ---- RFC examples ------------------------------------------------------------------------------

RFC7515_PAYLOAD = ("eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
                   "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ")

RFC_VECTORS = {
    "rfc7515-A.1-HS256": (
        {"kty": "oct", "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"},
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." + RFC7515_PAYLOAD
        + ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    "rfc7515-A.2-RS256": (
        {"kty": "RSA",
         "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-"
              "yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-"
              "KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9"
              "iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
         "e": "AQAB"},
        "eyJhbGciOiJSUzI1NiJ9." + RFC7515_PAYLOAD + "."
        "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr"
        "7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--"
        "xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_"
        "IoypGlUPQGe77Rw"),
    "rfc7515-A.3-ES256": (
        {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        "eyJhbGciOiJFUzI1NiJ9." + RFC7515_PAYLOAD + "."
        "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"),
    "rfc8037-A.4-Ed25519": (
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"),
}


def _rfc_secret(jwk: dict) -> JwtSecret:
    """The key as an operator would store it: a shared key, or a PEM public key (default algorithms)."""
    key = JWKRegistry.import_key(jwk)
    if key.key_type == "oct":
        return JwtSecret("rfc", hs_key=key.raw_value)
    pem = key.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return JwtSecret("rfc", public_pem=pem)


@pytest.mark.parametrize("name", sorted(RFC_VECTORS))
def test_rfc_example_verifies_with_default_algorithms(name):
    jwk, token = RFC_VECTORS[name]
    header, payload = verify_signature(token, keyset_from_secret(_rfc_secret(jwk)))
    assert header["alg"] in ("HS256", "RS256", "ES256", "EdDSA")
    if name.startswith("rfc8037"):
        assert payload == b"Example of Ed25519 signing"
    else:
        assert json.loads(payload)["iss"] == "joe"


@pytest.mark.parametrize("name", sorted(RFC_VECTORS))
def test_rfc_example_with_one_changed_signature_byte_is_refused(name):
    jwk, token = RFC_VECTORS[name]
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 1
    forged = f"{head}.{payload}." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        verify_signature(forged, keyset_from_secret(_rfc_secret(jwk)))


@pytest.mark.parametrize("name", sorted(RFC_VECTORS))
def test_rfc_example_is_refused_under_another_pinned_algorithm(name):
    jwk, token = RFC_VECTORS[name]
    secret = _rfc_secret(jwk)
    other = {"oct": "HS512", "RSA": "PS256", "EC": "ES384", "OKP": "Ed25519"}[jwk["kty"]]
    pinned = JwtSecret("rfc", hs_key=secret.hs_key, public_pem=secret.public_pem, algorithms=(other,))
    if jwk["kty"] == "EC":      # a P-256 key verifies ES256 only: pinning ES384 is a load error
        with pytest.raises(ValueError):
            keyset_from_secret(pinned)
        return
    with pytest.raises(InvalidToken):
        verify_signature(token, keyset_from_secret(pinned))


def test_rfc7515_a1_passes_the_whole_policy_before_its_exp():
    jwk, token = RFC_VECTORS["rfc7515-A.1-HS256"]

    view = View(_rfc_secret(jwk))
    bearer = request([("authorization", f"Bearer {token}")])

    before = JwtPolicy("rfc", realm="r", secrets=view, runtime=AuthRuntime(clock=lambda: 1300819380 - 100))
    auth = run(before.authenticate(bearer))
    assert auth == {"type": "jwt", "user": None, "scopes": [],
                    "claims": {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True}}
    after = JwtPolicy("rfc", realm="r", secrets=view, runtime=AuthRuntime(clock=lambda: 1300819380 + 61))
    assert "expired" in refused(after, bearer).message
