"""The store under running servers: fresh secrets on the next request, notifications,
outages, rotation across servers, and a rotation killed half-way."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest

from flowlet.secrets import SecretsView, ValueSecret, open_store
from flowlet.secrets.crypto import associated_data
from flowlet.secrets.keyring import key_id
from flowlet.secrets.store import Snapshot

from conftest import FLOWLET, flowlet, make_workspace, run_server

OLD, NEW = os.urandom(32), os.urandom(32)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def env_of(*keys: bytes) -> dict:
    return {"FLOWLET_MASTER_KEY": ",".join(b64u(k) for k in keys)}


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv("FLOWLET_MASTER_KEY", raising=False)


@pytest.fixture(params=["sqlite", "postgres"])
def setting(request):
    return "sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_url")


BASIC_FLOW = """
    endpoint: {method: GET, path: /me, auth: {type: basic, secret: team}}
    respond: {body: {user: "=auth.user"}}
"""


def set_user(ws: Path, user: str, password: str, env: dict) -> None:
    done = flowlet("secrets", "set", "team", "-w", str(ws), "--type", "basic", "--user", user,
                   "--password-stdin", input=password + "\n", env=env)
    assert done.returncode == 0, done.stderr


# ---- a change is seen by the next request --------------------------------------------------

def test_a_password_set_with_the_cli_works_on_the_very_next_request(tmp_path, setting):
    ws = make_workspace(tmp_path, {"flowlet.yaml": f"name: fresh\nstore: '{setting}'\n",
                                   "flows/me.yaml": BASIC_FLOW})
    env = env_of(OLD)
    set_user(ws, "u0", "p0", env)
    with run_server(ws, env=env) as srv, httpx.Client(timeout=10) as client:
        for i in range(1, 11):                    # ten changes: the bug this guards saw only the first
            set_user(ws, f"u{i}", f"p{i}", env)  # a new user each time, then at once a request
            resp = client.get(srv.url + "/api/me", auth=(f"u{i}", f"p{i}"))
            assert resp.status_code == 200, (i, resp.text)
        set_user(ws, "u1", "changed", env)        # a changed password: the old one stops at once
        assert client.get(srv.url + "/api/me", auth=("u1", "changed")).status_code == 200
        assert client.get(srv.url + "/api/me", auth=("u1", "p1")).status_code == 401


def test_a_jwt_key_set_with_the_cli_works_on_the_very_next_request(tmp_path):
    ws = make_workspace(tmp_path, {"flows/me.yaml": """
        endpoint: {method: GET, path: /me, auth: {type: jwt, secret: api}}
        respond: {body: {user: "=auth.user"}}
    """})
    env = env_of(OLD)

    def set_key(i: int) -> None:
        done = flowlet("secrets", "set", "api", "-w", str(ws), "--type", "jwt", "--hs-key-stdin",
                       input=f"shared-key-number-{i:04d}-padded-to-32-bytes\n", env=env)
        assert done.returncode == 0, done.stderr

    set_key(0)
    with run_server(ws, env=env) as srv, httpx.Client(timeout=10) as client:
        for i in range(1, 11):
            set_key(i)
            token = flowlet("token", "-w", str(ws), "--secret", "api", "--sub", f"s{i}", env=env).stdout.strip()
            resp = client.get(srv.url + "/api/me", headers={"authorization": f"Bearer {token}"})
            assert resp.status_code == 200, (i, resp.text)


def test_a_server_lacking_one_secrets_key_logs_it_and_serves_the_others(tmp_path, setting):
    ws = make_workspace(tmp_path, {"flowlet.yaml": f"name: ring\nstore: '{setting}'\n",
                                   "flows/me.yaml": BASIC_FLOW})
    set_user(ws, "ada", "ada-pass", env_of(OLD))
    done = flowlet("secrets", "set", "payment", "-w", str(ws), "--type", "value", "--value-stdin",
                   input="under-the-new-key\n", env=env_of(NEW, OLD))
    assert done.returncode == 0, done.stderr
    with run_server(ws, env=env_of(OLD)) as srv:
        assert httpx.get(srv.url + "/api/me", auth=("ada", "ada-pass")).json() == {"user": "ada"}
    assert f"secret 'payment' is sealed under master key id {key_id(NEW)}" in srv.stderr
    assert "under-the-new-key" not in srv.stderr and "Traceback" not in srv.stderr


# ---- notifications and outages (PostgreSQL) ------------------------------------------------

class Proxy:
    """A TCP forwarder to PostgreSQL that a test can cut (closing every connection and
    refusing new ones) and restore, to play an outage without touching the shared server."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)):
        self.target = target
        self.up = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def do():
            self.up = False
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()
        self.loop.call_soon_threadsafe(do)

    def restore(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "up", True)

    def url(self, pg_url: str) -> str:
        return pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}")

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class ViewRunner:
    """SecretsView.run() in its own event loop thread, as a worker runs it."""

    def __init__(self, view: SecretsView, interval: float):
        self.loop = asyncio.new_event_loop()
        self.task = None
        self.thread = threading.Thread(target=self._run, args=(view, interval), daemon=True)
        self.thread.start()

    def _run(self, view, interval) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(view.run(interval=interval))
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    def stop(self) -> None:
        while self.task is None:
            time.sleep(0.01)
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(5)


