"""The secrets store: typed secrets and internal keys, each value sealed under the master key.

A ``Store`` holds all that is the same for every backend: the master key check, the
envelope encryption of each row, the version counter bumped in the same transaction as every
write, and the SQL (kept to what SQLite and PostgreSQL both speak). A backend
(``sqlite.py``, ``postgres.py``) only opens connections and runs transactions.

Rows:
  flowlet_secrets(name, type, data)   data = seal(JSON content, AD ["secret", name, type])
  flowlet_keys(name, data)            data = seal(key bytes,    AD ["key", name])
  flowlet_meta(name, num, data)       "version": num counts writes; "key_check": a sealed
                                      constant that tells a wrong master key from a bad row
"""

from __future__ import annotations

import abc
import base64
import binascii
import json
import os
import re
import secrets as _random
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from flowlet.secrets.crypto import DecryptError, Envelope, associated_data, key_ids
from flowlet.secrets.model import Secret, from_data, to_data, valid_name

MASTER_KEY_ENV = "FLOWLET_MASTER_KEY"
MASTER_KEY_BYTES = 32
STATE_DIR = ".flowlet"

_KEY_CHECK_AD = associated_data("key-check")
_KEY_CHECK_PLAINTEXT = b"flowlet master key check v1"


class StoreError(Exception):
    """A store problem, with a message that names the store or the secret and never a value."""


# ---- the master key ------------------------------------------------------------------------

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}\Z")


def decode_master_key(text: str) -> bytes:
    """FLOWLET_MASTER_KEY: 32 bytes in base64url, padding optional."""
    text = text.strip()
    if not _B64URL.match(text):
        hint = " (use - and _ instead of + and /)" if re.search(r"[+/]", text) else ""
        raise StoreError(f"{MASTER_KEY_ENV} is not valid base64url{hint}")
    body = text.rstrip("=")
    try:
        key = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise StoreError(f"{MASTER_KEY_ENV} is not valid base64url") from None
    if len(key) != MASTER_KEY_BYTES:
        raise StoreError(f"{MASTER_KEY_ENV} must decode to {MASTER_KEY_BYTES} bytes "
                         f"(43 base64url characters); it decodes to {len(key)}")
    return key


def new_master_key_text() -> str:
    """A fresh master key as FLOWLET_MASTER_KEY text (for docs and `flowlet` helpers)."""
    return base64.urlsafe_b64encode(os.urandom(MASTER_KEY_BYTES)).rstrip(b"=").decode("ascii")


