"""`flowlet secrets ...` and `flowlet token`, run as real processes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey

from flowlet.secrets import open_store

PASSWORD = "s3cret pass phrase"
HS_KEY = "k" * 32
VALUE = "value-that-never-shows"


def run(ws: Path | None, *args: str, stdin: str | bytes | None = None, env: dict | None = None,
        cwd: Path | None = None, module: str = "flowlet.cli") -> subprocess.CompletedProcess:
    """Run the command; with ``ws`` add ``-w ws``. Never a traceback, whatever happens."""
    full_env = {k: v for k, v in os.environ.items() if k != "FLOWLET_MASTER_KEY"}
    full_env.update(env or {})
    argv = [sys.executable, "-m", module, *args] + (["-w", str(ws)] if ws is not None else [])
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(argv, input=data if data is not None else b"", capture_output=True,
                          env=full_env, cwd=cwd, timeout=60)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


def fails(proc: subprocess.CompletedProcess, status: int, *words: str) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err.splitlines()[-1].startswith(("error:", "flowlet")), err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "flowlet.yaml").write_text("name: cli-test\n")
    return tmp_path


def listing(ws: Path) -> dict:
    return {s["name"]: s for s in json.loads(ok(run(ws, "secrets", "list", "--json")).stdout)}


def write_pem(path: Path, key, private: bool) -> Path:
    if private:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    else:
        data = key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    path.write_bytes(data)
    return path


# ---- basic ---------------------------------------------------------------------------------

def test_basic_set_adds_or_replaces_one_user(ws):
    ok(run(ws, "secrets", "set", "users", "--type", "basic", "--user", "alice", "--password-stdin",
           stdin="first\n"))
    ok(run(ws, "secrets", "set", "users", "--type", "basic", "--user", "bob", "--password-stdin",
           stdin="bobs\n"))
    out = ok(run(ws, "secrets", "set", "users", "--type", "basic", "--user", "alice",
                 "--password-stdin", stdin=PASSWORD + "\n")).stdout
    assert "replaced" in out and PASSWORD not in out
    with open_store(ws) as store:
        users = store.get("users").users
    assert sorted(users) == ["alice", "bob"]
    assert users["alice"].startswith("$argon2id$")
    assert PasswordHasher().verify(users["alice"], PASSWORD)
    assert PasswordHasher().verify(users["bob"], "bobs")


def test_users_added_at_the_same_time_are_all_kept(ws):
    ok(run(ws, "secrets", "list"))  # the master key exists before the race
    argv = [sys.executable, "-m", "flowlet.cli", "secrets", "set", "staff", "-w", str(ws),
            "--type", "basic", "--password-stdin", "--user"]
    procs = [subprocess.Popen(argv + [f"user{i}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for i in range(4)]
    for p in procs:
        p.communicate(b"pw", timeout=60)
        assert p.returncode == 0
    assert listing(ws)["staff"]["users"] == ["user0", "user1", "user2", "user3"]


@pytest.mark.parametrize("stdin, password", [
    ("pw\r\n", "pw"), ("pw\n", "pw"), ("pw", "pw"), ("pw\n\n", "pw\n"), ("pw \n", "pw "),
])
def test_stdin_loses_exactly_one_trailing_newline(ws, stdin, password):
    ok(run(ws, "secrets", "set", "u", "--type", "basic", "--user", "a", "--password-stdin", stdin=stdin))
    with open_store(ws) as store:
        assert PasswordHasher().verify(store.get("u").users["a"], password)


def test_empty_password_is_refused(ws):
    fails(run(ws, "secrets", "set", "u", "--type", "basic", "--user", "a", "--password-stdin",
              stdin="\n"), 1, "empty")


def test_user_names_with_a_colon_are_refused(ws):
    fails(run(ws, "secrets", "set", "u", "--type", "basic", "--user", "a:b", "--password-stdin",
              stdin="pw"), 2, "--user")


# ---- value ---------------------------------------------------------------------------------

def test_value_secret_is_stored_exactly(ws):
    ok(run(ws, "secrets", "set", "api-key", "--type", "value", "--value-stdin", stdin=VALUE + "\r\n"))
    with open_store(ws) as store:
        assert store.get("api-key").value == VALUE
    assert listing(ws)["api-key"] == {"name": "api-key", "type": "value"}


def test_changing_a_secrets_type_needs_a_delete_first(ws):
    ok(run(ws, "secrets", "set", "x", "--type", "value", "--value-stdin", stdin="v"))
    fails(run(ws, "secrets", "set", "x", "--type", "jwt", "--hs-key-stdin", stdin=HS_KEY), 1,
          "value secret", "delete it first")
    with open_store(ws) as store:
        assert store.get("x").value == "v"


# ---- jwt: shared keys ----------------------------------------------------------------------

@pytest.mark.parametrize("alg, minimum", [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_shared_keys_must_be_as_long_as_the_hash(ws, alg, minimum):
    fails(run(ws, "secrets", "set", "j", "--type", "jwt", "--hs-key-stdin", "--algorithms", alg,
              stdin="k" * (minimum - 1)), 1, alg, f"at least {minimum} bytes")
    ok(run(ws, "secrets", "set", "j", "--type", "jwt", "--hs-key-stdin", "--algorithms", alg,
           stdin="k" * minimum))
    assert listing(ws)["j"]["algorithms"] == [alg]


def test_shared_key_defaults_to_hs256_and_keeps_the_jwt_options(ws):
    ok(run(ws, "secrets", "set", "j", "--type", "jwt", "--hs-key-stdin", "--issuer", "https://iss",
           "--audience", "api", "--leeway", "5", "--scope-claim", "perms", stdin=HS_KEY + "\n"))
    entry = listing(ws)["j"]
    assert entry["algorithms"] == ["HS256"] and entry["key"] == "hs"
    assert (entry["issuer"], entry["audience"], entry["leeway"], entry["scope_claim"]) == \
        ("https://iss", "api", 5, "perms")
    with open_store(ws) as store:
        assert store.get("j").hs_key == HS_KEY.encode()


def test_token_from_a_shared_key_verifies_with_it(ws):
    ok(run(ws, "secrets", "set", "j", "--type", "jwt", "--hs-key-stdin", "--algorithms",
           "HS384,HS256", "--issuer", "me", "--audience", "api", stdin="k" * 48))
    before = int(time.time())
    token = ok(run(ws, "token", "--secret", "j", "--scope", "users:read  users:write",
                   "--sub", "42")).stdout.strip()
    decoded = jwt.decode(token, OctKey.import_key(b"k" * 48), algorithms=["HS384"])
    assert decoded.header["alg"] == "HS384" and "kid" not in decoded.header
    claims = decoded.claims
    assert claims["scope"] == "users:read users:write" and claims["sub"] == "42"
    assert claims["iss"] == "me" and claims["aud"] == "api"
    assert before <= claims["iat"] <= before + 5 and claims["exp"] == claims["iat"] + 3600


def test_token_options_override_the_secret_and_set_the_lifetime(ws):
    ok(run(ws, "secrets", "set", "j", "--type", "jwt", "--hs-key-stdin", "--issuer", "me",
           "--audience", "api", "--scope-claim", "perms", stdin=HS_KEY))
    token = ok(run(ws, "token", "--secret", "j", "--iss", "other", "--aud", "web", "--ttl", "60",
                   "--scope", "a")).stdout.strip()
    claims = jwt.decode(token, OctKey.import_key(HS_KEY.encode()), algorithms=["HS256"]).claims
    assert (claims["iss"], claims["aud"], claims["exp"] - claims["iat"]) == ("other", "web", 60)
    assert claims["perms"] == "a" and "scope" not in claims and "sub" not in claims


# ---- jwt: PEM keys -------------------------------------------------------------------------

@pytest.mark.parametrize("make, alg", [
    (lambda: rsa.generate_private_key(65537, 2048), "RS256"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
    (lambda: ec.generate_private_key(ec.SECP521R1()), "ES512"),
    (lambda: ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
])
def test_public_key_algorithms_follow_the_key(ws, tmp_path, make, alg):
    pem = write_pem(tmp_path / "pub.pem", make(), private=False)
    ok(run(ws, "secrets", "set", "p", "--type", "jwt", "--public-key", str(pem)))
    entry = listing(ws)["p"]
    assert entry["algorithms"] == [alg] and entry["key"] == "public" and len(entry["kids"]) == 1


def test_algorithms_must_fit_the_key_type(ws, tmp_path):
    pem = write_pem(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()), private=False)
    fails(run(ws, "secrets", "set", "p", "--type", "jwt", "--public-key", str(pem), "--algorithms",
              "RS256"), 1, "RS256", "P-256")
    rsa_pem = write_pem(tmp_path / "rsa.pem", rsa.generate_private_key(65537, 2048), private=False)
    ok(run(ws, "secrets", "set", "p", "--type", "jwt", "--public-key", str(rsa_pem), "--algorithms",
           "PS256,RS512"))
    assert listing(ws)["p"]["algorithms"] == ["PS256", "RS512"]
    fails(run(ws, "secrets", "set", "p", "--type", "jwt", "--public-key", str(rsa_pem),
              "--algorithms", "none"), 1, "unsupported algorithm")


def test_weak_or_unusable_keys_are_refused(ws, tmp_path):
    small = write_pem(tmp_path / "small.pem", rsa.generate_private_key(65537, 1024), private=False)
    fails(run(ws, "secrets", "set", "p", "--type", "jwt", "--public-key", str(small)), 1, "2048")
    private = write_pem(tmp_path / "priv.pem", ec.generate_private_key(ec.SECP256R1()), private=True)
    fails(run(ws, "secrets", "set", "p", "--type", "jwt", "--public-key", str(private)), 1,
          "--private-key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    err = fails(run(ws, "secrets", "set", "p", "--type", "jwt", "--public-key", str(garbage)), 1)
    assert "not a key" not in err
    fails(run(ws, "secrets", "set", "p", "--type", "jwt", "--private-key", str(tmp_path / "nope.pem")),
          1, "cannot read")
    assert "p" not in listing(ws)


def test_private_key_signs_tokens_that_its_public_half_verifies(ws, tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    pem = write_pem(tmp_path / "signing.pem", key, private=True)
    ok(run(ws, "secrets", "set", "signer", "--type", "jwt", "--private-key", str(pem),
           "--audience", "api"))
    public = ECKey.import_key(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    entry = listing(ws)["signer"]
    assert entry["kids"] == [public.thumbprint()] and entry["algorithms"] == ["ES384"]
    token = ok(run(ws, "token", "--secret", "signer", "--scope", "read")).stdout.strip()
    decoded = jwt.decode(token, public, algorithms=["ES384"])
    assert decoded.header["kid"] == public.thumbprint()
    assert decoded.claims["aud"] == "api" and decoded.claims["scope"] == "read"


def test_ed25519_private_key_signs_with_eddsa(ws, tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    ok(run(ws, "secrets", "set", "ed", "--type", "jwt", "--private-key",
           str(write_pem(tmp_path / "ed.pem", key, private=True))))
    token = ok(run(ws, "token", "--secret", "ed")).stdout.strip()
    public = OKPKey.import_key(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert jwt.decode(token, public, algorithms=["EdDSA"]).header["alg"] == "EdDSA"


def test_token_needs_a_signing_key(ws, tmp_path):
    pem = write_pem(tmp_path / "pub.pem", ec.generate_private_key(ec.SECP256R1()), private=False)
    ok(run(ws, "secrets", "set", "verify-only", "--type", "jwt", "--public-key", str(pem)))
    ok(run(ws, "secrets", "set", "users", "--type", "basic", "--user", "a", "--password-stdin",
           stdin="pw"))
    fails(run(ws, "token", "--secret", "verify-only"), 1, "cannot sign")
    fails(run(ws, "token", "--secret", "users"), 1, "basic secret")
    fails(run(ws, "token", "--secret", "missing"), 1, "no secret named 'missing'")


# ---- jwt: key sets -------------------------------------------------------------------------

def _jwk(key, **extra) -> dict:
    cls = RSAKey if isinstance(key, rsa.RSAPrivateKey) else ECKey
    return {**cls.import_key(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).as_dict(), **extra}


def test_key_set_file_is_validated_and_its_algorithms_follow_the_keys(ws, tmp_path):
    keys = [_jwk(rsa.generate_private_key(65537, 2048), kid="r1"),
            _jwk(ec.generate_private_key(ec.SECP256R1()), kid="e1"),
            _jwk(ec.generate_private_key(ec.SECP384R1()), kid="e2", alg="ES384")]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    ok(run(ws, "secrets", "set", "set", "--type", "jwt", "--jwks", str(path)))
    entry = listing(ws)["set"]
    assert entry["key"] == "jwks" and entry["kids"] == ["r1", "e1", "e2"]
    assert entry["algorithms"] == ["RS256", "ES256", "ES384"]
    with open_store(ws) as store:
        assert KeySet.import_key_set(store.get("set").jwks).get_by_kid("e2")
    fails(run(ws, "secrets", "set", "set", "--type", "jwt", "--jwks", str(path), "--algorithms",
              "EdDSA"), 1, "EdDSA")


@pytest.mark.parametrize("keys, words", [
    ([{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}], ("public keys only",)),
    ("private", ("private key material",)),
    ("no-kid", ("no kid",)),
    ([{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "bad"}], ("not a valid JWK",)),
    ([], ("at least one key",)),
])
def test_bad_key_sets_are_refused(ws, tmp_path, keys, words):
    if keys == "private":
        k = ec.generate_private_key(ec.SECP256R1())
        keys = [ECKey.import_key(k.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())).as_dict(private=True)]
    elif keys == "no-kid":
        keys = [_jwk(ec.generate_private_key(ec.SECP256R1())) for _ in range(2)]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    fails(run(ws, "secrets", "set", "s", "--type", "jwt", "--jwks", str(path)), 1, *words)


def test_key_set_file_that_is_not_json_is_refused(ws, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text("{not json")
    fails(run(ws, "secrets", "set", "s", "--type", "jwt", "--jwks", str(path)), 1, "not valid JSON")


def test_key_set_url_is_stored_not_fetched(ws):
    ok(run(ws, "secrets", "set", "remote", "--type", "jwt", "--jwks",
           "https://issuer.invalid/.well-known/jwks.json", "--algorithms", "RS256"))
    ok(run(ws, "secrets", "set", "local", "--type", "jwt", "--jwks", "http://localhost:9/jwks"))
    entries = listing(ws)
    assert entries["remote"]["jwks_url"] == "https://issuer.invalid/.well-known/jwks.json"
    assert entries["remote"]["key"] == "jwks_url" and entries["remote"]["algorithms"] == ["RS256"]
    assert entries["local"]["algorithms"] == []
    fails(run(ws, "secrets", "set", "plain", "--type", "jwt", "--jwks", "http://example.com/jwks"),
          1, "https://")


# ---- command line shape --------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("secrets", "set", "x", "--value-stdin"),                                   # no --type
    ("secrets", "set", "x", "--type", "basic", "--password-stdin"),             # no --user
    ("secrets", "set", "x", "--type", "jwt", "--hs-key-stdin", "--public-key", "f.pem"),
    ("secrets", "set", "x", "--type", "jwt"),                                   # no key source
    ("secrets", "set", "x", "--type", "value", "--value-stdin", "--issuer", "i"),
    ("secrets", "set", "bad name", "--type", "value", "--value-stdin"),
    ("token",),                                                                 # no --secret
])
def test_wrong_command_lines_exit_2(ws, args):
    proc = run(ws, *args, stdin="v")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip()


def test_delete_removes_and_a_missing_name_exits_1(ws):
    ok(run(ws, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin="x"))
    assert "deleted" in ok(run(ws, "secrets", "delete", "v")).stdout
    fails(run(ws, "secrets", "delete", "v"), 1, "no secret named 'v'")
    assert listing(ws) == {}


def test_workspace_defaults_to_the_current_folder(ws):
    ok(run(None, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin="x", cwd=ws))
    assert "v" in ok(run(None, "secrets", "list", cwd=ws)).stdout
    assert (ws / ".flowlet" / "state.db").exists()


def test_a_folder_without_flowlet_yaml_is_not_a_workspace(tmp_path):
    fails(run(tmp_path, "secrets", "list"), 1, "flowlet.yaml")
    assert not (tmp_path / ".flowlet").exists()


def test_module_entry_point_works_on_its_own(ws):
    ok(run(ws, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin="x",
           module="flowlet.cli_secrets"))
    assert "v" in ok(run(ws, "secrets", "list", module="flowlet.cli_secrets")).stdout


# ---- never showing material ----------------------------------------------------------------

def test_list_and_every_message_never_show_values(ws, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = write_pem(tmp_path / "k.pem", key, private=True)
    pem_body = "".join(pem.read_text().splitlines()[1:-1])
    outputs = [
        run(ws, "secrets", "set", "users", "--type", "basic", "--user", "alice", "--password-stdin",
            stdin=PASSWORD),
        run(ws, "secrets", "set", "hs", "--type", "jwt", "--hs-key-stdin", stdin=HS_KEY),
        run(ws, "secrets", "set", "hs-short", "--type", "jwt", "--hs-key-stdin", stdin=HS_KEY[:20]),
        run(ws, "secrets", "set", "pk", "--type", "jwt", "--private-key", str(pem)),
        run(ws, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin=VALUE),
        run(ws, "secrets", "list"),
        run(ws, "secrets", "list", "--json"),
    ]
    with open_store(ws) as store:
        hashed = store.get("users").users["alice"]
    text = "".join(p.stdout + p.stderr for p in outputs)
    assert "alice" in text and "users" in text and "ES256" in text
    for needle in (PASSWORD, HS_KEY, HS_KEY[:20], VALUE, hashed, "argon2", pem_body[:30],
                   base64.b64encode(HS_KEY.encode()).decode()):
        assert needle not in text


def test_list_text_shows_types_users_and_key_ids(ws, tmp_path):
    ok(run(ws, "secrets", "set", "users", "--type", "basic", "--user", "alice", "--password-stdin",
           stdin="pw"))
    pem = write_pem(tmp_path / "k.pem", ec.generate_private_key(ec.SECP256R1()), private=True)
    ok(run(ws, "secrets", "set", "pk", "--type", "jwt", "--private-key", str(pem), "--issuer", "me"))
    out = ok(run(ws, "secrets", "list")).stdout
    kid = listing(ws)["pk"]["kids"][0]
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "basic" in lines["users"] and "alice" in lines["users"]
    assert "jwt" in lines["pk"] and kid in lines["pk"] and "ES256" in lines["pk"] and "me" in lines["pk"]


# ---- master key and store errors -----------------------------------------------------------

def test_wrong_master_key_is_one_clear_line(ws):
    key_a = base64.urlsafe_b64encode(b"a" * 32).decode()
    key_b = base64.urlsafe_b64encode(b"b" * 32).decode().rstrip("=")
    ok(run(ws, "secrets", "set", "v", "--type", "value", "--value-stdin", stdin="x",
           env={"FLOWLET_MASTER_KEY": key_a}))
    err = fails(run(ws, "secrets", "list", env={"FLOWLET_MASTER_KEY": key_b}), 1, "wrong master key")
    assert len(err.splitlines()) == 1 and key_a not in err and key_b not in err
    fails(run(ws, "token", "--secret", "v", env={"FLOWLET_MASTER_KEY": key_b}), 1, "wrong master key")


def test_malformed_master_key_is_not_echoed(ws):
    bad = "this-is-not-a-valid-key"
    err = fails(run(ws, "secrets", "list", env={"FLOWLET_MASTER_KEY": bad}), 1, "FLOWLET_MASTER_KEY")
    assert bad not in err


def test_rotate_csrf_replaces_the_server_key(ws):
    with open_store(ws) as store:
        store.add_key_if_absent("csrf-keys", b'{"v": 0}')
        before = store.get_key("csrf-keys")
    out = ok(run(ws, "secrets", "rotate-csrf")).stdout
    assert "rotated" in out
    with open_store(ws) as store:
        assert store.get_key("csrf-keys") not in (None, before)
    assert listing(ws) == {}  # the CSRF key is internal, never a listed secret


# ---- with a running server -----------------------------------------------------------------

SERVED = {
    "flows/staff.yaml": """
        endpoint:
          method: GET
          path: /staff
          auth: {type: basic, secret: staff}
        respond:
          body: {user: "=auth.user"}
    """,
    "flows/orders.yaml": """
        endpoint:
          method: GET
          path: /orders
          auth: {type: jwt, secret: orders-jwt, scope: orders:read}
        respond:
          body: {sub: "=auth.claims.sub"}
    """,
}


def _served_workspace(tmp_path: Path) -> Path:
    from conftest import make_workspace

    ws = make_workspace(tmp_path, {"flowlet.yaml": "name: served\n", **SERVED})
    ok(run(ws, "secrets", "set", "staff", "--type", "basic", "--user", "alice", "--password-stdin",
           stdin="alice-pw"))
    key = ec.generate_private_key(ec.SECP256R1())
    ok(run(ws, "secrets", "set", "orders-jwt", "--type", "jwt", "--private-key",
           str(write_pem(tmp_path / "signing.pem", key, private=True)), "--issuer", "flowlet-test"))
    return ws


def test_server_accepts_tokens_from_flowlet_token(tmp_path):
    import httpx
    from conftest import run_server

    ws = _served_workspace(tmp_path)
    good = ok(run(ws, "token", "--secret", "orders-jwt", "--scope", "orders:read",
                  "--sub", "u1")).stdout.strip()
    narrow = ok(run(ws, "token", "--secret", "orders-jwt", "--scope", "other")).stdout.strip()
    expired = ok(run(ws, "token", "--secret", "orders-jwt", "--scope", "orders:read",
                     "--ttl", "-120")).stdout.strip()
    with run_server(ws) as server:
        def get(token):
            return httpx.get(server.url + "/api/orders", headers={"Authorization": f"Bearer {token}"})
        resp = get(good)
        assert resp.status_code == 200 and resp.json() == {"sub": "u1"}
        assert get(narrow).status_code == 403
        assert get(expired).status_code == 401


def test_running_server_sees_secret_changes_within_two_seconds(tmp_path):
    import httpx
    from conftest import run_server

    ws = _served_workspace(tmp_path)
    with run_server(ws) as server:
        url = server.url + "/api/staff"
        assert httpx.get(url, auth=("alice", "alice-pw")).status_code == 200
        assert httpx.get(url, auth=("bob", "bob-pw")).status_code == 401
        ok(run(ws, "secrets", "set", "staff", "--type", "basic", "--user", "bob", "--password-stdin",
               stdin="bob-pw"))
        changed = time.monotonic()
        while httpx.get(url, auth=("bob", "bob-pw")).status_code != 200:
            assert time.monotonic() - changed < 2.5, "the server did not see the new user"
            time.sleep(0.1)
        assert httpx.get(url, auth=("bob", "bob-pw")).json() == {"user": "bob"}
        assert PASSWORD not in server.stderr and "bob-pw" not in server.stderr
