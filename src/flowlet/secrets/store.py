"""The secrets store: typed secrets and internal keys, each value sealed under the master key ring.

A ``Store`` holds all that is the same for every backend: the key ring check, the envelope
encryption of each row, the version counter bumped in the same transaction as every write,
the schema version and its upgrades, and the SQL (kept to what SQLite and PostgreSQL both
speak). A backend (``sqlite.py``, ``postgres.py``) only opens connections and runs
transactions. ``flowlet.secrets.open.open_store`` picks the backend.

Rows (schema version 2):
  flowlet_secrets(name, type, key_id, data)   data = seal(JSON content, AD ["secret", name, type])
  flowlet_keys(name, key_id, data)            data = seal(key bytes,    AD ["key", name])
  flowlet_meta(name, num, data, key_id)       "version": num counts writes; "schema": num is
                                              the schema version; "key_check": a sealed
                                              constant that tells a wrong key ring from a bad row
``key_id`` names the master key that sealed the row (NULL for a row a 0.1.0 server wrote
into an upgraded store: every key of the ring is tried).
"""

from __future__ import annotations

import abc
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from flowlet.secrets.crypto import DecryptError, associated_data, key_ids
from flowlet.secrets.changes import ChangeCounter
from flowlet.secrets.keyring import (MASTER_KEY_BYTES, MASTER_KEY_ENV, STATE_DIR, KeyRing,
                                     MasterKeySource, StoreError, decode_master_key,
                                     make_state_dir, new_master_key_text)
from flowlet.secrets.model import Secret, Unavailable, from_data, to_data, valid_name

__all__ = ["Store", "StoreError", "MissingKeyError", "NewerStoreError", "Snapshot", "SCHEMA_VERSION",
           "MASTER_KEY_ENV", "MASTER_KEY_BYTES", "STATE_DIR", "MasterKeySource",
           "decode_master_key", "make_state_dir", "new_master_key_text", "summarize"]

# 1: Flowlet 0.1.0 (no schema row, no key ids). 2: a master key id next to every sealed value.
SCHEMA_VERSION = 2

_KEY_CHECK_AD = associated_data("key-check")
_KEY_CHECK_PLAINTEXT = b"flowlet master key check v1"

# Upgrades from the version in the key to the next one; SQL both backends speak.
_UPGRADES: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE flowlet_secrets ADD COLUMN key_id TEXT",
        "ALTER TABLE flowlet_keys ADD COLUMN key_id TEXT",
        "ALTER TABLE flowlet_meta ADD COLUMN key_id TEXT"),
}


class MissingKeyError(StoreError):
    """A row sealed under a master key the ring lacks; the other rows still open."""

    def __init__(self, unavailable: Unavailable, label: str):
        super().__init__(f"{unavailable.message} (store {label}; add that key to "
                         f"{MASTER_KEY_ENV} or master.key)")
        self.unavailable = unavailable


class NewerStoreError(StoreError):
    """The store was made or upgraded by a newer Flowlet."""


