"""Master key ring, rotation, backups and schema upgrades of the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from argon2 import PasswordHasher

from flowlet.secrets import (BasicSecret, JwtSecret, SecretsView, StoreError, ValueSecret,
                             open_store)
from flowlet.secrets.crypto import Envelope, associated_data
from flowlet.secrets.keyring import key_id
from flowlet.secrets.store import SCHEMA_VERSION

from conftest import PG_BASE, make_workspace

DATA = Path(__file__).parent / "data" / "store-0.1.0"
FIXTURE_KEY = "Zml4dHVyZS1tYXN0ZXIta2V5LWZvci0wLjEuMC1zdG8"  # what tests/data/store-0.1.0 is sealed under
VALUE = "sk_live_plaintext_that_must_never_be_written"
PASSWORD = "a password nobody may read"
HS_KEY = b"an-hs256-key-that-is-32-bytes-ok!!"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


OLD, NEW, OTHER = (os.urandom(32) for _ in range(3))


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv("FLOWLET_MASTER_KEY", raising=False)


@pytest.fixture(params=["sqlite", "postgres"])
def setting(request):
    return "sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def ring(monkeypatch, *keys: bytes) -> None:
    monkeypatch.setenv("FLOWLET_MASTER_KEY", ",".join(b64u(k) for k in keys))


def raw_rows(ws: Path, setting: str, sql: str) -> list:
    if setting == "sqlite":
        with sqlite3.connect(ws / ".flowlet" / "state.db") as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(setting, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def fill(store) -> None:
    store.put(BasicSecret("staff", {"alice": PasswordHasher().hash(PASSWORD)}))
    store.put(ValueSecret("payment", VALUE))
    store.put(JwtSecret("api", hs_key=HS_KEY, algorithms=("HS256",)))
    store.put_key("csrf-keys", b"internal-key-material-0123456789")


# ---- the key ring --------------------------------------------------------------------------

def test_the_first_key_seals_and_every_row_records_its_key_id(tmp_path, setting, monkeypatch):
    ring(monkeypatch, OLD)
    with open_store(tmp_path, setting) as store:
        fill(store)
    ring(monkeypatch, NEW, OLD)
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("later", "x"))
        assert store.get("payment").value == VALUE  # sealed under OLD, opened by the second key
    rows = dict(raw_rows(tmp_path, setting, "SELECT name, key_id FROM flowlet_secrets"))
    assert rows == {"staff": key_id(OLD), "payment": key_id(OLD), "api": key_id(OLD),
                    "later": key_id(NEW)}
    assert len(key_id(OLD)) == 8 and key_id(OLD) != key_id(NEW)


def test_key_ids_never_reveal_the_key():
    kid = key_id(OLD)
    assert kid not in (OLD.hex(), b64u(OLD)) and kid != OLD.hex()[:8]


def test_master_key_file_may_hold_several_base64url_keys_one_per_line(tmp_path, monkeypatch):
    ring(monkeypatch, OLD)
    with open_store(tmp_path) as store:
        store.put(ValueSecret("v", VALUE))
    monkeypatch.delenv("FLOWLET_MASTER_KEY")
    key_file = tmp_path / ".flowlet" / "master.key"
    key_file.write_text(f"{b64u(NEW)}\n{b64u(OLD)}=\n\n")
    key_file.chmod(0o600)
    with open_store(tmp_path) as store:
        assert store.get("v").value == VALUE
        assert store.ring.sealing_id == key_id(NEW)


def test_a_master_key_file_of_32_raw_bytes_stays_valid(tmp_path):
    (tmp_path / ".flowlet").mkdir(mode=0o700)
    key_file = tmp_path / ".flowlet" / "master.key"
    key_file.write_bytes(OLD)
    key_file.chmod(0o600)
    with open_store(tmp_path) as store:
        store.put(ValueSecret("v", VALUE))
        assert store.ring.ids == (key_id(OLD),)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_master_key_readable_by_group_or_others_is_refused_by_name(tmp_path, mode):
    open_store(tmp_path).close()
    key_file = tmp_path / ".flowlet" / "master.key"
    key_file.chmod(mode)
    with pytest.raises(StoreError) as info:
        open_store(tmp_path)
    assert str(key_file) in str(info.value) and "chmod 600" in str(info.value)
    assert f"{mode:04o}" in str(info.value)


def test_a_bad_key_in_the_list_is_named_by_position_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", f"{b64u(OLD)},{b64u(b'short')}")
    with pytest.raises(StoreError, match=r"key #2.*32 bytes") as info:
        open_store(tmp_path)
    assert b64u(OLD) not in str(info.value)


def test_a_ring_without_the_stores_key_is_refused_and_names_the_needed_id(tmp_path, setting, monkeypatch):
    ring(monkeypatch, OLD)
    with open_store(tmp_path, setting) as store:
        fill(store)
    ring(monkeypatch, OTHER, NEW)
    with pytest.raises(StoreError, match="wrong master key") as info:
        open_store(tmp_path, setting)
    assert key_id(OLD) in str(info.value)


def test_a_secret_under_a_key_the_ring_lacks_is_named_and_the_others_keep_working(
        tmp_path, setting, monkeypatch, caplog):
    ring(monkeypatch, OLD)
    with open_store(tmp_path, setting) as store:
        fill(store)
    ring(monkeypatch, NEW, OLD)  # a server that has the new key writes one secret under it
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("payment", "rewritten-under-new"))
    ring(monkeypatch, OLD)       # a server that was not given the new key
    with open_store(tmp_path, setting) as store:
        listing = {s["name"]: s for s in store.list()}
        assert listing["payment"]["master_key_id"] == key_id(NEW)
        assert key_id(NEW) in listing["payment"]["error"]
        assert listing["staff"]["users"] == ["alice"]
        with caplog.at_level(logging.ERROR, logger="flowlet.secrets"):
            view = SecretsView(store)  # starting is not an error
        assert view.get("payment") is None
        unavailable = view.unavailable("payment")
        assert unavailable.key_id == key_id(NEW) and unavailable.stored_type == "value"
        assert view.unavailable("staff") is None and view.get("staff").users
        assert view.get("api").hs_key == HS_KEY and view.get_key("csrf-keys")
        assert view.health()["unavailable"] == ["payment"]
    assert f"secret 'payment' is sealed under master key id {key_id(NEW)}" in caplog.text
    assert "rewritten-under-new" not in caplog.text


def test_a_secret_under_a_missing_key_is_not_overwritten_by_an_update(tmp_path, setting, monkeypatch):
    ring(monkeypatch, OLD)
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("fine", "x"))
    ring(monkeypatch, NEW, OLD)
    with open_store(tmp_path, setting) as store:
        store.put(BasicSecret("staff", {"alice": "h1"}))
    ring(monkeypatch, OLD)
    with open_store(tmp_path, setting) as store:
        with pytest.raises(StoreError, match=f"{key_id(NEW)}.*nothing was changed"):
            store.update("staff", lambda cur: BasicSecret("staff", {"bob": "h2"}))
        assert store.delete("staff") is True  # deleting needs no key


def test_secrets_list_names_the_missing_key_id(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path, {})
    env_old = {"FLOWLET_MASTER_KEY": b64u(OLD)}
    env_both = {"FLOWLET_MASTER_KEY": f"{b64u(NEW)},{b64u(OLD)}"}
    run_cli(ws, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin="old-value", env=env_old)
    run_cli(ws, "secrets", "set", "w", "--type", "value", "--value-stdin", stdin="new-value", env=env_both)
    out = run_cli(ws, "secrets", "list", env=env_old).stdout
    assert "w" in out and key_id(NEW) in out and "error" in out
    listing = json.loads(run_cli(ws, "secrets", "list", "--json", env=env_old).stdout)
    assert listing[1]["master_key_id"] == key_id(NEW)


def run_cli(ws: Path, *args: str, stdin: str = "", env: dict | None = None, status: int = 0):
    full_env = {k: v for k, v in os.environ.items() if k != "FLOWLET_MASTER_KEY"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "flowlet.cli", *args, "-w", str(ws)], input=stdin,
                          capture_output=True, text=True, env=full_env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, (proc.stdout, proc.stderr)
    return proc


# ---- rotation ------------------------------------------------------------------------------

def test_rotation_reseals_every_row_under_the_first_key_and_counts_them(tmp_path, setting, monkeypatch):
    ring(monkeypatch, OLD)
    with open_store(tmp_path, setting) as store:
        fill(store)
    ring(monkeypatch, NEW, OLD)
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("already-new", "x"))
        before = store.version()
        assert store.rotate_master_key() == 4       # 3 secrets + 1 internal key; not already-new
        assert store.version() != before
        assert store.rotate_master_key() == 0
    ids = {kid for (kid,) in raw_rows(tmp_path, setting, "SELECT key_id FROM flowlet_secrets "
                                      "UNION ALL SELECT key_id FROM flowlet_keys "
                                      "UNION ALL SELECT key_id FROM flowlet_meta WHERE name = 'key_check'")}
    assert ids == {key_id(NEW)}
    ring(monkeypatch, NEW)  # the old key can go
    with open_store(tmp_path, setting) as store:
        assert store.get("payment").value == VALUE
        assert store.get_key("csrf-keys") == b"internal-key-material-0123456789"
        assert store.get("staff").users["alice"].startswith("$argon2id$")


def test_rotation_stops_without_change_when_a_row_does_not_open(tmp_path, setting, monkeypatch):
    ring(monkeypatch, OLD)
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("fine", "y"))
    ring(monkeypatch, OTHER, OLD)
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("stranded", "x"))   # sealed under OTHER
    ring(monkeypatch, NEW, OLD)
    with open_store(tmp_path, setting) as store:
        with pytest.raises(StoreError, match=f"'stranded'.*{key_id(OTHER)}.*nothing was changed"):
            store.rotate_master_key()
    assert dict(raw_rows(tmp_path, setting, "SELECT name, key_id FROM flowlet_secrets")) == {
        "stranded": key_id(OTHER), "fine": key_id(OLD)}


def test_cli_rotation_prints_how_many_rows_moved(tmp_path):
    ws = make_workspace(tmp_path, {})
    env_old = {"FLOWLET_MASTER_KEY": b64u(OLD)}
    env_both = {"FLOWLET_MASTER_KEY": f"{b64u(NEW)},{b64u(OLD)}"}
    for name in ("a", "b", "c"):
        run_cli(ws, "secrets", "set", name, "--type", "value", "--value-stdin", stdin=VALUE, env=env_old)
    out = run_cli(ws, "secrets", "rotate-master-key", env=env_both).stdout
    assert "re-sealed 3 rows" in out and key_id(NEW) in out
    assert "re-sealed 0 rows" in run_cli(ws, "secrets", "rotate-master-key", env=env_both).stdout
    assert "a" in run_cli(ws, "secrets", "list", env={"FLOWLET_MASTER_KEY": b64u(NEW)}).stdout


# ---- backups -------------------------------------------------------------------------------

def _forms(secret: bytes) -> list[bytes]:
    forms = [secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret),
             base64.urlsafe_b64encode(secret).rstrip(b"="), json.dumps(secret.decode("latin-1")).encode()]
    return [f for f in forms if len(f) >= 8]


def _written_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and p.name != "master.key"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_export_then_import_into_an_empty_store_writes_no_plaintext(tmp_path, backend, request):
    """Round trip through the CLI; every written file and the database hold no plaintext."""
    if backend == "sqlite":
        store_a = store_b = "sqlite"
    else:
        store_a, store_b = request.getfixturevalue("pg_url"), _second_schema(request)
    src = make_workspace(tmp_path / "src", {"flowlet.yaml": f"name: a\nstore: '{store_a}'\n"})
    dst = make_workspace(tmp_path / "dst", {"flowlet.yaml": f"name: b\nstore: '{store_b}'\n"})
    env = {"FLOWLET_MASTER_KEY": f"{b64u(NEW)},{b64u(OLD)}"}
    run_cli(src, "secrets", "set", "staff", "--type", "basic", "--user", "alice", "--password-stdin",
            stdin=PASSWORD, env={"FLOWLET_MASTER_KEY": b64u(OLD)})
    run_cli(src, "secrets", "set", "payment", "--type", "value", "--value-stdin", stdin=VALUE, env=env)
    run_cli(src, "secrets", "set", "api", "--type", "jwt", "--hs-key-stdin", stdin=HS_KEY.decode(), env=env)
    run_cli(src, "secrets", "rotate-csrf", env=env)
    export = tmp_path / "backup" / "secrets.json"
    export.parent.mkdir()
    out = run_cli(src, "secrets", "export", "--to", str(export), env=env).stdout
    assert "exported 3 secrets" in out and key_id(OLD) in out and key_id(NEW) in out
    assert oct(export.stat().st_mode & 0o777) == "0o600"
    doc = json.loads(export.read_text())
    assert {s["name"]: s["key_id"] for s in doc["secrets"]} == {
        "staff": key_id(OLD), "payment": key_id(NEW), "api": key_id(NEW)}
    run_cli(dst, "secrets", "import", "--from", str(export), env=env)
    with _env(env):
        with open_store(dst, store_b) as store:
            assert store.get("payment").value == VALUE
            assert store.get("api").hs_key == HS_KEY
            assert PasswordHasher().verify(store.get("staff").users["alice"], PASSWORD)
            assert store.get_key("csrf-keys") is not None
    raw = b"".join(p.read_bytes() for p in _written_files(tmp_path))
    if backend == "postgres":
        raw += b"".join(bytes(d) for url in (store_a, store_b) for (d,) in
                        raw_rows(tmp_path, url, "SELECT data FROM flowlet_secrets UNION ALL "
                                                "SELECT data FROM flowlet_keys"))
    assert b"payment" in raw  # the check can see what was written at all
    for needle in (VALUE.encode(), PASSWORD.encode(), HS_KEY, b"$argon2id$"):
        for form in _forms(needle):
            assert form not in raw, form[:12]


def _second_schema(request) -> str:
    import uuid
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = psycopg.connect(PG_BASE, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")

    def drop():
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
    request.addfinalizer(drop)
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


class _env:
    def __init__(self, values: dict):
        self.values, self.saved = values, {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_import_refuses_a_store_that_is_not_empty(tmp_path):
    ws = make_workspace(tmp_path, {})
    env = {"FLOWLET_MASTER_KEY": b64u(OLD)}
    run_cli(ws, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin=VALUE, env=env)
    run_cli(ws, "secrets", "export", "--to", str(tmp_path / "e.json"), env=env)
    err = run_cli(ws, "secrets", "import", "--from", str(tmp_path / "e.json"), env=env, status=1).stderr
    assert "not empty" in err and "nothing was changed" in err


def test_import_without_the_exports_keys_creates_nothing(tmp_path):
    src = make_workspace(tmp_path / "src", {})
    dst = make_workspace(tmp_path / "dst", {})
    run_cli(src, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin=VALUE,
            env={"FLOWLET_MASTER_KEY": b64u(OLD)})
    run_cli(src, "secrets", "export", "--to", str(tmp_path / "e.json"), env={"FLOWLET_MASTER_KEY": b64u(OLD)})
    err = run_cli(dst, "secrets", "import", "--from", str(tmp_path / "e.json"), status=1).stderr
    assert key_id(OLD) in err and "nothing was imported" in err
    assert not (dst / ".flowlet").exists()
    err = run_cli(dst, "secrets", "import", "--from", str(tmp_path / "e.json"),
                  env={"FLOWLET_MASTER_KEY": b64u(NEW)}, status=1).stderr
    assert key_id(OLD) in err


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"),
    ('{"format": "other"}', "not a `flowlet secrets export` file"),
    ('{"format": "flowlet-secrets-export", "format_version": 9}', "format version 9"),
    ('{"format": "flowlet-secrets-export", "format_version": 1, "secrets": [{"name": "x", "type": "value", '
     '"sealed": "!!"}], "keys": []}', "not valid base64url"),
    ('{"format": "flowlet-secrets-export", "format_version": 1, "secrets": [{"name": "../x", "type": "value", '
     '"sealed": "AA"}], "keys": []}', "invalid or repeated name"),
])
def test_import_of_a_bad_file_is_one_clear_line(tmp_path, content, message):
    ws = make_workspace(tmp_path, {})
    (tmp_path / "e.json").write_text(content)
    err = run_cli(ws, "secrets", "import", "--from", str(tmp_path / "e.json"),
                  env={"FLOWLET_MASTER_KEY": b64u(OLD)}, status=1).stderr
    assert message in err and len(err.strip().splitlines()) == 1


# ---- schema version and upgrades -----------------------------------------------------------

def test_a_new_store_records_the_schema_version(tmp_path, setting):
    open_store(tmp_path, setting).close()
    assert raw_rows(tmp_path, setting, "SELECT num FROM flowlet_meta WHERE name = 'schema'") == [
        (SCHEMA_VERSION,)]


def test_a_store_from_a_newer_flowlet_is_refused_unchanged(tmp_path, setting):
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("v", "x"))
    raw_rows(tmp_path, setting, f"UPDATE flowlet_meta SET num = {SCHEMA_VERSION + 1} WHERE name = 'schema'")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*newer Flowlet.*upgrade Flowlet"):
        open_store(tmp_path, setting)
    assert raw_rows(tmp_path, setting, "SELECT num FROM flowlet_meta WHERE name = 'schema'") == [
        (SCHEMA_VERSION + 1,)]
    ws = make_workspace(tmp_path, {"flowlet.yaml": f"name: t\nstore: '{setting}'\n"})
    err = run_cli(ws, "secrets", "list", status=1).stderr
    assert "newer Flowlet" in err


def old_store(tmp_path: Path, setting: str) -> None:
    """Put the fixture made by Flowlet 0.1.0 in place (tests/data/store-0.1.0/make.py)."""
    if setting == "sqlite":
        (tmp_path / ".flowlet").mkdir(mode=0o700)
        shutil.copyfile(DATA / "state.db", tmp_path / ".flowlet" / "state.db")
    else:
        with psycopg.connect(setting, autocommit=True) as conn:
            conn.execute((DATA / "postgres.sql").read_text())


def test_a_store_made_by_0_1_0_is_upgraded_on_first_open(tmp_path, setting, monkeypatch):
    old_store(tmp_path, setting)
    monkeypatch.setenv("FLOWLET_MASTER_KEY", FIXTURE_KEY)
    with open_store(tmp_path, setting) as store:
        assert PasswordHasher().verify(store.get("staff").users["alice"], "fixture-password-alice")
        assert store.get("payment-key").value == "fixture-value-sk-0.1.0"
        assert store.get("api-jwt").issuer == "fixture"
        assert store.get_key("csrf-keys") == b"fixture-internal-csrf-key-material"
        kid = store.ring.sealing_id
    assert raw_rows(tmp_path, setting, "SELECT num FROM flowlet_meta WHERE name = 'schema'") == [(2,)]
    assert {k for (k,) in raw_rows(tmp_path, setting, "SELECT key_id FROM flowlet_secrets UNION ALL "
                                   "SELECT key_id FROM flowlet_keys")} == {kid}


def test_upgrading_with_the_wrong_key_changes_nothing(tmp_path, setting, monkeypatch):
    old_store(tmp_path, setting)
    ring(monkeypatch, OTHER)
    with pytest.raises(StoreError, match="wrong master key"):
        open_store(tmp_path, setting)
    assert raw_rows(tmp_path, setting, "SELECT num FROM flowlet_meta WHERE name = 'schema'") == []


OPEN_SCRIPT = textwrap.dedent("""
    import sys
    from flowlet.secrets import open_store
    sys.stdin.read()                      # start together
    with open_store(sys.argv[1], sys.argv[2]) as store:
        print(store.get("payment-key").value)
