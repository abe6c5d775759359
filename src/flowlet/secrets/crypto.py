"""Cryptography for the secrets store: the AES-256-GCM envelope and JWT key inspection.

The envelope seals every stored value under the master key. The associated data binds a
ciphertext to the row it belongs to (kind, name, type), so a value copied under another
name or type does not decrypt.

JWT key inspection runs when a secret is set: it parses the key material, checks it is fit
for the algorithms asked for (or picks the algorithms the key implies), and computes key ids
(RFC 7638 thumbprints). Messages never include key material.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import Key

from flowlet.jose import (HS_MIN_BYTES, RSA_MIN_BITS, SUPPORTED_ALGORITHMS, import_jwk, import_oct,
                          import_pem, key_algorithms, load_pem_public, looks_private, native_key_type)
from flowlet.secrets.model import JwtSecret

# ---- the envelope --------------------------------------------------------------------------

_FORMAT = b"\x01"  # first byte of every sealed value; room for a future format
_NONCE_BYTES = 12  # 96-bit random nonce per write (NIST SP 800-38D)
_TAG_BYTES = 16


class DecryptError(Exception):
    """A sealed value did not open: wrong key, wrong row, or damaged bytes."""


def associated_data(*parts: str) -> bytes:
    """Unambiguous associated data for a row, e.g. ("secret", name, type)."""
    return json.dumps(list(parts), separators=(",", ":")).encode("utf-8")


class Envelope:
    """AES-256-GCM under the master key; the key itself is never shown."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        blob = bytes(blob)
        if len(blob) < 1 + _NONCE_BYTES + _TAG_BYTES or blob[:1] != _FORMAT:
            raise DecryptError("not a sealed value")
        nonce = blob[1:1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptError("authentication failed") from None

    def __repr__(self) -> str:
        return "Envelope(AES-256-GCM)"


# ---- JWT key material ----------------------------------------------------------------------

class KeyMaterialError(ValueError):
    """Key material that cannot be used as asked; the message is safe to print."""


def parse_algorithms(text: str) -> tuple[str, ...]:
    """``"RS256, ES256"`` -> ("RS256", "ES256"); unknown names are errors."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise KeyMaterialError("--algorithms is empty")
    for name in names:
        if name not in SUPPORTED_ALGORITHMS:
            raise KeyMaterialError(
                f"unknown or unsupported algorithm {name!r} "
                f"(supported: {', '.join(SUPPORTED_ALGORITHMS)})")
    return names


def _pick(requested: tuple[str, ...] | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The requested algorithms if the key allows them all, else the key's default."""
    if not requested:
        return allowed[:1]
    for name in requested:
        if name not in allowed:
            raise KeyMaterialError(f"algorithm {name} cannot be used with {what} "
                                   f"(it allows {', '.join(allowed)})")
    return requested


def hs_algorithms(key: bytes, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """Algorithms for a shared key; each needs a key at least as long as its hash."""
    if not key:
        raise KeyMaterialError("the shared key is empty")
    algorithms = _pick(requested, tuple(HS_MIN_BYTES), "a shared key")
    for name in algorithms:
        if len(key) < HS_MIN_BYTES[name]:
            raise KeyMaterialError(
                f"{name} needs a shared key of at least {HS_MIN_BYTES[name]} bytes "
                f"(RFC 7518 section 3.2); this one has {len(key)}")
    return algorithms


def _public_allowed(public_key: PublicKeyTypes) -> tuple[tuple[str, ...], str]:
    """(allowed algorithms, default first; a description) for a cryptography public key."""
    kty, curve = native_key_type(public_key)
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < RSA_MIN_BITS:
        raise KeyMaterialError(f"RSA keys must have at least {RSA_MIN_BITS} bits; "
                               f"this one has {public_key.key_size}")
    allowed = key_algorithms(kty, curve)
    if allowed:
        return allowed, "an RSA key" if kty == "RSA" else f"{'an' if kty == 'OKP' else 'a'} {curve} key"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        raise KeyMaterialError(f"EC curve {public_key.curve.name} is not supported "
                               "(use P-256, P-384 or P-521)")
    raise KeyMaterialError(f"unsupported key type {type(public_key).__name__} "
                           "(use RSA, EC P-256/P-384/P-521 or Ed25519)")


def load_public_pem(data: bytes, requested: tuple[str, ...] | None = None,
                    what: str = "the public key") -> tuple[bytes, tuple[str, ...]]:
    """A PEM public key (or certificate) -> (normalized SubjectPublicKeyInfo PEM, algorithms)."""
    if looks_private(data):
        raise KeyMaterialError(f"{what} is a private key; use --private-key for signing keys")
    try:
        public_key = load_pem_public(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"{what} is not a PEM public key or certificate") from None
    allowed, desc = _public_allowed(public_key)
    algorithms = _pick(requested, allowed, desc)
    pem = public_key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, algorithms


def load_private_pem(data: bytes, requested: tuple[str, ...] | None = None,
                     what: str = "the private key") -> tuple[bytes, tuple[str, ...]]:
    """A PEM private key -> (normalized unencrypted PKCS#8 PEM, algorithms)."""
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyMaterialError(f"{what} is encrypted; decrypt it first "
                               "(for example: openssl pkey -in KEY.pem -out plain.pem)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"{what} is not a PEM private key") from None
    allowed, desc = _public_allowed(private_key.public_key())
    algorithms = _pick(requested, allowed, desc)
    pem = private_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return pem, algorithms


def algorithms_for_jwk(key: dict) -> tuple[str, ...]:
    """Algorithms one (public) JWK may verify: its ``alg`` if given, else what kty/crv imply.

    Raises KeyMaterialError for keys that cannot verify signatures here.
    """
    if not isinstance(key, dict):
        raise KeyMaterialError("is not a JSON object")
    kty = key.get("kty")
    if kty == "oct":
        raise KeyMaterialError("a key set holds public keys only; use --hs-key-stdin for shared keys")
    if kty not in ("RSA", "EC", "OKP"):
        raise KeyMaterialError(f"has unsupported key type {kty!r}")
    if "d" in key:
        raise KeyMaterialError("contains private key material; a key set holds public keys only")
    if key.get("use") not in (None, "sig"):
        raise KeyMaterialError(f"is for use {key.get('use')!r}, not signatures")
    try:
        imported = import_jwk(key)
        public_key = imported.raw_value
    except Exception:  # joserfc raises many kinds; all mean "not a usable key"
        raise KeyMaterialError("is not a valid JWK") from None
    if imported.is_private:
        raise KeyMaterialError("contains private key material; a key set holds public keys only")
    allowed, desc = _public_allowed(public_key)
    alg = key.get("alg")
    if alg is None:
        return allowed
    if alg not in allowed:
        raise KeyMaterialError(f"has alg {alg!r}, which cannot be used with {desc}")
    return (alg,)


def load_jwks(data: Any, requested: tuple[str, ...] | None = None) -> tuple[dict, tuple[str, ...]]:
    """Validate a JWK Set -> (the set, algorithms).

    Default algorithms: each key's ``alg``, else the default its type implies, in key order.
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise KeyMaterialError('the key set must be a JSON object {"keys": [...]} with at least one key')
    keys = data["keys"]
    allowed: list[str] = []
    defaults: list[str] = []
    kids: set[str] = set()
    for i, key in enumerate(keys, 1):
        label = f"key #{i}"
        if isinstance(key, dict) and isinstance(key.get("kid"), str):
            label += f" (kid {key['kid']!r})"
        try:
            key_algorithms = algorithms_for_jwk(key)
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"the key set's {label} {exc}") from None
        kid = key.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise KeyMaterialError(f"the key set's {label} has a kid that is not a string")
        if len(keys) > 1 and not kid:
            raise KeyMaterialError(f"the key set's {label} has no kid; with several keys each "
                                   "needs a kid so tokens can select it")
        if kid in kids:
            raise KeyMaterialError(f"the key set has two keys with kid {kid!r}")
        kids.add(kid)
        allowed.extend(key_algorithms)
        defaults.append(key_algorithms[0])
    allowed_t = tuple(dict.fromkeys(allowed))
    algorithms = _pick(requested, allowed_t, "this key set") if requested else tuple(dict.fromkeys(defaults))
    return {"keys": [dict(key) for key in keys]}, algorithms


def check_jwks_url(url: str) -> str:
    """A key set URL must be https, or http to this machine (development)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.username is not None or parts.password is not None:
        raise KeyMaterialError("the key set URL must not contain credentials")
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host in ("localhost", "127.0.0.1", "::1"):
        return url
    raise KeyMaterialError("the key set URL must use https:// (http:// only for localhost)")


# ---- key ids and signing -------------------------------------------------------------------

def key_ids(secret: JwtSecret) -> list[str]:
    """Key ids a `secrets list` shows: thumbprints (RFC 7638) of PEM keys, kids of a key set."""
    if secret.private_pem is not None or secret.public_pem is not None:
        return [import_pem(secret.private_pem or secret.public_pem).thumbprint()]
    if secret.jwks is not None:
        return [k["kid"] for k in secret.jwks.get("keys", []) if isinstance(k, dict) and k.get("kid")]
    return []


def signing_key(secret: JwtSecret) -> tuple[Key, str | None]:
    """The joserfc key `flowlet token` signs with, and the kid for the header (or None)."""
    if secret.hs_key is not None:
        return import_oct(secret.hs_key), None
    if secret.private_pem is not None:
        key = import_pem(secret.private_pem, public=False)
        return key, key.thumbprint()
    raise KeyMaterialError(f"secret {secret.name!r} holds only verification keys and cannot sign "
                           "tokens; set it with --hs-key-stdin or --private-key")
