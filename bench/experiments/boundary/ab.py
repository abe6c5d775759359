"""A/B of tiny RSGI apps at granian's boundary: server CPU per request under wrk.

    python bench/experiments/boundary/ab.py ROUNDS NAME,MODULE:APP[,ENV=VALUE...] ...
    python bench/experiments/boundary/ab.py 5 raw,variants:app v1,variants:app,BOUNDARY_VARIANT=1 \
        v2,variants:app,BOUNDARY_VARIANT=2 v3,variants:app,BOUNDARY_VARIANT=3 rawplus,rawplus:app

Each app runs on one granian worker pinned to CPU 0, wrk (1 thread, 32 connections, 1 s
warm-up, 4 s measured) on CPU 1; rounds are interleaved, medians printed. A Flowlet entry:
``flowlet,flowlet.server.app:create_app,FLOWLET_WORKSPACE=/path/ws,FLOWLET_ACCESS_LOG=0,CWD=/path/ws,PATHQ=/api/hello``.
variants.py holds the raw app and one variant per piece of boundary work; rawplus.py does all
of Flowlet's boundary work (the lookups, four answer headers, a request id).
"""
import os, subprocess, sys, time, socket, signal, re, statistics
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def cpu_of(pgid):
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try:
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError: continue
        if int(st[2]) == pgid:
            total += int(st[11]) + int(st[12])
    return total / os.sysconf("SC_CLK_TCK")
def one(target, env_extra, dur):
    p = port()
    env = dict(os.environ, **env_extra)
    argv = ["taskset", "-c", "0", PY, "-m", "granian", "--interface", "rsgi", "--workers", "1", "--no-ws",
            "--no-access-log", "--log-level", "warning", "--host", "127.0.0.1", "--port", str(p)]
    if target.endswith(":create_app"): argv.append("--factory")
    argv.append(target)
    proc = subprocess.Popen(argv, env=env, cwd=env_extra.get("CWD", HERE), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try: socket.create_connection(("127.0.0.1", p), 0.2).close(); break
        except OSError: time.sleep(0.1)
    path = env_extra.get("PATHQ", "/api/hello")
    url = f"http://127.0.0.1:{p}{path}"
    subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c32", "-d1s", url], capture_output=True)
    c0 = cpu_of(proc.pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{dur}s", url], capture_output=True, text=True).stdout
    c1 = cpu_of(proc.pid)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    os.killpg(proc.pid, signal.SIGTERM); proc.wait()
    return n / dur, (c1 - c0) / n * 1e6
apps = {}
for arg in sys.argv[2:]:
    name, target, *envs = arg.split(",")
    apps[name] = (target, dict(e.split("=", 1) for e in envs))
res = {k: [] for k in apps}
for r in range(int(sys.argv[1])):
    order = list(apps) if r % 2 == 0 else list(reversed(apps))
    for k in order:
        res[k].append(one(*apps[k], 4))
for k, v in res.items():
    print(f"{k:12s} req/s {statistics.median(x[0] for x in v):8.0f}  cpu us/req {statistics.median(x[1] for x in v):6.1f}  {[round(x[1],1) for x in v]}")