def wait_for(predicate, timeout: float = 10.0) -> float:
    """Seconds until ``predicate()`` held (fails the test after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition never held"
        time.sleep(0.002)
    return time.monotonic() - start


def test_a_change_reaches_a_listening_view_without_waiting_for_the_poll(tmp_path, pg_url, monkeypatch, capsys):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", b64u(OLD))
    writer = open_store(tmp_path, pg_url)
    view = SecretsView(open_store(tmp_path, pg_url))
    runner = ViewRunner(view, interval=3600)  # the poll never fires during the test
    try:
        time.sleep(0.5)  # the listener connects
        latencies = []
        for i in range(5):
            writer.put(ValueSecret("v", f"value-{i}"))
            latencies.append(wait_for(lambda: view.get("v") is not None and view.get("v").value == f"value-{i}"))
        writer.put_key("csrf-keys", b"rotated")  # internal keys (the CSRF key) too
        latencies.append(wait_for(lambda: view.get_key("csrf-keys") == b"rotated"))
    finally:
        runner.stop()
        writer.close()
        view.store.close()
    with capsys.disabled():
        print(f"\n  notification latency ms: {[round(x * 1000, 1) for x in latencies]}")


def test_an_outage_keeps_the_last_secrets_and_the_view_catches_up(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", b64u(OLD))
    proxy = Proxy()
    direct = open_store(tmp_path, pg_url)
    direct.put(ValueSecret("v", "before"))
    view = SecretsView(open_store(tmp_path, proxy.url(pg_url)))
    runner = ViewRunner(view, interval=0.2)
    try:
        assert view.health()["store"] == "ok"
        proxy.cut()
        wait_for(lambda: view.health()["store"] == "down")
        assert view.get("v").value == "before"       # still served
        direct.put(ValueSecret("v", "during"))        # a change the view cannot see yet
        assert asyncio.run(view.recheck()) is False   # a refusal does not wait on a dead store
        time.sleep(0.5)
        assert view.get("v").value == "before" and view.health()["age_s"] >= 0.4
        proxy.restore()
        wait_for(lambda: view.get("v").value == "during")
        wait_for(lambda: view.health()["store"] == "ok")
    finally:
        runner.stop()
        direct.close()
        view.store.close()
        proxy.close()


def test_a_server_keeps_serving_through_a_store_outage_and_catches_up(tmp_path, pg_url):
    proxy = Proxy()
    env = env_of(OLD)
    files = {"flows/me.yaml": BASIC_FLOW}
    served = make_workspace(tmp_path / "served", {**files, "flowlet.yaml":
                                                  f"name: o\nstore: '{proxy.url(pg_url)}'\n"})
    admin = make_workspace(tmp_path / "admin", {**files, "flowlet.yaml": f"name: o\nstore: '{pg_url}'\n"})
    set_user(admin, "ada", "first", env)
    try:
        with run_server(served, env=env) as srv, httpx.Client(timeout=10) as client:
            assert client.get(srv.url + "/api/me", auth=("ada", "first")).status_code == 200
            proxy.cut()
            set_user(admin, "bob", "second", env)  # written while the server cannot see the store
            for _ in range(20):
                assert client.get(srv.url + "/api/me", auth=("ada", "first")).status_code == 200
                time.sleep(0.05)
            assert client.get(srv.url + "/api/me", auth=("bob", "second")).status_code == 401
            proxy.restore()
            wait_for(lambda: client.get(srv.url + "/api/me", auth=("bob", "second")).status_code == 200, 20)
            assert client.get(srv.url + "/api/me", auth=("ada", "first")).status_code == 200
        assert "reloading secrets failed" in srv.stderr
    finally:
        proxy.close()


# ---- rotation across two servers -----------------------------------------------------------

class Client:
    """Loops requests over the servers in ``live`` until stopped; remembers every refusal."""

    def __init__(self, users: list[tuple[str, str]]):
        self.live: list[str] = []
        self.users = users
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.count = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not self.done.is_set():
                with self.lock:
                    targets = list(self.live)
                    users = list(self.users)
                if not targets:
                    time.sleep(0.01)
                    continue
                url, user = targets[i % len(targets)], users[i % len(users)]
                i += 1
                try:
                    resp = client.get(url + "/api/me", auth=user)
                    ok = resp.status_code == 200 and resp.json() == {"user": user[0]}
                    detail = f"{resp.status_code} {resp.text[:80]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, repr(exc)
                self.count += 1
                if not ok:
                    self.failures.append(f"{url} {user[0]}: {detail}")

    def swap(self, old: str | None, new: str) -> None:
        with self.lock:
            self.live.append(new)
            if old is not None:
                self.live.remove(old)
        time.sleep(0.3)  # requests in flight to the old server finish

    def stop(self) -> None:
        self.done.set()
        self.thread.join(15)


def test_rotating_the_master_key_across_two_servers_refuses_no_request(tmp_path, pg_url, capsys):
    """The documented procedure: add the new key everywhere, rotate, remove the old key;
    servers are replaced one at a time while a client keeps calling both."""
    files = {"flowlet.yaml": f"name: rot\nstore: '{pg_url}'\n", "flows/me.yaml": BASIC_FLOW}
    a, b = make_workspace(tmp_path / "a", files), make_workspace(tmp_path / "b", files)
    set_user(a, "ada", "ada-pass", env_of(OLD))
    done = flowlet("secrets", "set", "other", "-w", str(a), "--type", "value", "--value-stdin",
                   input="v\n", env=env_of(OLD))
    assert done.returncode == 0, done.stderr
    client = Client([("ada", "ada-pass")])
    with ExitStack() as stack:
        def replace(ws: Path, old, env: dict):
            srv = stack.enter_context(run_server(ws, env=env))
            client.swap(old.url if old else None, srv.url)
            if old is not None:
                assert old.stop() == 0
            return srv

        sa, sb = replace(a, None, env_of(OLD)), replace(b, None, env_of(OLD))
        sa, sb = replace(a, sa, env_of(NEW, OLD)), replace(b, sb, env_of(NEW, OLD))  # 1. add the key
        set_user(b, "bob", "bob-pass", env_of(NEW, OLD))                              # sealed under NEW
        with client.lock:
            client.users.append(("bob", "bob-pass"))
        rotated = flowlet("secrets", "rotate-master-key", "-w", str(a), env=env_of(NEW, OLD))  # 2. rotate
        # bob's `set` re-sealed the whole basic secret under NEW: only the value secret moves
        assert rotated.returncode == 0 and "re-sealed 1 row " in rotated.stdout, rotated
        time.sleep(1.5)
        sa, sb = replace(a, sa, env_of(NEW)), replace(b, sb, env_of(NEW))            # 3. drop the old key
        time.sleep(1.0)
        client.stop()
    assert client.failures == [] and client.count > 50, (client.count, client.failures[:5])
    with capsys.disabled():
        print(f"\n  requests during the rotation: {client.count}, refused: {len(client.failures)}")


# ---- a rotation killed half-way ------------------------------------------------------------

ROWS = 40000


def many_rows(ws: Path, setting: str) -> None:
    """ROWS value secrets sealed under OLD, written in one transaction."""
    with open_store(ws, setting) as store:
        rows = {}
        for i in range(ROWS):
            name = f"s{i:05d}"
            plaintext = f'{{"value":"value-{i}"}}'.encode()
            rows[name] = ("value", *store.ring.seal(plaintext, associated_data("secret", name, "value")))
        store.restore(Snapshot(0, rows, {}))


def rotation_is_writing(ws: Path, setting: str) -> bool:
    if setting == "sqlite":  # the rotation holds SQLite's write lock and has spilled updates
        conn = sqlite3.connect(ws / ".flowlet" / "state.db", timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            wal = ws / ".flowlet" / "state.db-wal"
            return wal.exists() and wal.stat().st_size > 1 << 20
        finally:
            conn.close()
    with psycopg.connect(setting, autocommit=True) as conn:  # its UPDATEs have begun
        row = conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                           "WHERE c.relname = 'flowlet_secrets' AND l.mode = 'RowExclusiveLock' "
                           "AND c.relnamespace = current_schema()::regnamespace "
                           "AND l.pid <> pg_backend_pid()").fetchone()
        return row[0] > 0


def test_a_rotation_killed_half_way_leaves_every_secret_readable(tmp_path, setting, monkeypatch):
    ws = make_workspace(tmp_path, {"flowlet.yaml": f"name: k\nstore: '{setting}'\n"})
    monkeypatch.setenv("FLOWLET_MASTER_KEY", b64u(OLD))
    many_rows(ws, setting)
    env = {**os.environ, **env_of(NEW, OLD)}
    if setting == "sqlite":  # start from a checkpointed WAL so its growth shows the rotation's writes
        with sqlite3.connect(ws / ".flowlet" / "state.db") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    proc = subprocess.Popen([*FLOWLET, "secrets", "rotate-master-key", "-w", str(ws)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is None and rotation_is_writing(ws, setting), 60)
    finally:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and b"re-sealed" not in out
    monkeypatch.setenv("FLOWLET_MASTER_KEY", ",".join((b64u(NEW), b64u(OLD))))
    with open_store(ws, setting) as store:
        snapshot = store.snapshot()
        assert len(snapshot.secrets) == ROWS
        assert {row[1] for row in snapshot.secrets.values()} == {key_id(OLD)}  # all or nothing
        for name, row in snapshot.secrets.items():
            assert store.open_secret(name, *row).value == f"value-{int(name[1:])}"
        assert store.rotate_master_key() == ROWS  # and the rotation can simply run again
    monkeypatch.setenv("FLOWLET_MASTER_KEY", b64u(NEW))
    with open_store(ws, setting) as store:
        assert store.get("s00042").value == "value-42"