""")


def test_servers_starting_together_upgrade_once(tmp_path, setting):
    """Each upgrade step would fail if run twice (ADD COLUMN): all succeeding proves the lock."""
    old_store(tmp_path, setting)
    env = {**os.environ, "FLOWLET_MASTER_KEY": FIXTURE_KEY}
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_SCRIPT, str(tmp_path), setting], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [p.communicate("go", timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [r[1] for r in results]
    assert {out.strip() for out, _ in results} == {"fixture-value-sk-0.1.0"}


def test_a_row_written_by_an_old_server_into_an_upgraded_store_still_opens(tmp_path, setting, monkeypatch):
    """Rolling upgrades: a 0.1.0 server still running writes rows without a key id."""
    monkeypatch.setenv("FLOWLET_MASTER_KEY", FIXTURE_KEY)
    old_store(tmp_path, setting)
    open_store(tmp_path, setting).close()
    key = base64.urlsafe_b64decode(FIXTURE_KEY + "=")
    sealed = Envelope(key).seal(b'{"value":"written-by-0.1.0"}', associated_data("secret", "late", "value"))
    if setting == "sqlite":  # exactly the INSERT 0.1.0 runs
        with sqlite3.connect(tmp_path / ".flowlet" / "state.db") as conn:
            conn.execute("INSERT INTO flowlet_secrets (name, type, data) VALUES ('late', 'value', ?)", (sealed,))
    else:
        with psycopg.connect(setting, autocommit=True) as conn:
            conn.execute("INSERT INTO flowlet_secrets (name, type, data) VALUES ('late', 'value', %s)", (sealed,))
    with open_store(tmp_path, setting) as store:
        assert SecretsView(store).get("late").value == "written-by-0.1.0"
        assert store.rotate_master_key() == 1  # and a rotation gives it a key id


def test_the_store_module_does_not_import_its_backends():
    code = ("import sys, flowlet.secrets.store, flowlet.secrets.sqlite, flowlet.secrets.postgres; "
            "import flowlet.secrets.open; "
            "assert 'flowlet.secrets.open' not in [m for m in sys.modules if m.endswith('.store')]")
    src = Path(flowlet_src()).read_text()
    assert "flowlet.secrets.sqlite" not in src and "flowlet.secrets.postgres" not in src
    subprocess.run([sys.executable, "-c", code], check=True)


def flowlet_src() -> str:
    import flowlet.secrets.store
    return flowlet.secrets.store.__file__


LOCKED_FLOWS = {
    "flowlet.yaml": "name: locked\n",
    "flows/staff.yaml": """
        endpoint: {method: GET, path: /staff, auth: {type: basic, secret: staff}}
        respond: {body: {ok: true}}
    """,
    "flows/open.yaml": """
        endpoint: {method: GET, path: /open}
        respond: {body: {ok: true}}
    """,
}


def test_an_endpoint_whose_secret_is_under_a_missing_key_answers_503_and_the_rest_serve(tmp_path):
    from conftest import run_server
    ws = make_workspace(tmp_path, LOCKED_FLOWS)
    env_old = {"FLOWLET_MASTER_KEY": b64u(OLD)}
    env_both = {"FLOWLET_MASTER_KEY": f"{b64u(NEW)},{b64u(OLD)}"}
    run_cli(ws, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin="x", env=env_old)
    run_cli(ws, "secrets", "set", "staff", "--type", "basic", "--user", "alice", "--password-stdin",
            stdin=PASSWORD, env=env_both)           # sealed under NEW, which the server lacks
    server_env = {k: v for k, v in os.environ.items() if k != "FLOWLET_MASTER_KEY"} | env_old
    with run_server(ws, env=server_env) as srv:
        import httpx
        locked = httpx.get(f"{srv.url}/api/staff", auth=("alice", PASSWORD))
        assert locked.status_code == 503 and locked.headers["content-type"] == "application/json"
        assert "error" in locked.json() and PASSWORD not in locked.text
        assert httpx.get(f"{srv.url}/api/open").status_code == 200
