#!/usr/bin/env python3
"""In-process cost of one JWT verification: Flowlet's policy with a repeated token (cache hit)
and with a token it has never seen (full verification), against PyJWT and joserfc decoding.

    python bench/jwt_first_seen.py --ws WORKSPACE --glue MATERIAL_DIR [--n 2000] [--rounds 5]

WORKSPACE holds the jwt secrets ``hs``, ``rs``, ``es``, ``ed`` (bench/workspaces.py makes them);
MATERIAL_DIR their private PEMs and the shared key. Prints JSON: microseconds per token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="EdDSA is deprecated")   # joserfc's note on RFC 9864

ALGS = {"hs": "HS256", "rs": "RS256", "es": "ES256", "ed": "EdDSA"}
PASSWORD = "bench-password-1"          # bench/workspaces.py's


def tokens_for(glue: Path, name: str, alg: str, n: int) -> list[str]:
    from joserfc import jwt
    from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

    if name == "hs":
        key = OctKey.import_key((glue / "hs.key").read_bytes())
    else:
        key = {"rs": RSAKey, "es": ECKey, "ed": OKPKey}[name].import_key((glue / f"{name}.pem").read_bytes())
    now = int(time.time())
    return [jwt.encode({"alg": alg, "typ": "JWT"}, {"sub": f"u{i}", "scope": "read", "iat": now,
                                                    "exp": now + 3600, "jti": str(i)}, key, algorithms=[alg])
            for i in range(n)]


def scope_for(token: str) -> dict:
    return {"type": "http", "method": "GET", "path": "/api/jwt", "scheme": "http", "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"authorization", ("Bearer " + token).encode())]}


def per_call_us(fn, items, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        times.append((time.perf_counter() - t0) / len(items) * 1e6)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ws", type=Path, required=True)
    p.add_argument("--glue", type=Path, required=True)
    p.add_argument("--n", type=int, default=1500, help="tokens per round (n x rounds stays under the 10,000-entry cache)")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    from flowlet.http import Request
    from flowlet.secrets import open_store
    from flowlet.secrets.view import SecretsView
    from flowlet.security.jwt import JwtPolicy
    from flowlet.security.runtime import AuthRuntime

    store = open_store(args.ws)
    view = SecretsView(store)
    loop = asyncio.new_event_loop()
    results = {}
    for name, alg in ALGS.items():
        if view.get(name) is None:
            continue
        n = args.n
        tokens = tokens_for(args.glue, name, alg, n * args.rounds)
        row = {}
        # Flowlet, first-seen: a fresh policy (fresh cache) per round would share the verifier, so
        # use distinct tokens for every call of every round instead.
        policy = JwtPolicy(name, realm="bench", secrets=view, runtime=AuthRuntime())
        requests = [Request(scope_for(t)) for t in tokens]

        async def run_all(reqs):
            for r in reqs:
                await policy.authenticate(r)

        times = []
        for k in range(args.rounds):
            chunk = requests[k * n:(k + 1) * n]
            t0 = time.perf_counter()
            loop.run_until_complete(run_all(chunk))
            times.append((time.perf_counter() - t0) / n * 1e6)
        row["flowlet_first_us"] = statistics.median(times)
        # Flowlet, repeated token: every request carries the same (now cached) token.
        same = [Request(scope_for(tokens[0])) for _ in range(n)]
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            loop.run_until_complete(run_all(same))
            times.append((time.perf_counter() - t0) / n * 1e6)
        row["flowlet_cached_us"] = statistics.median(times)
        sample = tokens[:n]
        try:
            import jwt as pyjwt
            from cryptography.hazmat.primitives import serialization

            if name == "hs":
                key = (args.glue / "hs.key").read_bytes()
            else:
                key = serialization.load_pem_private_key((args.glue / f"{name}.pem").read_bytes(), None).public_key()
            row["pyjwt_us"] = per_call_us(
                lambda t: pyjwt.decode(t, key, algorithms=[alg], options={"require": ["exp"]}), sample, args.rounds)
        except ImportError:
            pass
        from joserfc import jwt as jose_jwt
        from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

        if name == "hs":
            jkey = OctKey.import_key((args.glue / "hs.key").read_bytes())
        else:
            jkey = {"rs": RSAKey, "es": ECKey, "ed": OKPKey}[name].import_key((args.glue / f"{name}.pub.pem").read_bytes())
        registry = jose_jwt.JWTClaimsRegistry(exp={"essential": True}, leeway=60)

        def jose(t):
            registry.validate(jose_jwt.decode(t, jkey, algorithms=[alg]).claims)
        row["joserfc_us"] = per_call_us(jose, sample, args.rounds)
        results[alg] = row
    store.close()
    out = {"n": args.n, "rounds": args.rounds, "results": results}
    hash_file = args.glue / "basic.hash"
    if hash_file.exists():
        # What the usual Basic glue pays on every request: one argon2id verification (library defaults).
        from argon2 import PasswordHasher
        ph, phc = PasswordHasher(), hash_file.read_text().strip()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            ph.verify(phc, PASSWORD)
            times.append((time.perf_counter() - t0) * 1e3)
        out["argon2_verify_ms"] = statistics.median(times)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
