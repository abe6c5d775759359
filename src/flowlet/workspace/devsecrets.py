"""Development secrets a workspace declares (``dev_secrets:`` in flowlet.yaml).

On the first ``flowlet serve`` each declared secret that does not exist yet is created with
random credentials, which are printed once (to the terminal, never to the log). Existing
secrets are left alone, so a user can replace them with real ones; flows still refuse to load
when they name a secret that neither exists nor is declared.
"""

from __future__ import annotations

import secrets as _random
import sys
import time
from pathlib import Path


def ensure_dev_secrets(root: Path, out=None) -> list[str]:
    from flowlet.errors import ConfigError, ConfigErrors
    from flowlet.workspace.settings import load_settings

    try:
        settings = load_settings(root)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    if not settings.dev_secrets:
        return []
    from argon2 import PasswordHasher
    from flowlet.secrets.model import BasicSecret, JwtSecret
    from flowlet.secrets.open import StoreError, open_store

    out = out or sys.stdout
    created = []
    try:
        store = open_store(root, settings.store)
    except StoreError as exc:
        raise ConfigErrors([ConfigError(str(exc), "flowlet.yaml", 1)]) from None
    try:
        for decl in settings.dev_secrets:
            if store.get(decl.name) is not None:
                continue
            if decl.type == "basic":
                password = _random.token_urlsafe(12)
                store.put(BasicSecret(decl.name, {decl.user: PasswordHasher().hash(password)}))
                print(f"created development secret {decl.name!r}: Basic user {decl.user!r}, "
                      f"password {password!r} (shown once)", file=out, flush=True)
            else:
                key = _random.token_bytes(32)
                secret = JwtSecret(decl.name, hs_key=key, algorithms=("HS256",))
                store.put(secret)
                from joserfc import jwt
                from joserfc.jwk import OctKey
                now = int(time.time())
                token = jwt.encode({"alg": "HS256", "typ": "JWT"},
                                   {"sub": "dev", "scope": "read write", "iat": now, "exp": now + 86400},
                                   OctKey.import_key(key))
                print(f"created development secret {decl.name!r}: HS256 key (more tokens: flowlet token "
                      f"-w {root} --secret {decl.name} --scope '...'); a 24 h token with scopes "
                      f"'read write':\n{token}", file=out, flush=True)
            created.append(decl.name)
    finally:
        store.close()
    return created
