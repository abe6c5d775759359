"""The three kinds of secret a workspace stores, and their plaintext (JSON) form.

Secrets are frozen values. Their reprs name the secret and its type (and the user names or
key facts a `secrets list` shows) but never a hash, a key or a value, so a secret that ends
up in a log line or a traceback gives nothing away.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol, Union

SECRET_TYPES = ("basic", "jwt", "value")

# Secret names appear in flow files, in `secret("NAME")` and on the command line.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def valid_name(name: str) -> bool:
    return isinstance(name, str) and NAME_RE.match(name) is not None


@dataclass(frozen=True, repr=False)
class BasicSecret:
    """Users of HTTP Basic auth: user name -> argon2id hash (PHC string)."""

    name: str
    users: Mapping[str, str]
    type: ClassVar[str] = "basic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", dict(self.users))

    def __hash__(self) -> int:
        return hash((self.type, self.name))

    def __repr__(self) -> str:
        return f"BasicSecret(name={self.name!r}, type='basic', users={sorted(self.users)!r})"


@dataclass(frozen=True, repr=False)
class JwtSecret:
    """How to verify (and perhaps sign) JWTs: exactly one key source plus the checks."""

    name: str
    hs_key: bytes | None = None
    public_pem: bytes | None = None
    private_pem: bytes | None = None
    jwks: dict | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ()
    issuer: str | None = None
    audience: str | None = None
    leeway: int = 60
    scope_claim: str | None = None
    type: ClassVar[str] = "jwt"

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.algorithms))

    def __hash__(self) -> int:
        return hash((self.type, self.name))

    @property
    def key_kind(self) -> str:
        """Which key source this secret holds: hs | private | public | jwks | jwks_url | none."""
        if self.hs_key is not None:
            return "hs"
        if self.private_pem is not None:
            return "private"
        if self.public_pem is not None:
            return "public"
        if self.jwks is not None:
            return "jwks"
        if self.jwks_url is not None:
            return "jwks_url"
        return "none"

    @property
    def can_sign(self) -> bool:
        return self.hs_key is not None or self.private_pem is not None

    def __repr__(self) -> str:
        return (f"JwtSecret(name={self.name!r}, type='jwt', key={self.key_kind!r}, "
                f"algorithms={self.algorithms!r}, issuer={self.issuer!r}, "
                f"audience={self.audience!r})")


@dataclass(frozen=True, repr=False)
class ValueSecret:
    """A plain secret string that flows may read with ``secret("NAME")``."""

    name: str
    value: str
    type: ClassVar[str] = "value"

    def __hash__(self) -> int:
        return hash((self.type, self.name))

    def __repr__(self) -> str:
        return f"ValueSecret(name={self.name!r}, type='value')"


Secret = Union[BasicSecret, JwtSecret, ValueSecret]


@dataclass(frozen=True)
class Unavailable:
    """A stored secret this process cannot open: it is sealed under master key ``key_id``,
    which the key ring lacks. Not a secret (no ``type`` attribute): ``stored_type`` is the
    type the row declares, so a loader can still check a flow asks for the right kind."""

    name: str
    stored_type: str
    key_id: str | None

    @property
    def message(self) -> str:
        return (f"secret {self.name!r} is sealed under master key id {self.key_id or 'unknown'}, "
                "which is not in this server's key ring")


class SecretsSource(Protocol):
    """Where compiled policies read secrets from (a SecretsView): the same object comes back
    until the secret changes, so a policy may key its caches on identity."""

    def get(self, name: str) -> Secret | None: ...


# ---- plaintext form: what gets encrypted -------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


def to_data(secret: Secret) -> dict[str, Any]:
    """The JSON-able content of a secret (its name and type travel outside, as row fields)."""
    if isinstance(secret, BasicSecret):
        return {"users": dict(secret.users)}
    if isinstance(secret, ValueSecret):
        return {"value": secret.value}
    if isinstance(secret, JwtSecret):
        data: dict[str, Any] = {"algorithms": list(secret.algorithms), "leeway": secret.leeway}
        if secret.hs_key is not None:
            data["hs_key"] = _b64(secret.hs_key)
        for attr in ("public_pem", "private_pem"):
            value = getattr(secret, attr)
            if value is not None:
                data[attr] = value.decode("ascii")
        for attr in ("jwks", "jwks_url", "issuer", "audience", "scope_claim"):
            value = getattr(secret, attr)
            if value is not None:
                data[attr] = value
        return data
    raise TypeError(f"not a secret: {type(secret).__name__}")


def from_data(name: str, type_: str, data: Any) -> Secret:
    """Rebuild a secret; raises ValueError when ``data`` does not have the expected shape."""
    if not isinstance(data, dict):
        raise ValueError("content is not an object")
    if type_ == "basic":
        users = data.get("users")
        if not isinstance(users, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
            raise ValueError("users must map names to hashes")
        return BasicSecret(name, users)
    if type_ == "value":
        value = data.get("value")
        if not isinstance(value, str):
            raise ValueError("value must be a string")
        return ValueSecret(name, value)
    if type_ == "jwt":
        algorithms = data.get("algorithms", [])
        leeway = data.get("leeway", 60)
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise ValueError("algorithms must be a list of strings")
        if not isinstance(leeway, int) or isinstance(leeway, bool):
            raise ValueError("leeway must be an integer")
        strings = {}
        for attr in ("public_pem", "private_pem", "hs_key", "jwks_url", "issuer", "audience",
                     "scope_claim"):
            value = data.get(attr)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{attr} must be a string")
            strings[attr] = value
        jwks = data.get("jwks")
        if jwks is not None and not isinstance(jwks, dict):
            raise ValueError("jwks must be an object")
        return JwtSecret(
            name,
            hs_key=_unb64(strings["hs_key"]) if strings["hs_key"] is not None else None,
            public_pem=strings["public_pem"].encode("ascii") if strings["public_pem"] else None,
            private_pem=strings["private_pem"].encode("ascii") if strings["private_pem"] else None,
            jwks=jwks,
            jwks_url=strings["jwks_url"],
            algorithms=tuple(algorithms),
            issuer=strings["issuer"],
            audience=strings["audience"],
            leeway=leeway,
            scope_claim=strings["scope_claim"],
        )
    raise ValueError(f"unknown secret type {type_!r}")
