"""Changes to secrets that both the CLI and the console make, with one set of rules.

Every function validates its input first and raises :class:`EditError` with a message fit for
a user (never echoing secret material), then writes in one store transaction.
"""

from __future__ import annotations

import json

from flowlet.secrets import crypto
from flowlet.secrets.model import BasicSecret, JwtSecret, Secret, valid_name
from flowlet.secrets.store import Store

MAX_MATERIAL = 1 << 20            # bytes of a password, key or key set


class EditError(ValueError):
    """A change refused by the rules; the message names the problem, never a value."""


def check_name(name: str) -> None:
    if not valid_name(name):
        raise EditError(f"invalid secret name {name!r}: use letters, digits, '.', '_' and '-', "
                        "starting with a letter or digit (at most 128 characters)")


def check_user(user: str) -> None:
    # RFC 7617: the user-id cannot contain a colon; control characters are never valid
    if not user or ":" in user or any(ord(c) < 32 or ord(c) == 127 for c in user):
        raise EditError("a user name must be non-empty, without ':' or control characters")


def same_type(current: Secret | None, name: str, type_: str) -> Secret | None:
    """Setting a secret replaces one of the same type; changing the type needs a delete first."""
    if current is not None and current.type != type_:
        raise EditError(f"secret {name!r} is a {current.type} secret; delete it first to "
                        f"make it a {type_} secret")
    return current


def add_user(store: Store, name: str, user: str, password: str) -> tuple[bool, int]:
    """Add or replace one user of a Basic secret (created when absent) -> (replaced, users)."""
    check_name(name)
    check_user(user)
    if not password:
        raise EditError("the password is empty")
    if len(password.encode("utf-8")) > MAX_MATERIAL:
        raise EditError(f"the password is longer than {MAX_MATERIAL} bytes")
    from argon2 import PasswordHasher

    password_hash = PasswordHasher().hash(password)   # before the write transaction: it stays short
    replaced = False

    def change(current: Secret | None) -> Secret:
        nonlocal replaced
        users = dict(same_type(current, name, "basic").users) if current else {}
        replaced = user in users
        users[user] = password_hash
        return BasicSecret(name, users)

    secret = store.update(name, change)
    return replaced, len(secret.users)


def remove_user(store: Store, name: str, user: str) -> int:
    """Remove one user of a Basic secret -> users left. The last user is never removed:
    a Basic secret without users refuses everyone, which is what deleting it says plainly."""
    check_name(name)

    def change(current: Secret | None) -> Secret:
        if current is None:
            raise EditError(f"no secret named {name!r}")
        if not isinstance(current, BasicSecret):
            raise EditError(f"secret {name!r} is a {current.type} secret, not a basic secret")
        if user not in current.users:
            raise EditError(f"secret {name!r} has no user {user!r}")
        if len(current.users) == 1:
            raise EditError(f"{user!r} is the last user of {name!r}; delete the secret instead "
                            f"(flowlet secrets delete {name})")
        users = dict(current.users)
        del users[user]
        return BasicSecret(name, users)

    return len(store.update(name, change).users)


def jwt_from_text(name: str, material: str, *, issuer: str | None = None, audience: str | None = None,
                  algorithms: str | None = None, leeway: int = 60) -> JwtSecret:
    """A JWT secret from pasted key material: a PEM public key or certificate, a PEM private
    key (signs `flowlet token`), or a JWK Set as JSON."""
    check_name(name)
    data = material.strip().encode("utf-8")
    if not data:
        raise EditError("paste a PEM key or a JWK Set")
    if len(data) > MAX_MATERIAL:
        raise EditError(f"the key is larger than {MAX_MATERIAL} bytes")
    try:
        requested = crypto.parse_algorithms(algorithms) if algorithms else None
        options = dict(issuer=issuer or None, audience=audience or None, leeway=leeway)
        if b"PRIVATE KEY-----" in data:
            pem, algs = crypto.load_private_pem(data, requested)
            return JwtSecret(name, private_pem=pem, algorithms=algs, **options)
        if data.startswith(b"-----BEGIN"):
            pem, algs = crypto.load_public_pem(data, requested)
            return JwtSecret(name, public_pem=pem, algorithms=algs, **options)
        try:
            doc = json.loads(data)
        except ValueError:
            raise EditError("the key is neither PEM (-----BEGIN ...) nor a JSON JWK Set") from None
        jwks, algs = crypto.load_jwks(doc, requested)
        return JwtSecret(name, jwks=jwks, algorithms=algs, **options)
    except crypto.KeyMaterialError as exc:
        raise EditError(str(exc)) from None


def set_jwt(store: Store, secret: JwtSecret) -> None:
    """Create or replace a JWT secret (never another type's secret of that name)."""

    def change(current: Secret | None) -> Secret:
        same_type(current, secret.name, "jwt")
        return secret

    store.update(secret.name, change)
