#!/usr/bin/env python3
"""Flowlet's benchmark suite: Flowlet against a raw ASGI app (the limit) and against Starlette
and FastAPI with the usual security middleware, all on one granian worker, driven by wrk.

    python bench/run.py [--duration 5] [--repeat 3] [--quick]

Every measurement starts the contender as a fresh process on a free port, checks one request
answers as expected, warms up, runs wrk, reads the peak RSS of the server's processes and
stops it. Repeats are interleaved (repeat 1 of every case, then repeat 2, ...) so a slow
moment of the machine does not hit one contender only. Results: a Markdown report (tables
between markers, so hand-written analysis around them survives a re-run), a PNG chart of
the ratios and the raw numbers as JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONTENDERS_DIR = HERE / "contenders"
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from workspaces import Material  # noqa: E402

PY = sys.executable
HOST = "127.0.0.1"
CORS_ORIGIN = "https://app.example.com"


# ---- cases ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    title: str
    path: str
    method: str = "GET"
    cors: bool = False             # the answer must carry Access-Control-Allow-Origin


CASES = [
    Case("open", "open GET", "/api/hello"),
    Case("preflight", "CORS preflight", "/api/cors", "OPTIONS", cors=True),
    Case("cors", "CORS simple GET, allowed origin", "/api/cors", cors=True),
    Case("basic", "Basic GET (same credentials)", "/api/basic"),
    Case("jwt-hs256", "JWT HS256 GET (repeated token)", "/api/jwt/hs"),
    Case("jwt-rs256", "JWT RS256 GET (repeated token)", "/api/jwt/rs"),
    Case("jwt-es256", "JWT ES256 GET (repeated token)", "/api/jwt/es"),
    Case("jwt-eddsa", "JWT EdDSA GET (repeated token)", "/api/jwt/ed"),
    Case("jwt-es256-fresh", "JWT ES256 GET (every token new)", "/api/jwt/es"),
    Case("csrf", "CSRF POST (valid token and cookie)", "/api/notes", "POST"),
    Case("csrf-off", "POST without CSRF (the CSRF case's baseline)", "/api/notes-open", "POST"),
    Case("post", "POST, ten-field JSON body, not validated", "/api/signup-raw", "POST"),
    Case("validated", "POST, ten-field JSON body validated by its schema", "/api/signup", "POST"),
    Case("routes-1", "1-endpoint workspace", "/api/items0/42"),
    Case("routes-1000", "1,000-endpoint workspace, last route", "/api/items999/42"),
    Case("ratelimit-local", "rate-limited GET, counters shared by the workers", "/api/limited"),
    Case("ratelimit-redis", "rate-limited GET, counters in Redis", "/api/limited"),
]
CASE_BY_NAME = {c.name: c for c in CASES}
JWT_CASES = ("jwt-hs256", "jwt-rs256", "jwt-es256", "jwt-eddsa", "jwt-es256-fresh")
FLOWLET_ONLY = ("ratelimit-local", "ratelimit-redis",       # nothing comparable in the glue apps
                "csrf-off")                                 # the CSRF case's own baseline


# ---- contenders -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    kind: str                      # raw | flowlet | starlette | fastapi
    server: str = "granian"        # granian | uvicorn
    interface: str = "asgi"        # granian's interface: asgi | rsgi
    workers: int = 0               # granian workers; 0: the run's --workers
    cases: tuple[str, ...] | None = None     # None: every case
    env: tuple[tuple[str, str], ...] = ()

    def serves(self, case: str) -> bool:
        if case in FLOWLET_ONLY:
            return self.name in ("flowlet", "flowlet-base")
        return self.cases is None or case in self.cases


CONTENDERS = [
    Contender("raw", "raw ASGI app", "raw", cases=("open",)),
    Contender("raw-rsgi", "raw RSGI app", "raw", interface="rsgi", cases=("open",)),
    Contender("flowlet", "Flowlet (no access log)", "flowlet", interface="rsgi",
              env=(("FLOWLET_ACCESS_LOG", "0"),)),
    Contender("flowlet-log", "Flowlet (access log on)", "flowlet", interface="rsgi", cases=("open",),
              env=(("FLOWLET_ACCESS_LOG", "1"),)),
    Contender("flowlet-2w", "Flowlet, 2 workers (no access log)", "flowlet", interface="rsgi", workers=2,
              cases=("open",), env=(("FLOWLET_ACCESS_LOG", "0"),)),
    Contender("flowlet-asgi", "Flowlet's ASGI entry point on granian (no access log)", "flowlet", cases=("open",),
              env=(("FLOWLET_ACCESS_LOG", "0"),)),
    # As with --admin-port: every worker counts requests and publishes them to a run directory.
    Contender("flowlet-metrics", "Flowlet (metrics on, no access log)", "flowlet", interface="rsgi",
              cases=("open",),
              env=(("FLOWLET_ACCESS_LOG", "0"), ("FLOWLET_METRICS_DIR", "@run"))),
    Contender("starlette", "Starlette + middleware (PyJWT)", "starlette"),
    Contender("fastapi", "FastAPI + middleware (PyJWT)", "fastapi"),
    Contender("starlette-joserfc", "Starlette + joserfc", "starlette", cases=JWT_CASES,
              env=(("BENCH_JWT_LIB", "joserfc"),)),
    Contender("uvicorn-raw", "raw ASGI app on uvicorn", "raw", server="uvicorn", cases=("open",)),
    # A/B within one run: Flowlet imported from the checkout named by BENCH_BASE_SRC (its src/).
    Contender("flowlet-base", "Flowlet from BENCH_BASE_SRC (no access log)", "flowlet", interface="rsgi",
              env=(("FLOWLET_ACCESS_LOG", "0"),)),
    Contender("uvicorn-flowlet", "Flowlet on uvicorn (no access log)", "flowlet", server="uvicorn",
              cases=("open",), env=(("FLOWLET_ACCESS_LOG", "0"),)),
]
CONTENDER_BY_NAME = {c.name: c for c in CONTENDERS}


# ---- processes ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_command(ctx: "Run", contender: Contender, case: Case, port: int) -> tuple[list[str], dict, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLET_", "BENCH_"))}
    env.update(contender.env)
    env["PYTHONUNBUFFERED"] = "1"
    cwd = CONTENDERS_DIR
    factory = False
    if contender.kind == "raw":
        target = f"raw_{contender.interface}:app"
    elif contender.kind == "flowlet":
        target, factory = "flowlet.server.app:create_app", True
        ws = ctx.material.ws
        if case.name.startswith("routes-"):
            ws = ctx.material.ws_routes[int(case.name.split("-")[1])]
        if case.name == "ratelimit-redis":
            ws = ctx.material.ws_redis
        env["FLOWLET_WORKSPACE"] = str(ws)
        env["FLOWLET_LOG_LEVEL"] = "warning"
        if contender.name == "flowlet-base":
            env["PYTHONPATH"] = str(Path(os.environ["BENCH_BASE_SRC"]) / "src")
        if env.get("FLOWLET_METRICS_DIR") == "@run":
            env["FLOWLET_METRICS_DIR"] = str(ctx.tmp)
        cwd = ws
    else:
        target = f"{contender.kind}_app:app"
        env["BENCH_CASE"] = case.name
        env["BENCH_MATERIAL"] = str(ctx.material.glue)
    if contender.kind != "flowlet":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CONTENDERS_DIR), env.get("PYTHONPATH")) if p)
    if contender.server == "granian":
        argv = [PY, "-m", "granian", "--interface", contender.interface, "--workers",
                str(contender.workers or ctx.workers),
                "--loop", "auto", "--no-ws", "--no-access-log", "--log-level", "warning", "--host", HOST,
                "--port", str(port)]
    else:
        argv = [PY, "-m", "uvicorn", "--host", HOST, "--port", str(port), "--no-access-log",
                "--log-level", "warning", "--lifespan", "on"]
    if factory:
        argv.append("--factory")
    argv.append(target)
    if contender.kind == "flowlet" and contender.server == "uvicorn":
        argv[-1] = "flowlet.asgi:create_app"     # the ASGI entry point users run
    if ctx.server_cpus:
        argv = ["taskset", "-c", ctx.server_cpus, *argv]
    return argv, env, cwd


def start(argv: list[str], env: dict, cwd: Path, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    try:
        # A session of its own: the server and its workers form one process group, ours to stop.
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)    # stray workers of our own group, if any
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def http_request(port: int, method: str, path: str, headers: dict | None = None, body: str | None = None,
                 timeout: float = 30) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body.encode() if body is not None else None, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen, path: str = "/", timeout: float = 60,
               want_ok: bool = False) -> float:
    """Seconds until the server answers HTTP (any status; a 2xx with ``want_ok``)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering")
        try:
            status, _, _ = http_request(port, "GET", path, timeout=2)
            if not want_ok or 200 <= status < 300:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"server did not answer within {timeout} s")


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds used so far by the processes of the group."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def group_memory(pgid: int) -> dict:
    """Peak (VmHWM) and current (VmRSS) resident memory of every process in the group, kB."""
    procs = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, ValueError):
            continue
        mem = {}
        for line in status.splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":", 1)
                mem[key] = int(value.split()[0])
        try:   # PSS: shared pages (the forked worker shares the parent's) counted once in the sum
            for line in Path(f"/proc/{entry}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    mem["Pss"] = int(line.split()[1])
                    break
        except OSError:
            pass
        if mem:
            procs.append(mem)
    return {
        "processes": len(procs),
        "hwm_max_kb": max((p.get("VmHWM", 0) for p in procs), default=0),
        "hwm_sum_kb": sum(p.get("VmHWM", 0) for p in procs),
        "rss_sum_kb": sum(p.get("VmRSS", 0) for p in procs),
        **({"pss_sum_kb": sum(p["Pss"] for p in procs)} if procs and all("Pss" in p for p in procs) else {}),
    }


# ---- wrk ---------------------------------------------------------------------------------------------

@dataclass
class Spec:
    """The request wrk sends for one measurement."""

    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: str | None = None
    token_file: Path | None = None    # rotate "Authorization: Bearer <line>" through this file
    expect: tuple[int, ...] = (200,)


def _lua_str(value: str) -> str:
    level = "=="
    while f"]{level}]" in value:
        level += "="
    return f"[{level}[{value}]{level}]"


def lua_script(spec: Spec, token_file: Path | None, path: Path) -> Path:
    lines = [f"wrk.method = {_lua_str(spec.method)}"]
    for k, v in spec.headers.items():
        lines.append(f"wrk.headers[ {_lua_str(k)} ] = {_lua_str(v)}")   # spaces: "[[" would open a long string
    if spec.body is not None:
        lines.append(f"wrk.body = {_lua_str(spec.body)}")
    if token_file is not None:
        lines += [
            "local tokens = {}",
            f"for line in io.lines({_lua_str(str(token_file))}) do",
            "  if #line > 0 then tokens[#tokens + 1] = line end",
            "end",
            "local i = 0",
            "request = function()",
            "  i = i + 1",
            "  if i > #tokens then i = 1 end",
            '  wrk.headers["Authorization"] = "Bearer " .. tokens[i]',
            "  return wrk.format()",
            "end",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {"non_2xx": 0, "socket_errors": 0}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if not m:
        raise ValueError("no Requests/sec in wrk output:\n" + out)
    res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([0-9.]+\w+)", out)
    if m:
        res["requests"] = int(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            res[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non_2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = sum(int(x) for x in m.groups())
        res["timeouts"] = int(m.group(4))
    return res


def run_wrk(ctx: "Run", port: int, spec: Spec, script: Path, seconds: int) -> dict:
    pin = ["taskset", "-c", ctx.wrk_cpus] if ctx.wrk_cpus else []
    argv = [*pin, "wrk", f"-t{ctx.threads}", f"-c{ctx.connections}", f"-d{seconds}s", "--latency",
            "--timeout", f"{ctx.timeout}s", "-s", str(script), f"http://{HOST}:{port}{spec.path}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + ctx.timeout + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse_wrk(proc.stdout)


# ---- one measurement ---------------------------------------------------------------------------------

def build_spec(ctx: "Run", contender: Contender, case: Case, port: int) -> Spec:
    m = ctx.material
    spec = Spec(case.method, case.path)
    if case.name == "preflight":
        spec.headers = {"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "GET",
                        "Access-Control-Request-Headers": "content-type"}
        spec.expect = (204,) if contender.kind == "flowlet" else (200, 204)
    elif case.name == "cors":
        spec.headers = {"Origin": CORS_ORIGIN}
    elif case.name == "basic":
        spec.headers = {"Authorization": m.basic_header}
    elif case.name in JWT_CASES:
        key = case.path.rsplit("/", 1)[1]
        spec.headers = {"Authorization": "Bearer " + m.tokens[key]}
        if case.name == "jwt-es256-fresh":
            spec.token_file = m.fresh_files["main"]
    elif case.name == "csrf-off":
        spec.headers = {"Content-Type": "application/json"}
        spec.body = json.dumps({"title": "bench", "n": 1})
        spec.expect = (201,)
    elif case.name in ("post", "validated"):
        spec.headers = {"Content-Type": "application/json"}
        spec.body = json.dumps(m.signup_body)
    elif case.name == "csrf":
        own = f"http://{HOST}:{port}"
        spec.headers = {"Content-Type": "application/json", "Origin": own, "Sec-Fetch-Site": "same-origin"}
        spec.body = json.dumps({"title": "bench", "n": 1})
        spec.expect = (201,)
        if contender.kind == "flowlet":
            status, headers, body = http_request(port, "GET", "/api/csrf")
            if status != 200:
                raise RuntimeError(f"GET /api/csrf answered {status}")
            token = json.loads(body)["token"]
            cookie = headers["set-cookie"].split(";", 1)[0]
            spec.headers.update({"X-CSRF-TOKEN": token, "Cookie": cookie})
        else:
            status, headers, body = http_request(port, "GET", "/api/hello")
            cookie = headers.get("set-cookie", "").split(";", 1)[0]
            if not cookie.startswith("csrftoken="):
                raise RuntimeError("starlette-csrf set no csrftoken cookie")
            spec.headers.update({"x-csrf-token": cookie.split("=", 1)[1], "Cookie": cookie})
    return spec


def measure(ctx: "Run", contender: Contender, case: Case, rep: int) -> dict:
    result = {"contender": contender.name, "case": case.name, "repeat": rep}
    port = free_port()
    argv, env, cwd = server_command(ctx, contender, case, port)
    log_path = ctx.logs / f"{contender.name}.{case.name}.{rep}.log"
    t0 = time.perf_counter()
    proc = start(argv, env, cwd, log_path)
    try:
        wait_ready(port, proc)
        result["ready_s"] = time.perf_counter() - t0
        spec = build_spec(ctx, contender, case, port)
        status, headers, body = http_request(port, spec.method, spec.path, spec.headers, spec.body)
        problem = None
        if status not in spec.expect:
            problem = f"probe answered {status}, expected {spec.expect}: {body[:200]!r}"
        elif case.cors and "access-control-allow-origin" not in headers:
            problem = "probe answer has no Access-Control-Allow-Origin"
        if problem:
            result["error"] = problem
            return result
        if ctx.warmup > 0:
            warm_tokens = ctx.material.fresh_files.get("warm") if spec.token_file else None
            run_wrk(ctx, port, spec, lua_script(spec, warm_tokens, ctx.tmp / "warm.lua"), ctx.warmup)
        cpu0 = group_cpu_s(proc.pid)
        result.update(run_wrk(ctx, port, spec, lua_script(spec, spec.token_file, ctx.tmp / "run.lua"),
                              ctx.duration))
        # CPU time the server spent per answered request: steadier than req/s on a busy machine.
        result["cpu_us_per_req"] = (group_cpu_s(proc.pid) - cpu0) * 1e6 / max(result.get("requests", 0), 1)
        if spec.token_file is not None:
            result["distinct_tokens"] = ctx.fresh_tokens
            result["tokens_wrapped"] = result.get("requests", 0) > ctx.fresh_tokens
        result["memory"] = group_memory(proc.pid)
        # Wrong answers or broken connections make the numbers meaningless; timeouts (a server
        # too slow for wrk's --timeout) are a result, reported in the notes.
        bad = result.get("non_2xx", 0) + result.get("socket_errors", 0) - result.get("timeouts", 0)
        if bad > 0.005 * max(result.get("requests", 0), 1):
            result["error"] = f"{bad} of {result.get('requests', 0)} requests failed (non-2xx or socket errors)"
        if proc.poll() is not None:
            result["error"] = f"server exited with status {proc.returncode} during the run"
    except Exception as exc:   # one failed measurement must not end the run
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop(proc)
    if "error" in result:
        tail = log_path.read_text(errors="replace")[-800:] if log_path.exists() else ""
        result["log_tail"] = tail
    return result


def measure_startup(ctx: "Run", n: int, rep: int) -> dict:
    """`flowlet serve` on the n-endpoint workspace: seconds until its last route answers 200, RSS."""
    ws = ctx.material.ws_routes[n]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLET_", "BENCH_"))}
    argv = [PY, "-m", "flowlet.cli", "serve", str(ws), "--port", str(port), "--no-access-log",
            "--log-level", "warning"]
    result = {"endpoints": n, "repeat": rep}
    t0 = time.perf_counter()
    proc = start(argv, env, ws, ctx.logs / f"startup-{n}.{rep}.log")
    try:
        result["startup_s"] = wait_ready(port, proc, f"/api/items{n - 1}/42", want_ok=True)
        time.sleep(0.3)
        result["memory"] = group_memory(proc.pid)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop(proc)
    result["total_s"] = time.perf_counter() - t0
    return result


def inprocess_jwt(ctx: "Run") -> dict:
    """The in-process cost of a first-seen token vs a repeated one (bench/jwt_first_seen.py)."""
    argv = [PY, str(HERE / "jwt_first_seen.py"), "--ws", str(ctx.material.ws), "--glue",
            str(ctx.material.glue), "--n", str(ctx.inprocess_n)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-800:]}
    return json.loads(proc.stdout)


# ---- the run -----------------------------------------------------------------------------------------

class Run:
    def __init__(self, args: argparse.Namespace):
        self.duration = args.duration
        self.repeat = args.repeat
        self.warmup = args.warmup
        self.connections = args.connections
        self.threads = args.threads
        self.workers = args.workers
        self.server_cpus, self.wrk_cpus = args.pin.split("/") if args.pin else ("", "")
        self.timeout = args.timeout
        self.cases = [CASE_BY_NAME[c] for c in args.cases]
        self.contenders = [CONTENDER_BY_NAME[c] for c in args.contenders]
        self.startup = args.startup
        self.inprocess = args.inprocess
        self.inprocess_n = args.inprocess_n
        self.fresh_tokens = max(5000, 8000 * self.duration) if "jwt-es256-fresh" in args.cases else 0
        self.tmp = Path(tempfile.mkdtemp(prefix="flowlet-bench-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        case_names = {c.name for c in self.cases}
        if self.startup:
            case_names |= {"routes-1", "routes-1000"}
        self.material = Material(self.tmp / "m", case_names, self.fresh_tokens)

    def plan(self) -> list[tuple[Contender, Case]]:
        return [(ct, case) for case in self.cases for ct in self.contenders if ct.serves(case.name)]


def environment(ctx: Run, command: str) -> dict:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    loop = next((name for name in ("rloop", "uvloop") if importlib.util.find_spec(name)), "asyncio")
    return {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {d: version(d) for d in ("flowlet", "granian", "uvicorn", "httptools", "starlette", "fastapi",
                                             "pyjwt", "joserfc", "starlette-csrf", "argon2-cffi", "cryptography")},
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0] if (wrk.stdout + wrk.stderr) else "?",
        "granian_loop": loop,
        "uvicorn_http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "uvicorn_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "settings": {"duration_s": ctx.duration, "repeat": ctx.repeat, "warmup_s": ctx.warmup,
                     "connections": ctx.connections, "threads": ctx.threads, "fresh_tokens": ctx.fresh_tokens,
                     "workers": ctx.workers, "server_cpus": ctx.server_cpus or "any", "wrk_cpus": ctx.wrk_cpus or "any"},
        "loadavg_before": os.getloadavg(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=5, help="seconds of wrk per measurement (default 5)")
    p.add_argument("--repeat", type=int, default=3, help="measurements per case and contender (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measurement (default 1)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="granian workers per server (default 1)")
    p.add_argument("--pin", metavar="SERVER/WRK",
                   help="CPU lists for taskset, e.g. 0/1: the server on CPU 0, wrk on CPU 1; 0,1/0,1 shares both")
    p.add_argument("--timeout", type=int, default=10, help="wrk's request timeout, seconds")
    p.add_argument("--cases", help="comma-separated: " + ", ".join(c.name for c in CASES))
    p.add_argument("--contenders", help="comma-separated: " + ", ".join(c.name for c in CONTENDERS))
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 s, 1 repeat, no warm-up, raw+flowlet, open+cors, no start-up/in-process parts")
    p.add_argument("--no-startup", dest="startup", action="store_false", default=None,
                   help="skip the `flowlet serve` start-up measurements")
    p.add_argument("--no-inprocess", dest="inprocess", action="store_false", default=None,
                   help="skip the in-process first-seen-token measurement")
    p.add_argument("--inprocess-n", type=int, default=1500, help="distinct tokens for the in-process part")
    p.add_argument("--out", type=Path, help="Markdown report (default bench/NOTES.md; "
                                            "bench/results/quick.md with --quick)")
    p.add_argument("--json", type=Path, help="raw results (default bench/results/benchmarks.json, "
                                             "or next to --out)")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (workspaces, logs)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.repeat, args.warmup = 1, 1, 0
        args.cases = args.cases or "open,cors"
        args.contenders = args.contenders or "raw,flowlet"
        args.startup = False if args.startup is None else args.startup
        args.inprocess = False if args.inprocess is None else args.inprocess
        args.out = args.out or HERE / "results" / "quick.md"
    args.startup = True if args.startup is None else args.startup
    args.inprocess = True if args.inprocess is None else args.inprocess
    args.cases = (args.cases or ",".join(c.name for c in CASES)).split(",")
    args.contenders = (args.contenders or ",".join(c.name for c in CONTENDERS)).split(",")
    for name in args.cases:
        if name not in CASE_BY_NAME:
            p.error(f"unknown case {name!r}")
    for name in args.contenders:
        if name not in CONTENDER_BY_NAME:
            p.error(f"unknown contender {name!r}")
    if args.duration < 1 or args.repeat < 1 or args.warmup < 0:
        p.error("--duration and --repeat must be at least 1, --warmup at least 0")
    args.out = args.out or HERE / "NOTES.md"
    if args.json is None:
        default_doc = (HERE / "NOTES.md").resolve()
        args.json = HERE / "results" / "benchmarks.json" if args.out.resolve() == default_doc \
            else args.out.with_suffix(".json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    command = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    ctx = Run(args)
    t_start = time.time()
    try:
        print(f"setting up workspaces and keys in {ctx.tmp} ...", flush=True)
        ctx.material.build()
        env = environment(ctx, command.strip())
        plan = ctx.plan()
        results: list[dict] = []
        for rep in range(ctx.repeat):
            order = plan if rep % 2 == 0 else _reverse_within_cases(plan)
            for i, (contender, case) in enumerate(order, 1):
                label = f"[{rep + 1}/{ctx.repeat} {i}/{len(order)}] {case.name:16} {contender.name:18}"
                print(label, end=" ", flush=True)
                r = measure(ctx, contender, case, rep)
                results.append(r)
                print(f"error: {r['error']}" if "error" in r else
                      f"{r['rps']:>9.0f} req/s  p50 {r.get('p50_ms', 0):.2f} ms  p99 {r.get('p99_ms', 0):.2f} ms"
                      f"  cpu {r.get('cpu_us_per_req', 0):.0f} us/req",
                      flush=True)
        startup: list[dict] = []
        if ctx.startup:
            for rep in range(ctx.repeat):
                for n in (1, 1000):
                    r = measure_startup(ctx, n, rep)
                    startup.append(r)
                    print(f"[startup] {n:>5} endpoints: " + (r.get("error") or f"{r['startup_s']:.2f} s"), flush=True)
        inproc = inprocess_jwt(ctx) if ctx.inprocess and "es" in ctx.material.tokens else None
        env["loadavg_after"] = os.getloadavg()
        env["wall_s"] = round(time.time() - t_start)
        data = {"environment": env, "results": results, "startup": startup, "inprocess_jwt": inproc,
                "contenders": {c.name: c.label for c in CONTENDERS},
                "cases": {c.name: c.title for c in CASES}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n")
        chart = None if args.no_chart else args.out.with_suffix(".png")
        chart = report.write(data, args.out, chart)
        print(f"wrote {args.out}" + (f", {chart}" if chart else "") + f", {args.json}")
    finally:
        if args.keep:
            print(f"kept {ctx.tmp}")
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0


def _reverse_within_cases(plan):
    out, group = [], []
    for item in plan + [(None, None)]:
        if group and item[1] is not group[0][1]:
            out.extend(reversed(group))
            group = []
        if item[0] is not None:
            group.append(item)
    return out


if __name__ == "__main__":
    sys.exit(main())