class MasterKeySource:
    """Where the master key comes from: FLOWLET_MASTER_KEY, else ``.flowlet/master.key``."""

    def __init__(self, workspace_dir: Path):
        self.file = Path(workspace_dir) / STATE_DIR / "master.key"
        env = os.environ.get(MASTER_KEY_ENV, "")
        # decoded up front: a bad variable is reported before anything is created
        self._env_key = decode_master_key(env) if env.strip() else None
        self.describe = MASTER_KEY_ENV if self._env_key else str(self.file)

    def load(self, create: bool) -> bytes | None:
        """The key; ``create`` allows writing a new key file when there is none."""
        if self._env_key is not None:
            return self._env_key
        try:
            return self._read()
        except FileNotFoundError:
            if not create:
                return None
        return self._create()

    def _read(self) -> bytes:
        try:
            with open(self.file, "rb") as f:
                key = f.read(MASTER_KEY_BYTES + 1)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot read the master key {self.file}: {exc.strerror}") from None
        if len(key) != MASTER_KEY_BYTES:
            raise StoreError(f"the master key {self.file} must hold exactly {MASTER_KEY_BYTES} bytes")
        return key

    def _create(self) -> bytes:
        """Write 32 random bytes, mode 0600, so that no process ever reads a partial file.

        The bytes go to a fresh temporary file (O_EXCL) that is then hard-linked into place;
        the link fails if another process got there first, and then its key is used.
        """
        make_state_dir(self.file.parent)
        tmp = self.file.with_name(f".master.key.{os.getpid()}.{_random.token_hex(6)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, os.urandom(MASTER_KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.file)
            except FileExistsError:
                pass  # another process created it first: use theirs
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise StoreError(f"cannot create the master key {self.file}: {exc.strerror}") from None
        return self._read()


def make_state_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None


# ---- the store -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """Every row at one moment: raw sealed values, for a view that decrypts only what changed."""

    version: int
    secrets: dict[str, tuple[str, bytes]]
    keys: dict[str, bytes]


class _Cursor:
    """A DB-API cursor that accepts ``?`` placeholders on every backend."""

    __slots__ = ("_cur", "_param")

    def __init__(self, cur: Any, param: str):
        self._cur = cur
        self._param = param

    def execute(self, sql: str, params: tuple = ()) -> "_Cursor":
        if self._param != "?":
            sql = sql.replace("?", self._param)
        self._cur.execute(sql, params)
        return self

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list:
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class Store(abc.ABC):
    """The store interface and its backend-independent half.

    Backends set ``backend``, ``_param``, ``_ddl`` and ``_errors`` and implement
    ``_transaction(write)`` (a context manager yielding a DB-API cursor) and ``close()``.
    """

    backend = "?"
    _param = "?"
    _ddl: tuple[str, ...] = ()
    _errors: tuple[type[BaseException], ...] = ()
    # SQL that makes a write transaction wait for every other writer (read-modify-write);
    # empty when the backend's write transactions already exclude each other
    _serialize_writes = ""

    def __init__(self, label: str, key_source: MasterKeySource):
        self.label = label
        self._lock = threading.RLock()
        try:
            self._envelope = self._open_envelope(key_source)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    # -- secrets

    def get(self, name: str) -> Secret | None:
        with self._tx() as cur:
            row = cur.execute("SELECT type, data FROM flowlet_secrets WHERE name = ?", (name,)).fetchone()
        return None if row is None else self.open_secret(name, row[0], row[1])

    def put(self, secret: Secret) -> None:
        data = self._seal_secret(secret)
        with self._tx(write=True) as cur:
            self._upsert(cur, secret, data)

    def update(self, name: str, change: Callable[[Secret | None], Secret]) -> Secret:
        """Read-modify-write in one write transaction: ``change(current or None)`` -> new secret.

        Two processes adding users to one basic secret at once both keep their user.
        Whatever ``change`` raises aborts the update. A damaged row counts as absent, so
        setting a secret again is the way to repair it.
        """
        with self._tx(write=True) as cur:
            if self._serialize_writes:
                cur.execute(self._serialize_writes)
            row = cur.execute("SELECT type, data FROM flowlet_secrets WHERE name = ?", (name,)).fetchone()
            current = None
            if row is not None:
                try:
                    current = self.open_secret(name, row[0], row[1])
                except StoreError:
                    current = None
            secret = change(current)
            if secret.name != name:
                raise StoreError(f"an update of secret {name!r} cannot rename it")
            self._upsert(cur, secret, self._seal_secret(secret))
        return secret

    def delete(self, name: str) -> bool:
        with self._tx(write=True) as cur:
            deleted = cur.execute("DELETE FROM flowlet_secrets WHERE name = ?", (name,)).rowcount > 0
            if deleted:
                self._bump(cur)
        return deleted

    def list(self) -> list[dict]:
        """One summary per secret, by name: never a value, hash or key."""
        summaries = []
        for name, (type_, data) in sorted(self.snapshot().secrets.items()):
            try:
                summaries.append(summarize(self.open_secret(name, type_, data)))
            except StoreError:
                summaries.append({"name": name, "type": type_, "error": "cannot be decrypted"})
        return summaries

    # -- internal keys (the CSRF server key): hidden from list()

    def get_key(self, name: str) -> bytes | None:
        with self._tx() as cur:
            row = cur.execute("SELECT data FROM flowlet_keys WHERE name = ?", (name,)).fetchone()
        return None if row is None else self.open_key(name, row[0])

    def put_key(self, name: str, value: bytes) -> None:
        data = self._envelope.seal(bytes(value), associated_data("key", name))
        with self._tx(write=True) as cur:
            cur.execute("INSERT INTO flowlet_keys (name, data) VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET data = excluded.data", (name, data))
            self._bump(cur)

    def add_key_if_absent(self, name: str, value: bytes) -> bytes:
        """Store ``value`` unless the key exists; return what is stored (atomic across processes)."""
        data = self._envelope.seal(bytes(value), associated_data("key", name))
        with self._tx(write=True) as cur:
            inserted = cur.execute("INSERT INTO flowlet_keys (name, data) VALUES (?, ?) "
                                   "ON CONFLICT (name) DO NOTHING", (name, data)).rowcount > 0
            if inserted:
                self._bump(cur)
            stored = cur.execute("SELECT data FROM flowlet_keys WHERE name = ?", (name,)).fetchone()[0]
        return self.open_key(name, stored)

    # -- change detection

    def version(self) -> int:
        """Changes on every write by any process; one indexed single-row read."""
        with self._tx() as cur:
            return int(cur.execute("SELECT num FROM flowlet_meta WHERE name = 'version'").fetchone()[0])

    def snapshot(self) -> Snapshot:
        with self._tx() as cur:
            version = cur.execute("SELECT num FROM flowlet_meta WHERE name = 'version'").fetchone()[0]
            secrets = {name: (type_, bytes(data)) for name, type_, data in
                       cur.execute("SELECT name, type, data FROM flowlet_secrets").fetchall()}
            keys = {name: bytes(data) for name, data in
                    cur.execute("SELECT name, data FROM flowlet_keys").fetchall()}
        return Snapshot(int(version), secrets, keys)

    def open_secret(self, name: str, type_: str, data: bytes) -> Secret:
        """Decrypt one row; a row that does not open is reported by its name."""
        try:
            plaintext = self._envelope.open(data, associated_data("secret", name, type_))
            return from_data(name, type_, json.loads(plaintext))
        except (DecryptError, ValueError):
            raise StoreError(f"secret {name!r} in {self.label} cannot be decrypted: the row is "
                             "damaged or was copied from another secret; set it again") from None

    def open_key(self, name: str, data: bytes) -> bytes:
        try:
            return self._envelope.open(data, associated_data("key", name))
        except DecryptError:
            raise StoreError(f"internal key {name!r} in {self.label} cannot be decrypted: "
                             "the row is damaged") from None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend's connection."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backend-independent plumbing

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[_Cursor]:
        with self._lock:
            try:
                with self._transaction(write) as cur:
                    yield _Cursor(cur, self._param)
            except StoreError:
                raise
            except self._errors as exc:
                raise StoreError(f"store {self.label}: {_first_line(exc)}") from None

    @abc.abstractmethod
    def _transaction(self, write: bool) -> Any:
        """A context manager yielding a DB-API cursor inside one transaction (the backend's)."""

    def _seal_secret(self, secret: Secret) -> bytes:
        if not valid_name(secret.name):
            raise StoreError(f"invalid secret name {secret.name!r}: use letters, digits, '.', '_' "
                             "and '-' (starting with a letter or digit), at most 128 characters")
        plaintext = json.dumps(to_data(secret), separators=(",", ":")).encode("utf-8")
        return self._envelope.seal(plaintext, associated_data("secret", secret.name, secret.type))

    def _upsert(self, cur: _Cursor, secret: Secret, data: bytes) -> None:
        cur.execute("INSERT INTO flowlet_secrets (name, type, data) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET type = excluded.type, data = excluded.data",
                    (secret.name, secret.type, data))
        self._bump(cur)

    @staticmethod
    def _bump(cur: _Cursor) -> None:
        cur.execute("UPDATE flowlet_meta SET num = num + 1 WHERE name = 'version'")

    def _create_schema(self) -> None:
        with self._tx(write=True) as cur:
            for ddl in self._ddl:
                cur.execute(ddl)
            cur.execute("INSERT INTO flowlet_meta (name, num) VALUES ('version', 0) "
                        "ON CONFLICT (name) DO NOTHING")

    def _read_key_check(self) -> bytes | None:
        with self._tx() as cur:
            row = cur.execute("SELECT data FROM flowlet_meta WHERE name = 'key_check'").fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def _open_envelope(self, key_source: MasterKeySource) -> Envelope:
        """Create the tables, find the master key and prove it is the store's key."""
        self._create_schema()
        check = self._read_key_check()
        key = key_source.load(create=check is None)
        if key is None:
            raise StoreError(f"the store {self.label} was created with a master key that is not "
                             f"here: {key_source.file} is missing; restore it or set "
                             f"{MASTER_KEY_ENV} to the key the store was created with")
        envelope = Envelope(key)
        if check is None:
            with self._tx(write=True) as cur:
                cur.execute("INSERT INTO flowlet_meta (name, num, data) VALUES ('key_check', 0, ?) "
                            "ON CONFLICT (name) DO NOTHING",
                            (envelope.seal(_KEY_CHECK_PLAINTEXT, _KEY_CHECK_AD),))
            check = self._read_key_check()
        try:
            ok = envelope.open(check, _KEY_CHECK_AD) == _KEY_CHECK_PLAINTEXT
        except DecryptError:
            ok = False
        if not ok:
            raise StoreError(f"wrong master key for the store {self.label}: the key from "
                             f"{key_source.describe} is not the one the store was created with "
                             f"(set {MASTER_KEY_ENV} to that key, or restore its .flowlet/master.key)")
        return envelope


def summarize(secret: Secret) -> dict:
    """What `secrets list` shows of a secret: names, types, users, key ids, algorithms."""
    summary: dict[str, Any] = {"name": secret.name, "type": secret.type}
    if secret.type == "basic":
        summary["users"] = sorted(secret.users)
    elif secret.type == "jwt":
        summary["key"] = secret.key_kind
        try:
            summary["kids"] = key_ids(secret)
        except Exception:  # a key that no longer parses: show the rest
            summary["kids"] = []
        summary["algorithms"] = list(secret.algorithms)
        for attr in ("jwks_url", "issuer", "audience", "scope_claim"):
            value = getattr(secret, attr)
            if value is not None:
                summary[attr] = value
        summary["leeway"] = secret.leeway
    return summary


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def open_store(workspace_dir: Path | str, store_setting: str = "sqlite") -> Store:
    """Open the workspace's store: ``sqlite`` (``.flowlet/state.db``) or a postgresql:// URL."""
    workspace_dir = Path(workspace_dir)
    key_source = MasterKeySource(workspace_dir)
    if store_setting == "sqlite":
        from flowlet.secrets.sqlite import SqliteStore

        return SqliteStore(workspace_dir / STATE_DIR / "state.db", key_source)
    if isinstance(store_setting, str) and store_setting.startswith(("postgresql://", "postgres://")):
        from flowlet.secrets.postgres import PostgresStore

        return PostgresStore(store_setting, key_source)
    raise StoreError(f"unknown store {store_setting!r}: use 'sqlite' or a postgresql:// URL")
