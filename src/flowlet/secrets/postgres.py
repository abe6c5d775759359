"""The shared store backend: PostgreSQL (psycopg 3), for several servers on one database.

Set ``store: postgresql://user@host/db`` in flowlet.yaml. Tables live in the connection's
``search_path``; to keep them in their own schema add ``?options=-csearch_path%3Dmyschema``.
Every server must use the same master key (set FLOWLET_MASTER_KEY on each).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict

from flowlet.secrets.keyring import MasterKeySource, StoreError
from flowlet.secrets.store import Store

# Serializes table creation and upgrades between servers starting together.
_SCHEMA_LOCK_ID = 0x466C6F776C6574  # "Flowlet"
# Every write notifies this channel with the schema the tables live in (one database may hold
# several stores); listeners reload on it instead of waiting for their next poll.
NOTIFY_CHANNEL = "flowlet_store"
CONNECT_TIMEOUT_S = 10


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql database (unparsable URL)"
    host = info.get("host", "localhost")
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{host}{port}/{info.get('dbname', '')}"


class PostgresStore(Store):
    backend = "postgresql"
    _param = "%s"
    _errors = (psycopg.Error,)
    # the latest schema; an older store is upgraded by Store._upgrade
    _ddl = (
        "CREATE TABLE IF NOT EXISTS flowlet_meta "
        "(name TEXT PRIMARY KEY, num BIGINT NOT NULL DEFAULT 0, data BYTEA, key_id TEXT)",
        "CREATE TABLE IF NOT EXISTS flowlet_secrets "
        "(name TEXT PRIMARY KEY, type TEXT NOT NULL, data BYTEA NOT NULL, key_id TEXT)",
        "CREATE TABLE IF NOT EXISTS flowlet_keys "
        "(name TEXT PRIMARY KEY, data BYTEA NOT NULL, key_id TEXT)",
    )
    _table_exists_sql = "SELECT to_regclass(CAST(? AS text))"
    _setup_lock = f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_ID})"
    _notify_sql = f"SELECT pg_notify('{NOTIFY_CHANNEL}', current_schema())"

    # READ COMMITTED does not stop two transactions reading the same row before either
    # writes: an update first locks the version row, which every write changes anyway
    _serialize_writes = "SELECT num FROM flowlet_meta WHERE name = 'version' FOR UPDATE"

    def __init__(self, url: str, key_source: MasterKeySource):
        self._url = url
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[Any] = []
        super().__init__(describe_url(url), key_source)

    def __repr__(self) -> str:
        return f"<PostgresStore {self.label}>"

    def _connection(self) -> psycopg.Connection:
        if self._pid != os.getpid():
            # a forked child must not use or close the parent's socket: keep it referenced
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None  # reconnect after the server went away
        if self._conn is None:
            try:
                self._conn = psycopg.connect(self._url, autocommit=True,
                                             connect_timeout=CONNECT_TIMEOUT_S)
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to the store {self.label}: {_short(exc)}") from None
        return self._conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Any]:
        conn = self._connection()
        if not write:
            # reads run in autocommit: one round trip each. Readers take the version first,
            # so a write that lands between their statements only causes one more reload.
            with conn.cursor() as cur:
                yield cur
            return
        with conn.transaction():
            with conn.cursor() as cur:
                yield cur

    def listen(self, stop: threading.Event, poll_s: float = 0.5) -> Iterator[None]:
        """Yield once connected, then once per write to this store, until ``stop`` is set.

        Uses its own connection (a listening session must stay idle). Raises StoreError when
        the database cannot be reached or the connection is lost.
        """
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the store {self.label}: {_short(exc)}") from None
        try:
            with conn:
                schema = conn.execute("SELECT current_schema()").fetchone()[0]
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                yield  # connected: the caller catches up on what it missed
                while not stop.is_set():
                    if any(n.payload == schema for n in conn.notifies(timeout=poll_s)):
                        yield
        except psycopg.Error as exc:
            raise StoreError(f"lost the notification connection to {self.label}: {_short(exc)}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _short(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["connection failed"])[0]
