"""Make the 0.1.0 store fixtures. Run with Flowlet 0.1.0's code first on sys.path:

    git archive f63847c src | tar -x -C /tmp/flowlet-0.1.0
    PYTHONPATH=/tmp/flowlet-0.1.0/src python tests/data/store-0.1.0/make.py tests/data/store-0.1.0 PG_URL

writes ``state.db`` (SQLite, made by 0.1.0's SqliteStore) and ``postgres.sql`` (the rows
0.1.0's PostgresStore wrote into a scratch schema of PG_URL, as plain SQL with 0.1.0's table
definitions). Both are sealed under FIXTURE_MASTER_KEY (in tests/test_secrets_upgrade.py).
"""

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from argon2 import PasswordHasher

FIXTURE_MASTER_KEY = "Zml4dHVyZS1tYXN0ZXIta2V5LWZvci0wLjEuMC1zdG8"  # b"fixture-master-key-for-0.1.0-store"[:32]


def fill(store):
    from flowlet.secrets import BasicSecret, JwtSecret, ValueSecret

    store.put(BasicSecret("staff", {"alice": PasswordHasher().hash("fixture-password-alice")}))
    store.put(ValueSecret("payment-key", "fixture-value-sk-0.1.0"))
    store.put(JwtSecret("api-jwt", hs_key=b"fixture-hs-key-that-is-32-bytes-long",
                        algorithms=("HS256",), issuer="fixture"))
    store.put_key("csrf-keys", b"fixture-internal-csrf-key-material")


def main(out: Path, pg_base: str) -> None:
    os.environ["FLOWLET_MASTER_KEY"] = FIXTURE_MASTER_KEY
    from flowlet.secrets import open_store
    from flowlet.secrets.postgres import PostgresStore

    with tempfile.TemporaryDirectory() as tmp:
        with open_store(tmp) as store:
            fill(store)
        shutil.copyfile(Path(tmp) / ".flowlet" / "state.db", out / "state.db")
    schema = "fixture_" + uuid.uuid4().hex[:8]
    admin = psycopg.connect(pg_base, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        with open_store(tmp, f"{pg_base}?options=-csearch_path%3D{schema}") as store:
            fill(store)
        lines = ["-- Rows written by Flowlet 0.1.0's PostgresStore (see make.py); run in an empty schema."]
        lines += [ddl + ";" for ddl in PostgresStore._ddl if ddl.startswith("CREATE")]
        for table, columns in (("flowlet_meta", "name, num, data"), ("flowlet_secrets", "name, type, data"),
                               ("flowlet_keys", "name, data")):
            for row in admin.execute(f"SELECT {columns} FROM {schema}.{table} ORDER BY name"):
                values = ", ".join("NULL" if v is None else str(v) if isinstance(v, int)
                                   else f"'\\x{bytes(v).hex()}'::bytea" if isinstance(v, (bytes, memoryview))
                                   else "'" + v.replace("'", "''") + "'" for v in row)
                lines.append(f"INSERT INTO {table} ({columns}) VALUES ({values});")
        (out / "postgres.sql").write_text("\n".join(lines) + "\n")
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
