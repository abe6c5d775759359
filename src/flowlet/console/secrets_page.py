"""The secrets page: names, types, users and key facts (never material), and the changes the
CLI can make, with the same rules (flowlet.secrets.edits)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flowlet.console.sessions import Session
from flowlet.console.web import ConsoleRequest, ConsoleResponse
from flowlet.secrets import crypto
from flowlet.secrets.edits import EditError, add_user as _add_user, jwt_from_text, remove_user as _remove_user, \
    set_jwt as _set_jwt
from flowlet.secrets.store import StoreError

if TYPE_CHECKING:
    from flowlet.console.app import Console

log = logging.getLogger("flowlet.console")
LABELS = {"hs": "shared key", "private": "private key", "public": "public key", "jwks": "key set",
          "jwks_url": "key set URL", "none": "no key"}


def index(console: Console, req: ConsoleRequest, session: Session, *, status: int = 200, notice: str = "",
          errors: dict[str, str] | None = None, typed: dict[str, str] | None = None) -> ConsoleResponse:
    summaries = console.store.list()
    return console.page(status, "secrets.html", session, secrets=summaries, labels=LABELS, notice=notice,
                        errors=errors or {}, typed=typed or {}, console_secret=console.cfg.users,
                        grace_s=console.settings.csrf.grace_s)


def _safe_typed(fields: dict[str, str]) -> dict[str, str]:
    """What to put back in the form after an error: never a password or key."""
    return {k: v for k, v in fields.items() if k not in ("password", "key", "csrf_token")}


def add_user(console: Console, req: ConsoleRequest, session: Session, fields: dict[str, str]) -> ConsoleResponse:
    name, user = fields.get("secret", "").strip(), fields.get("user", "").strip()
    try:
        replaced, count = _add_user(console.store, name, user, fields.get("password", ""))
    except (EditError, StoreError) as exc:
        return index(console, req, session, status=422, errors={"user_form": str(exc)},
                     typed=_safe_typed(fields))
    console.audit.write(session.user, action="replace-user" if replaced else "add-user", secret=name, target=user)
    return index(console, req, session, notice=f"Basic secret {name!r}: {'replaced' if replaced else 'added'} "
                                               f"user {user!r} ({count} user{'s' if count != 1 else ''}).")


def remove_user(console: Console, req: ConsoleRequest, session: Session, fields: dict[str, str]) -> ConsoleResponse:
    name, user = fields.get("secret", ""), fields.get("user", "")
    try:
        left = _remove_user(console.store, name, user)
    except (EditError, StoreError) as exc:
        return index(console, req, session, status=422, errors={"remove": str(exc)})
    console.audit.write(session.user, action="remove-user", secret=name, target=user)
    if name == console.cfg.users:
        console.sessions.end_user(user)
    return index(console, req, session, notice=f"Removed user {user!r} from {name!r} ({left} left).")


def set_jwt(console: Console, req: ConsoleRequest, session: Session, fields: dict[str, str]) -> ConsoleResponse:
    name = fields.get("secret", "").strip()
    try:
        secret = jwt_from_text(name, fields.get("key", ""), issuer=fields.get("issuer", "").strip(),
                               audience=fields.get("audience", "").strip(),
                               algorithms=fields.get("algorithms", "").strip())
        _set_jwt(console.store, secret)
    except (EditError, StoreError) as exc:
        return index(console, req, session, status=422, errors={"jwt_form": str(exc)}, typed=_safe_typed(fields))
    kids = crypto.key_ids(secret)
    console.audit.write(session.user, action="set-jwt", secret=name, key=secret.key_kind,
                        algorithms=list(secret.algorithms), kids=kids)
    return index(console, req, session, notice=f"JWT secret {name!r} saved: {LABELS[secret.key_kind]}, "
                                               f"algorithms {', '.join(secret.algorithms)}.")


def rotate_csrf(console: Console, req: ConsoleRequest, session: Session, fields: dict[str, str]) -> ConsoleResponse:
    from flowlet.security.csrf import rotate
    try:
        rotate(console.store)
    except StoreError as exc:
        return index(console, req, session, status=422, errors={"rotate": str(exc)})
    console.audit.write(session.user, action="rotate-csrf")
    return index(console, req, session, notice="Rotated the CSRF key. Tokens issued under the previous key "
                                               f"stay valid for {console.settings.csrf.grace_s} s.")
