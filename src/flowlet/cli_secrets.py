"""`flowlet secrets ...` and `flowlet token`: manage the workspace's secrets from the shell.

Secret material only ever comes in (stdin or a key file) and is never printed back: the
commands report names, types, users, key ids and algorithms. Every failure is one line on
stderr with exit status 1 (2 for a wrong command line), never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from flowlet.secrets import crypto
from flowlet.secrets.model import BasicSecret, JwtSecret, Secret, ValueSecret, valid_name
from flowlet.secrets.open import open_store
from flowlet.secrets.store import Store, StoreError

MAX_INPUT_BYTES = 1 << 20  # key files, key sets and stdin values are small
_JWT_OPTIONS = ("issuer", "audience", "algorithms", "leeway", "scope_claim")
KEY_LABELS = {"hs": "shared key", "private": "private key", "public": "public key",
              "jwks": "key set", "jwks_url": "key set URL", "none": "no key"}


class CommandError(Exception):
    """A failure to report as ``error: message`` with an exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


# ---- parser --------------------------------------------------------------------------------

def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `secrets` (set, list, delete, rotate-csrf, rotate-master-key, export, import) and
    `token` on the `flowlet` parser."""
    secrets = subparsers.add_parser(
        "secrets", help="set, list and delete the workspace's secrets",
        description="Credentials live in the workspace store, encrypted with the master key, "
                    "and are never printed back.")
    commands = secrets.add_subparsers(dest="secrets_command", required=True,
                                      metavar="{set,list,delete,rotate-csrf,rotate-master-key,"
                                              "export,import}")

    p = commands.add_parser("set", help="create or replace a secret (basic: add or replace one user)")
    p.add_argument("name", help="the secret's name, as flows refer to it")
    _workspace_option(p)
    p.add_argument("--type", required=True, choices=("basic", "jwt", "value"),
                   help="basic: users and passwords; jwt: keys that verify tokens; value: a plain secret for flows")
    basic = p.add_argument_group("basic")
    basic.add_argument("--user", help="the user to add or replace")
    basic.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    jwt = p.add_argument_group("jwt (one key source)")
    jwt.add_argument("--hs-key-stdin", action="store_true",
                     help="read a shared key from stdin (HS256 >= 32 bytes, HS384 >= 48, HS512 >= 64)")
    jwt.add_argument("--public-key", metavar="FILE.pem", help="a PEM public key or certificate")
    jwt.add_argument("--private-key", metavar="FILE.pem",
                     help="a PEM private key: signs `flowlet token`, verifies with its public half")
    jwt.add_argument("--jwks", metavar="FILE_OR_URL", help="a JWK Set file, or an https:// URL")
    jwt.add_argument("--issuer", metavar="ISS", help="required `iss` claim")
    jwt.add_argument("--audience", metavar="AUD", help="required `aud` claim")
    jwt.add_argument("--algorithms", metavar="ALG,...", help="accepted algorithms (default: from the key)")
    jwt.add_argument("--leeway", metavar="SECONDS", type=int, help="clock skew allowed for exp/nbf/iat (default 60)")
    jwt.add_argument("--scope-claim", metavar="NAME", help="claim that holds the scopes (default: scope, scp, scopes)")
    value = p.add_argument_group("value")
    value.add_argument("--value-stdin", action="store_true", help="read the value from stdin")
    p.set_defaults(func=cmd_set)

    p = commands.add_parser("list", help="names, types, users and key ids; never values")
    _workspace_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = commands.add_parser("delete", help="delete a secret")
    p.add_argument("name", help="the secret to delete")
    _workspace_option(p)
    p.set_defaults(func=cmd_delete)

    p = commands.add_parser("remove-user", help="remove one user from a basic secret")
    p.add_argument("name", help="the basic secret")
    _workspace_option(p)
    p.add_argument("--user", required=True, help="the user to remove")
    p.set_defaults(func=cmd_remove_user)

    p = commands.add_parser("rotate-csrf", help="make a new CSRF server key (the previous one stays "
                                                "valid for csrf.grace_s)")
    _workspace_option(p)
    p.set_defaults(func=cmd_rotate_csrf)

    p = commands.add_parser("rotate-master-key",
                            help="re-seal every secret under the first master key (one transaction)")
    _workspace_option(p)
    p.set_defaults(func=cmd_rotate_master_key)

    p = commands.add_parser("export", help="write every secret, still sealed, to a file (a backup)")
    _workspace_option(p)
    p.add_argument("--to", required=True, metavar="FILE", help="the file to write (mode 0600)")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("import", help="restore an export into an empty store")
    _workspace_option(p)
    p.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="a file written by `flowlet secrets export`")
    p.set_defaults(func=cmd_import)

    p = subparsers.add_parser("token", help="print a signed JWT (needs an HS or private-key secret)")
    _workspace_option(p)
    p.add_argument("--secret", required=True, metavar="NAME",
                   help="a jwt secret with a shared key or a private key")
    p.add_argument("--scope", help='space-separated scopes, e.g. "users:read users:write"')
    p.add_argument("--sub", help="subject")
    p.add_argument("--aud", help="audience (default: the secret's audience)")
    p.add_argument("--iss", help="issuer (default: the secret's issuer)")
    p.add_argument("--ttl", type=int, default=3600, metavar="SECONDS",
                   help="lifetime in seconds (default 3600; negative gives an expired token)")
    p.set_defaults(func=cmd_token)


def _workspace_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--workspace", metavar="DIR", default=".",
                   help="the workspace folder (default: the current folder)")


def _handler(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn every failure into one line on stderr and an exit status."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CommandError as exc:
            _error(str(exc))
            return exc.status
        except (StoreError, crypto.KeyMaterialError) as exc:
            _error(str(exc))
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # `... | head`: stop quietly, as other shell tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except Exception as exc:  # never a traceback; the message might echo input, so omit it
            _error(f"unexpected {type(exc).__name__} (nothing was changed if the command writes)")
            return 1

    return run


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


# ---- workspace and input -------------------------------------------------------------------

def _open(args: argparse.Namespace) -> Store:
    from flowlet.errors import ConfigError
    from flowlet.workspace.settings import load_settings

    root = Path(args.workspace)
    if not root.is_dir():
        raise CommandError(f"{root} is not a folder")
    try:
        settings = load_settings(root)
    except ConfigError as exc:
        raise CommandError(str(exc).removeprefix("error: ")) from None
    args.settings = settings
    return open_store(root, settings.store)


def read_stdin(what: str) -> str:
    """Text from stdin minus one trailing newline (\\n or \\r\\n); a prompt on a terminal."""
    if sys.stdin is None:
        raise CommandError(f"no {what} on stdin")
    if sys.stdin.isatty():
        text = getpass.getpass(f"{what[0].upper()}{what[1:]}: ")
    else:
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise CommandError(f"the {what} on stdin is longer than {MAX_INPUT_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"the {what} on stdin is not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise CommandError(f"the {what} on stdin is empty")
    return text


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise CommandError(f"{what} {path} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise CommandError(f"invalid secret name {name!r}: use letters, digits, '.', '_' and '-', "
                           "starting with a letter or digit (at most 128 characters)", 2)


# ---- secrets set ---------------------------------------------------------------------------

@_handler
def cmd_set(args: argparse.Namespace) -> int:
    _check_name(args.name)
    _check_options(args)
    if args.type == "basic":
        _check_user(args.user)
        from argon2 import PasswordHasher

        # hashed before the store is opened: the write transaction stays short
        password_hash = PasswordHasher().hash(read_stdin("password"))  # argon2id, library defaults
        replaced = False

        def add_user(current):
            nonlocal replaced
            users = dict(_same_type(current, args.name, "basic").users) if current else {}
            replaced = args.user in users
            users[args.user] = password_hash
            return BasicSecret(args.name, users)

        with _open(args) as store:
            secret = store.update(args.name, add_user)
        count = len(secret.users)
        print(f"basic secret {args.name!r}: {'replaced' if replaced else 'added'} user "
              f"{args.user!r} ({count} user{'s' if count != 1 else ''})")
        return 0
    if args.type == "value":
        new: ValueSecret | JwtSecret = ValueSecret(args.name, read_stdin("value"))
    else:
        new = _jwt_secret(args)

    def replace(current):
        _same_type(current, args.name, new.type)
        return new

    with _open(args) as store:
        store.update(args.name, replace)
    if isinstance(new, ValueSecret):
        print(f"value secret {args.name!r} saved")
        return 0
    kids = crypto.key_ids(new)
    details = [KEY_LABELS[new.key_kind],
               "algorithms " + ",".join(new.algorithms) if new.algorithms
               else "algorithms from the fetched keys"]
    if kids:
        details.append("kid " + ", ".join(kids))
    print(f"jwt secret {args.name!r} saved: {'; '.join(details)}")
    return 0


def _same_type(current: Secret | None, name: str, type_: str) -> Secret | None:
    """`set` replaces a secret of the same type; changing the type needs a delete first."""
    if current is not None and current.type != type_:
        raise CommandError(f"secret {name!r} is a {current.type} secret; delete it first to "
                           f"make it a {type_} secret")
    return current


def _check_options(args: argparse.Namespace) -> None:
    """Options of one type may not be given for another (a typo must not pass silently)."""
    by_type = {
        "basic": ("user", "password_stdin"),
        "jwt": ("hs_key_stdin", "public_key", "private_key", "jwks", *_JWT_OPTIONS),
        "value": ("value_stdin",),
    }
    for type_, options in by_type.items():
        if type_ == args.type:
            continue
        for option in options:
            if _given(getattr(args, option)):
                raise CommandError(f"--{option.replace('_', '-')} is only for --type {type_}", 2)
    if args.type == "basic" and (args.user is None or not args.password_stdin):
        raise CommandError("--type basic needs --user USER and --password-stdin", 2)
    if args.type == "value" and not args.value_stdin:
        raise CommandError("--type value needs --value-stdin", 2)
    if args.type == "jwt":
        sources = [o for o in ("hs_key_stdin", "public_key", "private_key", "jwks")
                   if _given(getattr(args, o))]
        if len(sources) != 1:
            raise CommandError("--type jwt needs exactly one of --hs-key-stdin, --public-key, "
                               "--private-key, --jwks", 2)


def _given(value: object) -> bool:
    return value is not None and value is not False


def _check_user(user: str) -> None:
    # RFC 7617: the user-id cannot contain a colon; control characters are never valid
    if not user or ":" in user or any(ord(c) < 32 or ord(c) == 127 for c in user):
        raise CommandError("--user must be non-empty, without ':' or control characters", 2)


def _jwt_secret(args: argparse.Namespace) -> JwtSecret:
    requested = crypto.parse_algorithms(args.algorithms) if args.algorithms is not None else None
    for option in ("issuer", "audience", "scope_claim"):
        value = getattr(args, option)
        if value is not None and not value.strip():
            raise CommandError(f"--{option.replace('_', '-')} is empty", 2)
    if args.leeway is not None and not 0 <= args.leeway <= 86400:
        raise CommandError("--leeway must be between 0 and 86400 seconds", 2)
    options = dict(issuer=args.issuer, audience=args.audience, scope_claim=args.scope_claim,
                   leeway=60 if args.leeway is None else args.leeway)
    if args.hs_key_stdin:
        key = read_stdin("shared key").encode("utf-8")
        return JwtSecret(args.name, hs_key=key, algorithms=crypto.hs_algorithms(key, requested), **options)
    if args.public_key is not None:
        pem, algorithms = crypto.load_public_pem(_read_file(args.public_key, "the public key"),
                                                 requested, f"{args.public_key}")
        return JwtSecret(args.name, public_pem=pem, algorithms=algorithms, **options)
    if args.private_key is not None:
        pem, algorithms = crypto.load_private_pem(_read_file(args.private_key, "the private key"),
                                                  requested, f"{args.private_key}")
        return JwtSecret(args.name, private_pem=pem, algorithms=algorithms, **options)
    source = args.jwks
    if source.startswith(("http://", "https://")):
        return JwtSecret(args.name, jwks_url=crypto.check_jwks_url(source),
                         algorithms=requested or (), **options)
    try:
        data = json.loads(_read_file(source, "the key set"))
    except ValueError:
        raise CommandError(f"the key set {source} is not valid JSON") from None
    jwks, algorithms = crypto.load_jwks(data, requested)
    return JwtSecret(args.name, jwks=jwks, algorithms=algorithms, **options)


# ---- secrets list / delete / rotate-csrf ---------------------------------------------------

@_handler
def cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        summaries = store.list()
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print("no secrets")
        return 0
    rows = [(s["name"], s["type"], _details(s)) for s in summaries]
    width = [max(len(r[i]) for r in rows + [("NAME", "TYPE", "")]) for i in range(2)]
    print(f"{'NAME':<{width[0]}}  {'TYPE':<{width[1]}}  DETAILS")
    for name, type_, details in rows:
        print(f"{name:<{width[0]}}  {type_:<{width[1]}}  {details}".rstrip())
    return 0


def _details(summary: dict) -> str:
    if "error" in summary:
        return f"error: {summary['error']}"
    if summary["type"] == "basic":
        return "users: " + ", ".join(summary["users"])
    if summary["type"] == "jwt":
        parts = [f"key: {KEY_LABELS.get(summary['key'], summary['key'])}"]
        if summary["algorithms"]:
            parts.append("algorithms: " + ",".join(summary["algorithms"]))
        if summary["kids"]:
            parts.append("kid: " + ", ".join(summary["kids"]))
        for key in ("jwks_url", "issuer", "audience", "scope_claim"):
            if key in summary:
                parts.append(f"{key.replace('_', ' ')}: {summary[key]}")
        parts.append(f"leeway: {summary['leeway']}s")
        return "; ".join(parts)
    return ""


@_handler
def cmd_delete(args: argparse.Namespace) -> int:
    with _open(args) as store:
        deleted = store.delete(args.name)
    if not deleted:
        raise CommandError(f"no secret named {args.name!r}")
    print(f"deleted secret {args.name!r}")
    return 0


@_handler
def cmd_remove_user(args: argparse.Namespace) -> int:
    from flowlet.secrets.edits import EditError, remove_user

    _check_name(args.name)
    try:
        with _open(args) as store:
            left = remove_user(store, args.name, args.user)
    except EditError as exc:
        raise CommandError(str(exc)) from None
    print(f"basic secret {args.name!r}: removed user {args.user!r} ({left} user{'s' if left != 1 else ''} left)")
    return 0


@_handler
def cmd_rotate_csrf(args: argparse.Namespace) -> int:
    from flowlet.security.csrf import rotate

    with _open(args) as store:
        rotate(store)
    grace = getattr(getattr(args.settings, "csrf", None), "grace_s", None)
    tail = f" for {grace} s" if grace is not None else " for csrf.grace_s"
    print(f"rotated the CSRF key; tokens issued under the previous key stay valid{tail}")
    return 0


# ---- master key rotation and backups -------------------------------------------------------

@_handler
def cmd_rotate_master_key(args: argparse.Namespace) -> int:
    with _open(args) as store:
        moved = store.rotate_master_key()
        kid = store.ring.sealing_id
    print(f"re-sealed {moved} row{'s' if moved != 1 else ''} under master key id {kid}; "
          "every secret is now sealed under it")
    return 0


@_handler
def cmd_export(args: argparse.Namespace) -> int:
    from flowlet.secrets.backup import write_export

    with _open(args) as store:
        doc = write_export(store, Path(args.to))
    count = len(doc["secrets"])
    ids = ", ".join(doc["key_ids"]) or "none"
    print(f"exported {count} secret{'s' if count != 1 else ''} and {len(doc['keys'])} internal "
          f"key{'s' if len(doc['keys']) != 1 else ''} to {args.to}, still sealed (master key ids: "
          f"{ids}); restoring them needs those keys")
    return 0


@_handler
def cmd_import(args: argparse.Namespace) -> int:
    from flowlet.secrets.backup import import_rows, needs_keys, read_export

    snapshot = read_export(Path(args.source))  # a bad file is reported before the store is opened
    needs_keys(Path(args.workspace), snapshot)    # and a missing key before a store is created
    with _open(args) as store:
        import_rows(store, snapshot)
    count = len(snapshot.secrets)
    print(f"imported {count} secret{'s' if count != 1 else ''} and {len(snapshot.keys)} internal "
          f"key{'s' if len(snapshot.keys) != 1 else ''} from {args.source}")
    return 0


# ---- token ---------------------------------------------------------------------------------

@_handler
def cmd_token(args: argparse.Namespace) -> int:
    with _open(args) as store:
        secret = store.get(args.secret)
    if secret is None:
        raise CommandError(f"no secret named {args.secret!r} (see: flowlet secrets list -w {args.workspace})")
    if not isinstance(secret, JwtSecret):
        raise CommandError(f"secret {args.secret!r} is a {secret.type} secret; tokens need a jwt secret")
    print(sign_token(secret, scope=args.scope, sub=args.sub, aud=args.aud, iss=args.iss, ttl=args.ttl))
    return 0


def sign_token(secret: JwtSecret, *, scope: str | None = None, sub: str | None = None,
               aud: str | None = None, iss: str | None = None, ttl: int = 3600,
               now: int | None = None) -> str:
    """A JWT signed with the secret's first algorithm (HS key or private key)."""
    from joserfc import jwt

    key, kid = crypto.signing_key(secret)
    if not secret.algorithms:
        raise CommandError(f"secret {secret.name!r} names no algorithms")
    alg = secret.algorithms[0]
    iat = int(time.time()) if now is None else now
    claims: dict = {"iat": iat, "exp": iat + ttl}
    if scope is not None:
        claims[secret.scope_claim or "scope"] = " ".join(scope.split())
    if sub is not None:
        claims["sub"] = sub
    if aud or secret.audience:
        claims["aud"] = aud or secret.audience
    if iss or secret.issuer:
        claims["iss"] = iss or secret.issuer
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc's advisory warnings are not for CLI users
        return jwt.encode(header, claims, key, algorithms=[alg])


# ---- `python -m flowlet.cli_secrets` -------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowlet")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
