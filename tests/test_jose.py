"""One JOSE table: the secrets store and the JWT policy agree on every algorithm and key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from flowlet.jose import SUPPORTED_ALGORITHMS, import_pem, key_algorithms
from flowlet.secrets import crypto
from flowlet.secrets.model import JwtSecret
from flowlet.security.jwt import keyset_from_jwks, keyset_from_secret
from test_auth_jwt import _pem as _public_pem
from test_auth_jwt import _private_pem

KEYS = {
    "RSA": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "P-256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "P-384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "P-521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "Ed25519": ed25519.Ed25519PrivateKey.generate,
    "Ed448": ed448.Ed448PrivateKey.generate,
}


@pytest.fixture(scope="module", params=list(KEYS))
def key(request):
    return request.param, KEYS[request.param]()


def test_the_store_and_the_policy_pick_the_same_default_algorithm(key):
    _name, private_key = key
    _pem, stored = crypto.load_public_pem(_public_pem(private_key))
    pinned = keyset_from_secret(JwtSecret("j", public_pem=_public_pem(private_key))).keys[0]
    assert stored == tuple(pinned.algs)


def test_every_algorithm_the_store_allows_for_a_key_the_policy_can_verify(key):
    _name, private_key = key
    kty, curve = ("RSA", None) if _name == "RSA" else (("OKP" if _name.startswith("Ed") else "EC"), _name)
    for alg in key_algorithms(kty, curve):
        _pem, stored = crypto.load_public_pem(_public_pem(private_key), (alg,))
        pinned = keyset_from_secret(JwtSecret("j", public_pem=_public_pem(private_key), algorithms=stored))
        assert tuple(pinned.keys[0].algs) == (alg,)


def test_shared_keys_allow_the_hs_family_in_both():
    assert crypto.hs_algorithms(b"k" * 64, ("HS256", "HS384", "HS512")) == key_algorithms("oct")
    pinned = keyset_from_secret(JwtSecret("j", hs_key=b"k" * 64, algorithms=key_algorithms("oct")))
    assert tuple(pinned.keys[0].algs) == ("HS256", "HS384", "HS512")


def test_secp256k1_is_refused_by_both():
    assert "ES256K" not in SUPPORTED_ALGORITHMS
    with pytest.raises(crypto.KeyMaterialError):
        crypto.parse_algorithms("ES256K")
    with pytest.raises(ValueError, match="unsupported algorithm"):
        keyset_from_secret(JwtSecret("j", hs_key=b"k" * 32, algorithms=("ES256K",)))
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(crypto.KeyMaterialError, match="not supported"):
        crypto.load_public_pem(_public_pem(k1))
    jwk = {"kty": "EC", "crv": "secp256k1", "alg": "ES256K", "x": "A" * 43, "y": "A" * 43}
    assert len(keyset_from_jwks({"keys": [jwk]})) == 0


def test_import_pem_gives_the_public_half_unless_asked_for_the_private_key(key):
    _name, private_key = key
    from_private = import_pem(_private_pem(private_key))
    from_public = import_pem(_public_pem(private_key))
    assert not from_private.is_private and from_private.thumbprint() == from_public.thumbprint()
    signing = import_pem(_private_pem(private_key), public=False)
    assert signing.is_private and signing.thumbprint() == from_public.thumbprint()


def test_key_ids_and_signing_keys_use_the_same_importer(key):
    _name, private_key = key
    secret = JwtSecret("j", private_pem=_private_pem(private_key))
    signing, kid = crypto.signing_key(secret)
    assert crypto.key_ids(secret) == [kid] and signing.is_private
