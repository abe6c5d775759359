"""JOSE facts shared by the secrets store (checks key material when a secret is set) and the
JWT policy (verifies tokens): which algorithms exist here, which a key may use, and how PEM
and JWK material becomes a joserfc key. One table, so a secret the store accepts is a secret
the policy can use, and the reverse.

secp256k1 (ES256K) is not supported: the JWS algorithms here are those of RFC 7518 and
RFC 8037 for the curves P-256, P-384, P-521, Ed25519 and Ed448.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from joserfc.jwk import ECKey, JWKRegistry, Key, OctKey, OKPKey, RSAKey

HS_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2: key >= hash size
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
OKP_ALGORITHMS = {"Ed25519": ("EdDSA", "Ed25519"), "Ed448": ("EdDSA", "Ed448")}
SUPPORTED_ALGORITHMS = (tuple(HS_MIN_BYTES) + RSA_ALGORITHMS + tuple(EC_ALGORITHMS.values())
                        + ("EdDSA", "Ed25519", "Ed448"))
RSA_MIN_BITS = 2048  # RFC 7518 3.3

# cryptography's curve names -> JOSE's
_EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def key_algorithms(kty: str, curve: str | None = None) -> tuple[str, ...]:
    """Every algorithm a key of type ``kty`` (and ``curve``) may verify, the default first;
    ``()`` for a key that verifies nothing here."""
    if kty == "oct":
        return tuple(HS_MIN_BYTES)
    if kty == "RSA":
        return RSA_ALGORITHMS
    if kty == "EC":
        alg = EC_ALGORITHMS.get(curve or "")
        return (alg,) if alg else ()
    if kty == "OKP":
        return OKP_ALGORITHMS.get(curve or "", ())
    return ()


def native_key_type(public_key: PublicKeyTypes) -> tuple[str, str | None]:
    """``(kty, curve)`` of a cryptography public key, in JOSE's names (curve None if unknown)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", _EC_CURVES.get(public_key.curve.name)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "OKP", "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "OKP", "Ed448"
    return type(public_key).__name__, None


def looks_private(pem: bytes) -> bool:
    return b"PRIVATE KEY-----" in pem


def load_pem_public(pem: bytes) -> PublicKeyTypes:
    """The cryptography public key of a PEM public key, certificate, or private key.

    Raises ValueError, TypeError (an encrypted private key) or UnsupportedAlgorithm.
    """
    if looks_private(pem):
        return serialization.load_pem_private_key(pem, password=None).public_key()
    if b"-----BEGIN CERTIFICATE-----" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


def import_pem(pem: bytes, *, public: bool = True) -> Key:
    """A joserfc key from PEM: the public key (also of a certificate or a private key), or
    with ``public=False`` the private key itself (for signing)."""
    native = load_pem_public(pem)
    kty, _curve = native_key_type(native)
    cls = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}.get(kty)
    if cls is None:
        raise ValueError(f"unsupported key type {kty}")
    if not public:
        return cls.import_key(pem)
    return cls.import_key(native.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def import_jwk(jwk: dict) -> Key:
    return JWKRegistry.import_key(jwk)


def import_oct(raw: bytes) -> OctKey:
    return OctKey.import_key(bytes(raw))
