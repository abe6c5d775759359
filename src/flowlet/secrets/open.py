"""``open_store``: the one place that knows every backend (the backends import the store
module, never this one, so no import cycle)."""

from __future__ import annotations

from pathlib import Path

from flowlet.secrets.changes import open_counter
from flowlet.secrets.keyring import STATE_DIR, MasterKeySource, StoreError
from flowlet.secrets.store import Store


def open_store(workspace_dir: Path | str, store_setting: str = "sqlite") -> Store:
    """Open the workspace's store: ``sqlite`` (``.flowlet/state.db``) or a postgresql:// URL."""
    workspace_dir = Path(workspace_dir)
    store = _open_backend(workspace_dir, store_setting)
    if (workspace_dir / STATE_DIR).is_dir():
        store.changes = open_counter(workspace_dir / STATE_DIR)
    return store


def _open_backend(workspace_dir: Path, store_setting: str) -> Store:
    key_source = MasterKeySource(workspace_dir)
    if store_setting == "sqlite":
        from flowlet.secrets.sqlite import SqliteStore

        return SqliteStore(workspace_dir / STATE_DIR / "state.db", key_source)
    if isinstance(store_setting, str) and store_setting.startswith(("postgresql://", "postgres://")):
        from flowlet.secrets.postgres import PostgresStore

        return PostgresStore(store_setting, key_source)
    raise StoreError(f"unknown store {store_setting!r}: use 'sqlite' or a postgresql:// URL")