# ---- the store -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """Every row at one moment: raw sealed values, for a view that decrypts only what changed.

    ``secrets``: name -> (type, key id, sealed); ``keys``: name -> (key id, sealed).
    """

    version: int
    secrets: dict[str, tuple[str, str | None, bytes]]
    keys: dict[str, tuple[str | None, bytes]]


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

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self._cur.executemany(sql.replace("?", self._param) if self._param != "?" else sql, rows)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list:
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class Store(abc.ABC):
    """The store interface and its backend-independent half.

    Backends set ``backend``, ``_param``, ``_ddl``, ``_errors``, ``_table_exists_sql`` and
    ``_setup_lock`` and implement ``_transaction(write)`` (a context manager yielding a
    DB-API cursor) and ``close()``.
    """

    backend = "?"
    _param = "?"
    _ddl: tuple[str, ...] = ()
    _errors: tuple[type[BaseException], ...] = ()
    # SQL that makes a write transaction wait for every other writer (read-modify-write);
    # empty when the backend's write transactions already exclude each other
    _serialize_writes = ""
    # one row when the named table exists (in the connection's schema)
    _table_exists_sql = ""
    # SQL run first in the set-up transaction so that two processes never both migrate;
    # empty when the write transaction itself excludes the others (SQLite: BEGIN IMMEDIATE)
    _setup_lock = ""
    # SQL run in every write transaction to wake other servers (empty: they poll)
    _notify_sql = ""

    def __init__(self, label: str, key_source: MasterKeySource):
        self.label = label
        self._lock = threading.RLock()
        # set by open_store: bumped after each committed write, read by servers per request
        self.changes: ChangeCounter | None = None
        try:
            self._ring = self._open_ring(key_source)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    @property
    def ring(self) -> KeyRing:
        return self._ring

    # -- secrets

    def get(self, name: str) -> Secret | None:
        """The secret, or None; raises MissingKeyError when its key is not in the ring."""
        with self._tx() as cur:
            row = cur.execute("SELECT type, key_id, data FROM flowlet_secrets WHERE name = ?",
                              (name,)).fetchone()
        return None if row is None else self.open_secret(name, row[0], row[1], row[2])

    def put(self, secret: Secret) -> None:
        sealed = self._seal_secret(secret)
        with self._tx(write=True) as cur:
            self._upsert(cur, secret, sealed)

    def update(self, name: str, change: Callable[[Secret | None], Secret]) -> Secret:
        """Read-modify-write in one write transaction: ``change(current or None)`` -> new secret.

        Two processes adding users to one basic secret at once both keep their user.
        Whatever ``change`` raises aborts the update. A damaged row counts as absent, so
        setting a secret again is the way to repair it. A row under a key the ring lacks is
        refused instead: adding a user to it would silently drop the users it holds.
        """
        with self._tx(write=True) as cur:
            if self._serialize_writes:
                cur.execute(self._serialize_writes)
            row = cur.execute("SELECT type, key_id, data FROM flowlet_secrets WHERE name = ?",
                              (name,)).fetchone()
            current = None
            if row is not None:
                try:
                    current = self.open_secret(name, row[0], row[1], row[2])
                except MissingKeyError as exc:
                    raise StoreError(f"{exc.unavailable.message}: add that key to change it, or "
                                     "delete the secret first; nothing was changed") from None
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
        for name, (type_, kid, data) in sorted(self.snapshot().secrets.items()):
            try:
                summaries.append(summarize(self.open_secret(name, type_, kid, data)))
            except MissingKeyError:
                summaries.append({"name": name, "type": type_, "master_key_id": kid,
                                  "error": f"sealed under master key id {kid}, which is not "
                                           "in the key ring"})
            except StoreError:
                summaries.append({"name": name, "type": type_, "error": "cannot be decrypted"})
        return summaries

    # -- internal keys (the CSRF server key): hidden from list()

    def get_key(self, name: str) -> bytes | None:
        with self._tx() as cur:
            row = cur.execute("SELECT key_id, data FROM flowlet_keys WHERE name = ?", (name,)).fetchone()
        return None if row is None else self.open_key(name, row[0], row[1])

    def put_key(self, name: str, value: bytes) -> None:
        kid, data = self._ring.seal(bytes(value), associated_data("key", name))
        with self._tx(write=True) as cur:
            cur.execute("INSERT INTO flowlet_keys (name, key_id, data) VALUES (?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, "
                        "data = excluded.data", (name, kid, data))
            self._bump(cur)

    def add_key_if_absent(self, name: str, value: bytes) -> bytes:
        """Store ``value`` unless the key exists; return what is stored (atomic across processes)."""
        kid, data = self._ring.seal(bytes(value), associated_data("key", name))
        with self._tx(write=True) as cur:
            inserted = cur.execute("INSERT INTO flowlet_keys (name, key_id, data) VALUES (?, ?, ?) "
                                   "ON CONFLICT (name) DO NOTHING", (name, kid, data)).rowcount > 0
            if inserted:
                self._bump(cur)
            stored = cur.execute("SELECT key_id, data FROM flowlet_keys WHERE name = ?",
                                 (name,)).fetchone()
        return self.open_key(name, stored[0], stored[1])

    # -- change detection

    def version(self) -> int:
        """Changes on every write by any process; one indexed single-row read."""
        with self._tx() as cur:
            return int(cur.execute("SELECT num FROM flowlet_meta WHERE name = 'version'").fetchone()[0])

    def change_token(self) -> object | None:
        """A value that differs after any other process wrote, cheaper than version(); None
        when the backend has none (then callers read version())."""
        return None

    def snapshot(self) -> Snapshot:
        with self._tx() as cur:
            return _read_snapshot(cur)

    def open_secret(self, name: str, type_: str, kid: str | None, data: bytes) -> Secret:
        """Decrypt one row; a row that does not open is reported by its name."""
        try:
            _, plaintext = self._ring.open(kid, data, associated_data("secret", name, type_))
            return from_data(name, type_, json.loads(plaintext))
        except KeyError:
            raise MissingKeyError(Unavailable(name, type_, kid), self.label) from None
        except (DecryptError, ValueError):
            raise StoreError(f"secret {name!r} in {self.label} cannot be decrypted: the row is "
                             "damaged or was copied from another secret; set it again") from None

    def open_key(self, name: str, kid: str | None, data: bytes) -> bytes:
        try:
            return self._ring.open(kid, data, associated_data("key", name))[1]
        except KeyError:
            raise StoreError(f"internal key {name!r} in {self.label} is sealed under master key id "
                             f"{kid}, which is not in the key ring") from None
        except DecryptError:
            raise StoreError(f"internal key {name!r} in {self.label} cannot be decrypted: "
                             "the row is damaged") from None

    # -- the master key ring

    def rotate_master_key(self) -> int:
        """Re-seal every row under the ring's first key, in one transaction; returns how many
        rows moved. Nothing changes when some row does not open (it is named)."""
        target = self._ring.sealing_id
        with self._tx(write=True) as cur:
            if self._serialize_writes:
                cur.execute(self._serialize_writes)
            secrets = cur.execute("SELECT name, type, key_id, data FROM flowlet_secrets").fetchall()
            keys = cur.execute("SELECT name, key_id, data FROM flowlet_keys").fetchall()
            moved_secrets = [(target, self._reseal(associated_data("secret", n, t), n, k, d), n)
                             for n, t, k, d in secrets if k != target]
            moved_keys = [(target, self._reseal(associated_data("key", n), n, k, d), n)
                          for n, k, d in keys if k != target]
            cur.executemany("UPDATE flowlet_secrets SET key_id = ?, data = ? WHERE name = ?",
                            moved_secrets)
            cur.executemany("UPDATE flowlet_keys SET key_id = ?, data = ? WHERE name = ?", moved_keys)
            kid, check = self._ring.seal(_KEY_CHECK_PLAINTEXT, _KEY_CHECK_AD)
            cur.execute("UPDATE flowlet_meta SET key_id = ?, data = ? WHERE name = 'key_check'",
                        (kid, check))
            self._bump(cur)
        return len(moved_secrets) + len(moved_keys)

    def _reseal(self, aad: bytes, name: str, kid: str | None, data: bytes) -> bytes:
        try:
            plaintext = self._ring.open(kid, bytes(data), aad)[1]
        except KeyError:
            raise StoreError(f"cannot rotate: {name!r} is sealed under master key id {kid}, which "
                             f"is not in the key ring ({self._ring.describe}); add it, or delete "
                             f"{name!r}; nothing was changed") from None
        except DecryptError:
            raise StoreError(f"cannot rotate: {name!r} in {self.label} cannot be decrypted (the row "
                             "is damaged); set it again or delete it; nothing was changed") from None
        return self._ring.seal(plaintext, aad)[1]

    # -- backup: sealed rows out and in, never opened for writing anywhere

    def dump(self) -> Snapshot:
        """Every sealed row at one moment (writers wait meanwhile)."""
        with self._tx(write=True) as cur:
            if self._serialize_writes:
                cur.execute(self._serialize_writes)
            return _read_snapshot(cur)

    def restore(self, snapshot: Snapshot) -> None:
        """Insert sealed rows into an empty store, in one transaction."""
        with self._tx(write=True) as cur:
            if self._serialize_writes:
                cur.execute(self._serialize_writes)
            held = sum(int(cur.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                       for table in ("flowlet_secrets", "flowlet_keys"))
            if held:
                raise StoreError(f"the store {self.label} is not empty ({held} secret"
                                 f"{'s' if held != 1 else ''} or internal keys): import restores "
                                 "into an empty store only; nothing was changed")
            cur.executemany("INSERT INTO flowlet_secrets (name, type, key_id, data) VALUES (?, ?, ?, ?)",
                            [(n, t, k, d) for n, (t, k, d) in snapshot.secrets.items()])
            cur.executemany("INSERT INTO flowlet_keys (name, key_id, data) VALUES (?, ?, ?)",
                            [(n, k, d) for n, (k, d) in snapshot.keys.items()])
            self._bump(cur)

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
                if write and self.changes is not None:
                    self.changes.bump()
            except StoreError:
                raise
            except self._errors as exc:
                raise StoreError(f"store {self.label}: {_first_line(exc)}") from None

    @abc.abstractmethod
    def _transaction(self, write: bool) -> Any:
        """A context manager yielding a DB-API cursor inside one transaction (the backend's)."""

    def _seal_secret(self, secret: Secret) -> tuple[str, bytes]:
        if not valid_name(secret.name):
            raise StoreError(f"invalid secret name {secret.name!r}: use letters, digits, '.', '_' "
                             "and '-' (starting with a letter or digit), at most 128 characters")
        plaintext = json.dumps(to_data(secret), separators=(",", ":")).encode("utf-8")
        return self._ring.seal(plaintext, associated_data("secret", secret.name, secret.type))

    def _upsert(self, cur: _Cursor, secret: Secret, sealed: tuple[str, bytes]) -> None:
        cur.execute("INSERT INTO flowlet_secrets (name, type, key_id, data) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET type = excluded.type, "
                    "key_id = excluded.key_id, data = excluded.data",
                    (secret.name, secret.type, sealed[0], sealed[1]))
        self._bump(cur)

    def _bump(self, cur: _Cursor) -> None:
        cur.execute("UPDATE flowlet_meta SET num = num + 1 WHERE name = 'version'")
        if self._notify_sql:
            cur.execute(self._notify_sql)

    # -- opening: schema version, upgrades, the key check

    def _open_ring(self, key_source: MasterKeySource) -> KeyRing:
        """Find the schema version, create or upgrade the tables, and prove the ring fits."""
        version, check = self._read_schema()
        if version is not None and version > SCHEMA_VERSION:
            raise self._newer(version)
        ring = key_source.load(create=check is None)
        if ring is None:
            raise StoreError(f"the store {self.label} was created with a master key that is not "
                             f"here: {key_source.file} is missing; restore it or set "
                             f"{MASTER_KEY_ENV} to the key the store was created with")
        if version != SCHEMA_VERSION or check is None:
            check = self._set_up(ring, key_source)
        self._check_ring(ring, key_source, check)
        return ring

    def _read_schema(self) -> tuple[int | None, tuple[str | None, bytes] | None]:
        """(schema version or None for an empty database, the key check row) without a lock."""
        with self._tx() as cur:
            return self._schema_state(cur)

    def _schema_state(self, cur: _Cursor) -> tuple[int | None, tuple[str | None, bytes] | None]:
        if cur.execute(self._table_exists_sql, ("flowlet_meta",)).fetchone() in (None, (None,)):
            return None, None
        row = cur.execute("SELECT num FROM flowlet_meta WHERE name = 'schema'").fetchone()
        version = 1 if row is None else int(row[0])  # 0.1.0 wrote no schema row
        column = "key_id" if version >= 2 else "NULL"
        row = cur.execute(f"SELECT {column}, data FROM flowlet_meta WHERE name = 'key_check'").fetchone()
        check = None if row is None or row[1] is None else (row[0], bytes(row[1]))
        return version, check

    def _set_up(self, ring: KeyRing, key_source: MasterKeySource) -> tuple[str | None, bytes]:
        """Under a lock, in one transaction: create or upgrade the tables, write the key check."""
        with self._tx(write=True) as cur:
            if self._setup_lock:
                cur.execute(self._setup_lock)
            version, check = self._schema_state(cur)  # again: another process may have done it
            if version is None:
                for ddl in self._ddl:
                    cur.execute(ddl)
                cur.execute("INSERT INTO flowlet_meta (name, num) VALUES ('version', 0)")
                cur.execute("INSERT INTO flowlet_meta (name, num) VALUES ('schema', ?)",
                            (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise self._newer(version)
            elif version < SCHEMA_VERSION:
                self._upgrade(cur, version, ring, key_source, check)
            if check is None:
                kid, data = ring.seal(_KEY_CHECK_PLAINTEXT, _KEY_CHECK_AD)
                cur.execute("INSERT INTO flowlet_meta (name, num, data, key_id) "
                            "VALUES ('key_check', 0, ?, ?)", (data, kid))
                check = (kid, data)
        return check

    def _upgrade(self, cur: _Cursor, version: int, ring: KeyRing, key_source: MasterKeySource,
                 check: tuple[str | None, bytes] | None) -> None:
        # rows written before key ids existed were all sealed under the key-check's key
        kid = None
        if check is not None:
            kid = self._check_ring(ring, key_source, check)
        while version < SCHEMA_VERSION:
            for sql in _UPGRADES[version]:
                cur.execute(sql)
            version += 1
        if kid is not None:
            for table in ("flowlet_secrets", "flowlet_keys", "flowlet_meta"):
                cur.execute(f"UPDATE {table} SET key_id = ? WHERE key_id IS NULL AND data IS NOT NULL",
                            (kid,))
        cur.execute("INSERT INTO flowlet_meta (name, num) VALUES ('schema', ?) "
                    "ON CONFLICT (name) DO UPDATE SET num = excluded.num", (SCHEMA_VERSION,))
        self._bump(cur)

    def _check_ring(self, ring: KeyRing, key_source: MasterKeySource,
                    check: tuple[str | None, bytes]) -> str:
        """The id of the ring's key that opens the key check; else a clear error."""
        kid, data = check
        try:
            return ring.open(None, data, _KEY_CHECK_AD)[0]
        except DecryptError:
            pass
        needs = f" (it needs master key id {kid})" if kid else ""
        have = ", ".join(ring.ids)
        raise StoreError(f"wrong master key for the store {self.label}: the key from "
                         f"{key_source.describe} is not the one the store was created with{needs}; "
                         f"this key ring has id{'s' if len(ring.ids) > 1 else ''} {have} "
                         f"(set {MASTER_KEY_ENV} to that key, or restore its .flowlet/master.key)")

    def _newer(self, version: int) -> NewerStoreError:
        return NewerStoreError(
            f"the store {self.label} has schema version {version}, made by a newer Flowlet; this "
            f"Flowlet understands versions up to {SCHEMA_VERSION}: upgrade Flowlet (the store is "
            "left unchanged)")


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


def _read_snapshot(cur: _Cursor) -> Snapshot:
    version = cur.execute("SELECT num FROM flowlet_meta WHERE name = 'version'").fetchone()[0]
    secrets = {name: (type_, kid, bytes(data)) for name, type_, kid, data in
               cur.execute("SELECT name, type, key_id, data FROM flowlet_secrets").fetchall()}
    keys = {name: (kid, bytes(data)) for name, kid, data in
            cur.execute("SELECT name, key_id, data FROM flowlet_keys").fetchall()}
    return Snapshot(int(version), secrets, keys)
