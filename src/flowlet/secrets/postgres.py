"""The shared store backend: PostgreSQL (psycopg 3), for several servers on one database.

Set ``store: postgresql://user@host/db`` in flowlet.yaml. Tables live in the connection's
``search_path``; to keep them in their own schema add ``?options=-csearch_path%3Dmyschema``.
Every server must use the same master key (set FLOWLET_MASTER_KEY on each).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict

from flowlet.secrets.store import MasterKeySource, Store, StoreError

# Serializes first-time table creation between servers (CREATE TABLE IF NOT EXISTS races).
_SCHEMA_LOCK_ID = 0x466C6F776C6574  # "Flowlet"
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
    _ddl = (
        f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_ID})",
        "CREATE TABLE IF NOT EXISTS flowlet_meta "
        "(name TEXT PRIMARY KEY, num BIGINT NOT NULL DEFAULT 0, data BYTEA)",
        "CREATE TABLE IF NOT EXISTS flowlet_secrets "
        "(name TEXT PRIMARY KEY, type TEXT NOT NULL, data BYTEA NOT NULL)",
        "CREATE TABLE IF NOT EXISTS flowlet_keys (name TEXT PRIMARY KEY, data BYTEA NOT NULL)",
    )

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
                first = (str(exc).strip().splitlines() or ["connection failed"])[0]
                raise StoreError(f"cannot connect to the store {self.label}: {first}") from None
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

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
