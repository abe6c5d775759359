"""The default store backend: SQLite at ``.flowlet/state.db``.

WAL mode lets readers (every worker's refresh loop) run while one writer commits; the busy
timeout makes concurrent writers from several processes wait instead of failing. Writes take
the write lock up front (BEGIN IMMEDIATE) so a read-then-write never deadlocks.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flowlet.secrets.keyring import MasterKeySource, StoreError, make_state_dir
from flowlet.secrets.store import Store

BUSY_TIMEOUT_S = 10.0


class SqliteStore(Store):
    backend = "sqlite"
    _param = "?"
    _errors = (sqlite3.Error,)
    # the latest schema; an older store is upgraded by Store._upgrade
    _ddl = (
        "CREATE TABLE IF NOT EXISTS flowlet_meta "
        "(name TEXT PRIMARY KEY, num INTEGER NOT NULL DEFAULT 0, data BLOB, key_id TEXT)",
        "CREATE TABLE IF NOT EXISTS flowlet_secrets "
        "(name TEXT PRIMARY KEY, type TEXT NOT NULL, data BLOB NOT NULL, key_id TEXT)",
        "CREATE TABLE IF NOT EXISTS flowlet_keys "
        "(name TEXT PRIMARY KEY, data BLOB NOT NULL, key_id TEXT)",
    )
    _table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    # the set-up runs in a BEGIN IMMEDIATE transaction: it already excludes other writers
    _setup_lock = ""

    def __init__(self, path: Path, key_source: MasterKeySource):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []
        make_state_dir(self.path.parent)
        try:
            # created private up front; SQLite gives its -wal and -shm files the same mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc.strerror}") from None
        super().__init__(str(self.path), key_source)

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            # a forked child must not use (or close) its parent's connection
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable across crashes in WAL mode
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn.cursor()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
