"""The secrets store (SQLite and PostgreSQL), the master key, and a worker's SecretsView."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flowlet.secrets import (BasicSecret, JwtSecret, SecretsView, StoreError, ValueSecret,
                             open_store)
from flowlet.secrets.store import decode_master_key

from conftest import PG_BASE
PASSWORD = "correct horse battery staple"
HS_KEY = b"an-hs256-key-that-is-32-bytes-ok!!"
VALUE = "sk_live_value_that_must_stay_hidden"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


KEY_A = b64u(b"A" * 32)
KEY_B = b64u(b"B" * 32)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv("FLOWLET_MASTER_KEY", raising=False)


def _pg_connect():
    import psycopg
    try:
        return psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:  # pragma: no cover - only without a database
        pytest.skip(f"PostgreSQL not reachable: {exc}")


@pytest.fixture(params=["sqlite", "postgres"])
def setting(request, tmp_path):
    """The store setting for each backend (a workspace is tmp_path)."""
    if request.param == "sqlite":
        return "sqlite"
    return request.getfixturevalue("pg_url")


def raw_exec(ws: Path, setting: str, sql: str, params: tuple = ()) -> list:
    """Run SQL on the store's database behind its back (to damage rows)."""
    if setting == "sqlite":
        with sqlite3.connect(ws / ".flowlet" / "state.db") as conn:
            return conn.execute(sql, params).fetchall()
    import psycopg
    with psycopg.connect(setting, autocommit=True) as conn:
        cur = conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def pem_private() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# ---- round trips ---------------------------------------------------------------------------

def test_each_secret_type_round_trips(tmp_path, setting):
    hashed = PasswordHasher().hash(PASSWORD)
    jwt = JwtSecret("j", private_pem=pem_private(), algorithms=("ES256",), issuer="iss",
                    audience="aud", leeway=5, scope_claim="perms")
    jwks = JwtSecret("k", jwks={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "1"}]},
                     algorithms=("EdDSA",))
    with open_store(tmp_path, setting) as store:
        for secret in (BasicSecret("b", {"alice": hashed}), ValueSecret("v", VALUE), jwt, jwks,
                       JwtSecret("h", hs_key=HS_KEY, algorithms=("HS256",)),
                       JwtSecret("u", jwks_url="https://example.com/jwks")):
            store.put(secret)
    with open_store(tmp_path, setting) as store:
        assert store.get("b") == BasicSecret("b", {"alice": hashed})
        assert store.get("v") == ValueSecret("v", VALUE)
        assert store.get("j") == jwt
        assert store.get("k") == jwks
        assert store.get("h").hs_key == HS_KEY
        assert store.get("u").jwks_url == "https://example.com/jwks"
        assert store.get("missing") is None


def test_put_replaces_and_delete_reports_whether_it_deleted(tmp_path, setting):
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("v", "one"))
        store.put(ValueSecret("v", "two"))
        assert store.get("v").value == "two"
        assert store.delete("v") is True
        assert store.delete("v") is False
        assert store.get("v") is None


def test_invalid_secret_names_are_refused(tmp_path):
    with open_store(tmp_path) as store:
        for name in ("", "-x", "a b", "a/b", "x" * 129, 'q"'):
            with pytest.raises(StoreError, match="invalid secret name"):
                store.put(ValueSecret(name, "v"))


def test_list_shows_names_types_users_and_key_facts_but_no_material(tmp_path, setting):
    hashed = PasswordHasher().hash(PASSWORD)
    with open_store(tmp_path, setting) as store:
        store.put(BasicSecret("b", {"bob": hashed, "alice": hashed}))
        store.put(ValueSecret("v", VALUE))
        store.put(JwtSecret("j", private_pem=pem_private(), algorithms=("ES256",), issuer="me"))
        store.put_key("csrf-keys", b"internal")
        listing = store.list()
    assert [s["name"] for s in listing] == ["b", "j", "v"]  # internal keys are not secrets
    assert listing[0] == {"name": "b", "type": "basic", "users": ["alice", "bob"]}
    assert listing[1]["algorithms"] == ["ES256"] and listing[1]["issuer"] == "me"
    assert len(listing[1]["kids"]) == 1
    assert listing[2] == {"name": "v", "type": "value"}
    text = json.dumps(listing)
    assert VALUE not in text and "argon2" not in text and "PRIVATE" not in text


