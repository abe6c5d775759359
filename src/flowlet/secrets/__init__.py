"""Secrets: typed credentials in the workspace store, encrypted under the master key.

``open_store(workspace_dir, store_setting)`` opens the store (SQLite by default, or
PostgreSQL); a ``SecretsView`` is one worker's in-memory copy that follows the store.
"""

from flowlet.secrets.model import BasicSecret, JwtSecret, Secret, Unavailable, ValueSecret
from flowlet.secrets.open import open_store
from flowlet.secrets.store import MissingKeyError, Store, StoreError
from flowlet.secrets.view import SecretsView

__all__ = [
    "BasicSecret", "JwtSecret", "ValueSecret", "Secret", "Unavailable",
    "Store", "StoreError", "MissingKeyError", "open_store", "SecretsView",
]