def test_update_is_read_modify_write_and_aborts_on_error(tmp_path, setting):
    with open_store(tmp_path, setting) as store:
        store.put(BasicSecret("b", {"alice": "h1"}))
        store.update("b", lambda cur: BasicSecret("b", {**cur.users, "bob": "h2"}))
        assert store.get("b").users == {"alice": "h1", "bob": "h2"}
        before = store.version()

        def refuse(current):
            raise LookupError("no")

        with pytest.raises(LookupError):
            store.update("b", refuse)
        assert store.version() == before and store.get("b").users == {"alice": "h1", "bob": "h2"}
        assert store.update("new", lambda cur: cur or ValueSecret("new", "v")).value == "v"


def test_update_replaces_a_damaged_row(tmp_path):
    with open_store(tmp_path) as store:
        store.put(ValueSecret("v", VALUE))
        raw_exec(tmp_path, "sqlite", "UPDATE flowlet_secrets SET data = X'0102' WHERE name = 'v'")
        seen = []
        store.update("v", lambda cur: seen.append(cur) or ValueSecret("v", "fixed"))
        assert seen == [None] and store.get("v").value == "fixed"


# ---- versions and internal keys ------------------------------------------------------------

def test_version_changes_on_every_write_seen_by_another_store_object(tmp_path, setting):
    writer = open_store(tmp_path, setting)
    reader = open_store(tmp_path, setting)
    try:
        seen = [reader.version()]
        writer.put(ValueSecret("v", "1"))
        seen.append(reader.version())
        writer.put(ValueSecret("v", "1"))  # same content is still a write
        seen.append(reader.version())
        writer.put_key("k", b"x")
        seen.append(reader.version())
        writer.delete("v")
        seen.append(reader.version())
        assert len(set(seen)) == len(seen)
        assert writer.version() == reader.version()
    finally:
        writer.close()
        reader.close()


def test_nothing_written_leaves_the_version_alone(tmp_path, setting):
    with open_store(tmp_path, setting) as store:
        store.add_key_if_absent("k", b"first")
        before = store.version()
        assert store.delete("missing") is False
        assert store.add_key_if_absent("k", b"second") == b"first"
        store.get("x"), store.list(), store.get_key("k")
        assert store.version() == before


def test_internal_keys_round_trip(tmp_path, setting):
    with open_store(tmp_path, setting) as store:
        assert store.get_key("csrf") is None
        assert store.add_key_if_absent("csrf", b"\x00\x01") == b"\x00\x01"
        store.put_key("csrf", b"\xff" * 40)
        assert store.get_key("csrf") == b"\xff" * 40


RACE_SCRIPT = textwrap.dedent("""
    import os, sys
    from flowlet.secrets import open_store
    store = open_store(sys.argv[1], sys.argv[2])
    sys.stdin.read()                      # start together
    value = store.add_key_if_absent("race", os.urandom(32))
    for i in range(5):
        from flowlet.secrets import ValueSecret
        store.put(ValueSecret(f"p{os.getpid()}-{i}", "x"))
    print(value.hex())
""")


def test_add_key_if_absent_and_writes_are_safe_across_processes(tmp_path, setting):
    open_store(tmp_path, setting).close()  # one master key, created up front
    procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, str(tmp_path), setting],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [p.communicate("go", timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    assert len({out.strip() for out, _ in results}) == 1
    with open_store(tmp_path, setting) as store:
        assert len(store.list()) == 20
        assert store.get_key("race").hex() == results[0][0].strip()


UPDATE_SCRIPT = textwrap.dedent("""
    import sys, time
    from flowlet.secrets import BasicSecret, open_store
    store = open_store(sys.argv[1], sys.argv[2])
    sys.stdin.read()                      # start together

    def add(current):
        time.sleep(0.2)                   # hold the read-modify-write open: the others must wait
        users = dict(current.users) if current else {}
        users[sys.argv[3]] = "hash"
        return BasicSecret("staff", users)

    store.update("staff", add)
""")


def test_concurrent_updates_from_processes_lose_nothing(tmp_path, setting):
    open_store(tmp_path, setting).close()
    procs = [subprocess.Popen([sys.executable, "-c", UPDATE_SCRIPT, str(tmp_path), setting, f"u{i}"],
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    for p in procs:
        p.stdin.write("go")
        p.stdin.close()
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    with open_store(tmp_path, setting) as store:
        assert sorted(store.get("staff").users) == ["u0", "u1", "u2", "u3"]


# ---- the master key ------------------------------------------------------------------------

def test_master_key_file_is_created_private_with_32_bytes(tmp_path):
    open_store(tmp_path).close()
    state = tmp_path / ".flowlet"
    key_file = state / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    assert stat.S_IMODE((state / "state.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert [p.name for p in state.iterdir() if p.name.startswith(".master")] == []


CREATE_SCRIPT = textwrap.dedent("""
    import sys
    from flowlet.secrets import open_store
    sys.stdin.read()
    open_store(sys.argv[1]).close()
    print(open(sys.argv[1] + "/.flowlet/master.key", "rb").read().hex())
""")


def test_processes_starting_together_agree_on_one_master_key(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CREATE_SCRIPT, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [p.communicate("go", timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    assert len({out.strip() for out, _ in results}) == 1


def test_env_master_key_is_used_instead_of_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", KEY_A)
    with open_store(tmp_path) as store:
        store.put(ValueSecret("v", "x"))
    assert not (tmp_path / ".flowlet" / "master.key").exists()


@pytest.mark.parametrize("text", [KEY_A, KEY_A + "=", f"  {KEY_A}\n"])
def test_env_master_key_padding_is_optional(text):
    assert decode_master_key(text) == b"A" * 32


def test_empty_env_master_key_means_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", "")
    open_store(tmp_path).close()
    assert (tmp_path / ".flowlet" / "master.key").exists()


@pytest.mark.parametrize("text, message", [
    (b64u(b"A" * 16), "must decode to 32 bytes"),
    (b64u(b"A" * 33), "must decode to 32 bytes"),
    ("a+b/" * 10 + "abc", "use - and _ instead of + and /"),
    ("not base64 at all!", "not valid base64url"),
    ("A" * 42 + "===", "not valid base64url"),
])
def test_bad_env_master_key_is_a_clear_error_that_does_not_echo_it(tmp_path, monkeypatch, text, message):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", text)
    with pytest.raises(StoreError, match="FLOWLET_MASTER_KEY") as info:
        open_store(tmp_path)
    assert message in str(info.value)
    assert text.strip() not in str(info.value)
    assert not (tmp_path / ".flowlet").exists()  # nothing created before the key is known good


def test_wrong_master_key_names_the_store(tmp_path, setting, monkeypatch):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", KEY_A)
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("v", "x"))
    monkeypatch.setenv("FLOWLET_MASTER_KEY", KEY_B)
    with pytest.raises(StoreError) as info:
        open_store(tmp_path, setting)
    message = str(info.value)
    assert "wrong master key" in message
    assert ("state.db" in message) if setting == "sqlite" else ("postgresql://127.0.0.1:5432/test" in message)
    assert KEY_A not in message and KEY_B not in message


def test_missing_master_key_file_for_an_existing_store_is_not_replaced(tmp_path):
    with open_store(tmp_path) as store:
        store.put(ValueSecret("v", "x"))
    key_file = tmp_path / ".flowlet" / "master.key"
    key_file.unlink()
    with pytest.raises(StoreError, match="master.key is missing"):
        open_store(tmp_path)
    assert not key_file.exists()


def test_master_key_file_of_the_wrong_size_is_an_error(tmp_path):
    (tmp_path / ".flowlet").mkdir()
    (tmp_path / ".flowlet" / "master.key").write_bytes(b"short")
    (tmp_path / ".flowlet" / "master.key").chmod(0o600)
    with pytest.raises(StoreError, match="32 bytes"):
        open_store(tmp_path)


def test_unknown_store_setting_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="unknown store"):
        open_store(tmp_path, "mysql://x")


def test_unreachable_postgres_is_a_clear_error_without_the_password(tmp_path):
    with pytest.raises(StoreError, match="cannot connect") as info:
        open_store(tmp_path, "postgresql://postgres:hunter2@127.0.0.1:1/test")
    assert "hunter2" not in str(info.value)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path):
    (tmp_path / ".flowlet").mkdir()
    (tmp_path / ".flowlet" / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="state.db"):
        open_store(tmp_path)


# ---- encryption ----------------------------------------------------------------------------

def test_a_damaged_row_is_reported_by_the_secret_name(tmp_path, setting):
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("damaged", VALUE))
        store.put(ValueSecret("fine", "ok"))
    (data,), = raw_exec(tmp_path, setting, "SELECT data FROM flowlet_secrets WHERE name = 'damaged'")
    flipped = bytes(data[:-1]) + bytes([data[-1] ^ 1])
    raw_exec(tmp_path, setting, "UPDATE flowlet_secrets SET data = ? WHERE name = 'damaged'", (flipped,))
    with open_store(tmp_path, setting) as store:  # the master key still checks out
        with pytest.raises(StoreError, match="secret 'damaged'.*cannot be decrypted") as info:
            store.get("damaged")
        assert VALUE not in str(info.value)
        assert store.get("fine").value == "ok"
        assert {"name": "damaged", "type": "value", "error": "cannot be decrypted"} in store.list()


def test_a_row_copied_under_another_name_or_type_does_not_decrypt(tmp_path, setting):
    with open_store(tmp_path, setting) as store:
        store.put(ValueSecret("original", VALUE))
        store.put(ValueSecret("other", "x"))
    raw_exec(tmp_path, setting, "UPDATE flowlet_secrets SET data = "
             "(SELECT data FROM flowlet_secrets WHERE name = 'original') WHERE name = 'other'")
    raw_exec(tmp_path, setting, "UPDATE flowlet_secrets SET type = 'basic' WHERE name = 'original'")
    with open_store(tmp_path, setting) as store:
        with pytest.raises(StoreError, match="secret 'other'"):
            store.get("other")
        with pytest.raises(StoreError, match="secret 'original'"):
            store.get("original")


def test_each_write_uses_a_fresh_nonce(tmp_path):
    with open_store(tmp_path) as store:
        store.put(ValueSecret("v", VALUE))
        first = raw_exec(tmp_path, "sqlite", "SELECT data FROM flowlet_secrets")[0][0]
        store.put(ValueSecret("v", VALUE))
        second = raw_exec(tmp_path, "sqlite", "SELECT data FROM flowlet_secrets")[0][0]
    assert first[1:13] != second[1:13] and first != second


def _forms(secret: bytes) -> list[bytes]:
    forms = [secret, base64.b64encode(secret), base64.urlsafe_b64encode(secret),
             base64.urlsafe_b64encode(secret).rstrip(b"=")]
    return [f for f in forms if len(f) >= 8]


def test_the_database_never_holds_material_in_plaintext_or_base64(tmp_path, setting):
    private = pem_private()
    pem_body = b"".join(private.splitlines()[1:-1])
    der = base64.b64decode(pem_body)
    hashed = PasswordHasher().hash(PASSWORD)
    with open_store(tmp_path, setting) as store:
        store.put(BasicSecret("users", {"alice": hashed}))
        store.put(JwtSecret("hs", hs_key=HS_KEY, algorithms=("HS256",)))
        store.put(JwtSecret("pk", private_pem=private, algorithms=("ES256",)))
        store.put(ValueSecret("v", VALUE))
        store.put_key("csrf", b"internal-key-material-0123456789")
    if setting == "sqlite":
        raw = b"".join(p.read_bytes() for p in (tmp_path / ".flowlet").iterdir()
                       if p.name != "master.key")
    else:
        rows = raw_exec(tmp_path, setting, "SELECT name, type, data FROM flowlet_secrets "
                        "UNION ALL SELECT name, '', data FROM flowlet_keys")
        raw = b"".join(n.encode() + t.encode() + bytes(d) for n, t, d in rows)
    assert b"users" in raw  # the check can see the file's contents at all
    needles = [PASSWORD.encode(), hashed.encode(), b"$argon2id$", HS_KEY, pem_body, der,
               pem_body[:40], VALUE.encode(), b"internal-key-material-0123456789"]
    for needle in needles:
        for form in _forms(needle):
            assert form not in raw, form[:20]


# ---- reprs ---------------------------------------------------------------------------------

def test_reprs_never_show_material(tmp_path):
    hashed = PasswordHasher().hash(PASSWORD)
    secrets = [BasicSecret("b", {"alice": hashed}), ValueSecret("v", VALUE),
               JwtSecret("h", hs_key=HS_KEY, algorithms=("HS256",)),
               JwtSecret("p", private_pem=pem_private(), algorithms=("ES256",))]
    with open_store(tmp_path) as store:
        for s in secrets:
            store.put(s)
        view = SecretsView(store)
        text = " ".join([repr(s) + str(s) for s in secrets] + [repr(store), repr(view),
                                                                repr(store._ring)])
    assert "alice" in text and "'b'" in text and "basic" in text
    for needle in (hashed, "argon2", VALUE, HS_KEY.decode(), "PRIVATE", "BEGIN"):
        assert needle not in text


def test_secrets_are_immutable_and_hashable():
    secret = BasicSecret("b", {"alice": "h"})
    with pytest.raises(AttributeError):
        secret.name = "c"
    assert secret.type == "basic" and JwtSecret("j").type == "jwt" and ValueSecret("v", "").type == "value"
    assert {secret: 1}[BasicSecret("b", {"alice": "h"})] == 1


# ---- the view ------------------------------------------------------------------------------

def test_view_keeps_the_same_object_for_unchanged_secrets(tmp_path, setting):
    writer = open_store(tmp_path, setting)
    writer.put(ValueSecret("stays", "1"))
    writer.put(ValueSecret("rewritten", "same"))
    writer.put(ValueSecret("changes", "old"))
    writer.put(ValueSecret("goes", "x"))
    view = SecretsView(open_store(tmp_path, setting))
    stays, rewritten, changes = view.get("stays"), view.get("rewritten"), view.get("changes")
    assert view.refresh() is False
    writer.put(ValueSecret("rewritten", "same"))  # new ciphertext, same content
    writer.put(ValueSecret("changes", "new"))
    writer.delete("goes")
    writer.put(ValueSecret("new", "n"))
    assert view.refresh() is True
    assert view.get("stays") is stays
    assert view.get("rewritten") is rewritten
    assert view.get("changes") is not changes and view.get("changes").value == "new"
    assert view.get("goes") is None and view.get("new").value == "n"
    assert view.refresh() is False
    writer.close()
    view.store.close()


def test_view_sees_internal_keys_and_reports_changes(tmp_path):
    writer = open_store(tmp_path)
    view = SecretsView(open_store(tmp_path))
    changes = []
    view.on_change(changes.append)
    writer.put_key("csrf", b"k1")
    writer.put(ValueSecret("v", "1"))
    assert view.refresh() is True
    assert view.get_key("csrf") == b"k1"
    assert changes == [frozenset({"key:csrf", "v"})]


def test_view_keeps_the_last_good_copy_of_a_damaged_secret(tmp_path, caplog):
    writer = open_store(tmp_path)
    writer.put(ValueSecret("v", VALUE))
    view = SecretsView(open_store(tmp_path))
    good = view.get("v")
    writer.put(ValueSecret("v", "replacement-value"))
    raw_exec(tmp_path, "sqlite", "UPDATE flowlet_secrets SET data = X'00' WHERE name = 'v'")
    writer.put(ValueSecret("other", "o"))
    with caplog.at_level(logging.ERROR, logger="flowlet.secrets"):
        view.refresh()
    assert view.get("v") is good
    assert view.get("other").value == "o"
    assert "secret 'v'" in caplog.text and VALUE not in caplog.text


def test_view_refuses_to_start_on_a_damaged_secret(tmp_path):
    with open_store(tmp_path) as store:
        store.put(ValueSecret("v", VALUE))
    raw_exec(tmp_path, "sqlite", "UPDATE flowlet_secrets SET data = X'00' WHERE name = 'v'")
    with open_store(tmp_path) as store, pytest.raises(StoreError, match="secret 'v'"):
        SecretsView(store)


def test_view_run_picks_up_changes_in_the_background(tmp_path):
    writer = open_store(tmp_path)
    view = SecretsView(open_store(tmp_path))

    async def scenario():
        task = asyncio.create_task(view.run(interval=0.05))
        writer.put(ValueSecret("v", "1"))
        for _ in range(100):
            if view.get("v") is not None:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert view.get("v").value == "1"


def test_view_run_survives_a_lost_database_connection(pg_url, tmp_path, caplog):
    writer = open_store(tmp_path, pg_url)
    writer.put(ValueSecret("v", "1"))
    view = SecretsView(open_store(tmp_path, pg_url))
    admin = _pg_connect()

    async def scenario():
        task = asyncio.create_task(view.run(interval=0.05))
        pid = view.store._connection().info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(100):  # the failure is logged, the last copy stays
            if "reloading secrets failed" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert view.get("v").value == "1"
        writer.put(ValueSecret("v", "2"))  # and after reconnecting, changes arrive again
        for _ in range(200):
            if view.get("v").value == "2":
                break
            await asyncio.sleep(0.02)
        task.cancel()

    with caplog.at_level(logging.ERROR, logger="flowlet.secrets"):
        asyncio.run(scenario())
    admin.close()
    assert "reloading secrets failed" in caplog.text
    assert view.get("v").value == "2"
