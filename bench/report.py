"""Turn bench/run.py's raw results into Markdown tables and a chart of the ratios.

The tables go between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``; when the report
file already has those markers, only that part is replaced, so hand-written analysis around
it survives a re-run.
"""

from __future__ import annotations

import statistics
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
GLUE = ("starlette", "fastapi", "starlette-joserfc")
JWT = (("jwt-hs256", "HS256"), ("jwt-rs256", "RS256"), ("jwt-es256", "ES256"), ("jwt-eddsa", "EdDSA"))


def aggregate(results: list[dict]) -> dict[tuple[str, str], dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["contender"], r["case"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        agg = {"runs": len(rs), "ok": len(ok), "errors": [r["error"] for r in rs if "error" in r]}
        if ok:
            rps = [r["rps"] for r in ok]
            agg.update(
                rps=statistics.median(rps), rps_min=min(rps), rps_max=max(rps),
                p50_ms=statistics.median(r.get("p50_ms", 0.0) for r in ok),
                p99_ms=statistics.median(r.get("p99_ms", 0.0) for r in ok),
                hwm_max_mb=max(r.get("memory", {}).get("hwm_max_kb", 0) for r in ok) / 1024,
                hwm_sum_mb=max(r.get("memory", {}).get("hwm_sum_kb", 0) for r in ok) / 1024,
                non_2xx=sum(r.get("non_2xx", 0) for r in ok),
                socket_errors=sum(r.get("socket_errors", 0) for r in ok),
                wrapped=any(r.get("tokens_wrapped") for r in ok),
                requests=statistics.median(r.get("requests", 0) for r in ok),
                cpu_us=statistics.median(r.get("cpu_us_per_req", 0.0) for r in ok),
            )
        out[key] = agg
    return out


def _rps(agg, contender, case):
    a = agg.get((contender, case))
    return a.get("rps") if a else None


def _cpu(agg, contender, case):
    a = agg.get((contender, case))
    return a.get("cpu_us") if a else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def targets(data: dict, agg: dict) -> list[dict]:
    """Each target: label, ratio/value, goal, kind (">=" or "<"), met."""
    rows = []

    def ratio(label, num, den, goal):
        value = _ratio(_rps(agg, *num), _rps(agg, *den))
        by_cpu = _ratio(_cpu(agg, *den), _cpu(agg, *num))
        rows.append({"label": label, "value": value, "by_cpu": by_cpu, "goal": goal, "kind": ">=",
                     "met": None if value is None or goal is None else value >= goal, "unit": "x"})

    ratio("open GET: Flowlet / raw ASGI", ("flowlet", "open"), ("raw", "open"), 1.0)
    ratio("open GET: Flowlet / raw RSGI", ("flowlet", "open"), ("raw-rsgi", "open"), 0.75)
    ratio("open GET: raw RSGI / raw ASGI (granian's two interfaces)", ("raw-rsgi", "open"), ("raw", "open"), None)
    ratio("open GET: Flowlet's ASGI entry point / Flowlet (RSGI)", ("flowlet-asgi", "open"), ("flowlet", "open"), None)
    ratio("open GET, access log on / off", ("flowlet-log", "open"), ("flowlet", "open"), 0.97)
    ratio("open GET, metrics on / off", ("flowlet-metrics", "open"), ("flowlet", "open"), 0.95)
    ratio("preflight / Flowlet open GET", ("flowlet", "preflight"), ("flowlet", "open"), 0.95)
    ratio("CORS GET / Flowlet open GET", ("flowlet", "cors"), ("flowlet", "open"), 0.95)
    ratio("CORS GET: Flowlet / Starlette+CORSMiddleware", ("flowlet", "cors"), ("starlette", "cors"), 1.3)
    for case, alg in JWT:
        ratio(f"JWT {alg}: Flowlet / Starlette+PyJWT", ("flowlet", case), ("starlette", case), 2.0)
        ratio(f"JWT {alg}: Flowlet / Starlette+joserfc", ("flowlet", case), ("starlette-joserfc", case), 2.0)
        ratio(f"JWT {alg} / Flowlet open GET", ("flowlet", case), ("flowlet", "open"), 0.95)
    ratio("CSRF POST: Flowlet / Starlette+starlette-csrf", ("flowlet", "csrf"), ("starlette", "csrf"), 3.0)
    ratio("CSRF POST / Flowlet POST without CSRF", ("flowlet", "csrf"), ("flowlet", "csrf-off"), 0.8)
    ratio("Basic / Flowlet open GET", ("flowlet", "basic"), ("flowlet", "open"), 0.95)
    ratio("validated POST: Flowlet / FastAPI+pydantic", ("flowlet", "validated"), ("fastapi", "validated"), 3.0)
    ratio("validated POST / Flowlet unvalidated POST", ("flowlet", "validated"), ("flowlet", "post"), 0.85)
    ratio("1,000 endpoints / 1 endpoint (last route)", ("flowlet", "routes-1000"), ("flowlet", "routes-1"), 0.9)
    ratio("rate-limited GET, local counters / open GET", ("flowlet", "ratelimit-local"), ("flowlet", "open"), 0.9)
    ratio("rate-limited GET, Redis / open GET", ("flowlet", "ratelimit-redis"), ("flowlet", "open"), 0.6)
    st = [s for s in data.get("startup") or [] if s.get("endpoints") == 1000 and "error" not in s]
    if st:
        t = statistics.median(s["startup_s"] for s in st)
        rows.append({"label": "start-up, 1,000 endpoints (`flowlet serve` until it answers)", "value": t,
                     "goal": 2.0, "kind": "<", "met": t < 2.0, "unit": "s"})
        worker = statistics.median(s["memory"]["hwm_max_kb"] for s in st) / 1024
        rows.append({"label": "RSS after start, 1,000 endpoints (the worker process)", "value": worker,
                     "goal": 100.0, "kind": "<", "met": worker < 100.0, "unit": "MB"})
        mb = statistics.median(s["memory"]["rss_sum_kb"] for s in st) / 1024
        rows.append({"label": "RSS after start, 1,000 endpoints (all server processes, summed)", "value": mb,
                     "goal": 100.0, "kind": "<", "met": mb < 100.0, "unit": "MB"})
        if all("pss_sum_kb" in s["memory"] for s in st):
            pss = statistics.median(s["memory"]["pss_sum_kb"] for s in st) / 1024
            rows.append({"label": "PSS after start, 1,000 endpoints (all server processes, shared pages split)",
                         "value": pss, "goal": 100.0, "kind": "<", "met": pss < 100.0, "unit": "MB"})
    return [r for r in rows if r["value"] is not None]


def _f(x, fmt="{:.0f}"):
    return "n/a" if x is None else fmt.format(x)


def tables(data: dict) -> str:
    env = data["environment"]
    agg = aggregate(data["results"])
    labels = data["contenders"]
    titles = data["cases"]
    s = env["settings"]
    v = env["versions"]
    out = [BEGIN, "",
           "_Generated by `bench/run.py`; the text outside the bench markers is written by hand._", "",
           f"- command: `{env['command']}`",
           f"- date: {env['date']}; wall time {env.get('wall_s', '?')} s",
           f"- machine: {env['nproc']} CPUs ({env['cpu']}), {env['ram_gib']} GiB RAM, Linux {env['kernel']}; "
           f"load average before/after: {_la(env.get('loadavg_before'))} / {_la(env.get('loadavg_after'))}",
           f"- Python {env['python']}; flowlet {v['flowlet']}, granian {v['granian']} (loop: {env['granian_loop']}), "
           f"uvicorn {v['uvicorn']} (http: {env['uvicorn_http']}, loop: {env['uvicorn_loop']}), "
           f"starlette {v['starlette']}, fastapi {v['fastapi']}, PyJWT {v['pyjwt']}, joserfc {v['joserfc']}, "
           f"starlette-csrf {v['starlette-csrf']}, argon2-cffi {v['argon2-cffi']}, cryptography {v['cryptography']}",
           f"- load: {env['wrk']}, `-t{s['threads']} -c{s['connections']} -d{s['duration_s']}s --latency`, "
           f"{s['warmup_s']} s warm-up, {s['repeat']} repeat(s) per cell, each on a freshly started server "
           f"({s.get('workers', 1)} granian worker(s), `--loop auto`; Flowlet and the raw RSGI app on `--interface rsgi`, "
           f"the others on `asgi`; server on CPU {s.get('server_cpus', 'any')}, wrk on CPU {s.get('wrk_cpus', 'any')})",
           ""]

    rows = data["results"]
    cases_in_order = list(dict.fromkeys(r["case"] for r in rows))
    if rows:
        out += ["### Requests per second, latency, memory", "",
                "Medians over the repeats; req/s range in brackets. Peak RSS is VmHWM of the worker process "
                "(largest process) / summed over all server processes (granian's main process included).", "",
                "| case | contender | req/s | p50 ms | p99 ms | server CPU µs/req | peak RSS MB | notes |",
                "|---|---|---:|---:|---:|---:|---:|---|"]
        for case in cases_in_order:
            for (contender, c), a in agg.items():
                if c != case:
                    continue
                notes = []
                if a["errors"]:
                    notes.append(f"{len(a['errors'])} failed: {a['errors'][0][:120]}")
                if a.get("non_2xx"):
                    notes.append(f"{a['non_2xx']} non-2xx")
                if a.get("socket_errors"):
                    notes.append(f"{a['socket_errors']} socket errors/timeouts")
                if a.get("wrapped"):
                    notes.append("token list wrapped: some tokens repeated")
                if "rps" in a and not a["requests"]:
                    out.append(f"| {titles.get(case, case)} | {labels.get(contender, contender)} | 0 | | | | "
                               f"{a['hwm_max_mb']:.0f} / {a['hwm_sum_mb']:.0f} | "
                               f"{'; '.join(['no request answered within wrk timeout', *notes])} |")
                elif "rps" in a:
                    rng = f" ({a['rps_min']:.0f}–{a['rps_max']:.0f})" if a["ok"] > 1 else ""
                    out.append(f"| {titles.get(case, case)} | {labels.get(contender, contender)} | "
                               f"{a['rps']:.0f}{rng} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {a['cpu_us']:.0f} | "
                               f"{a['hwm_max_mb']:.0f} / {a['hwm_sum_mb']:.0f} | {'; '.join(notes)} |")
                else:
                    out.append(f"| {titles.get(case, case)} | {labels.get(contender, contender)} | failed | | | | | "
                               f"{'; '.join(notes)} |")
        out.append("")

    tg = targets(data, agg)
    if tg:
        out += ["### Targets", "",
                "Ratios of median req/s from this run. The column \"by CPU\" is the same ratio computed from "
                "the server's CPU time per request (user + system, all server processes), which a busy machine "
                "disturbs less; it is a cross-check, the goal is judged on req/s.", "",
                "| target | measured | by CPU | goal | met |", "|---|---:|---:|---:|---|"]
        for t in tg:
            val = f"{t['value']:.3f}{'x' if t['unit'] == 'x' else ' ' + t['unit']}"
            goal = "(observation)" if t["goal"] is None else \
                f"{'≥' if t['kind'] == '>=' else '<'} {t['goal']:g}{'x' if t['unit'] == 'x' else ' ' + t['unit']}"
            cpu = _f(t.get("by_cpu"), "{:.2f}x")
            cpu = "" if t["unit"] != "x" else cpu
            met = "" if t["met"] is None else "yes" if t["met"] else "**no**"
            out.append(f"| {t['label']} | {val} | {cpu} | {goal} | {met} |")
        out.append("")

    glue_cases = [c for c in cases_in_order if any((g, c) in agg for g in GLUE) and ("flowlet", c) in agg]
    if glue_cases:
        out += ["### Flowlet against the usual glue (same work, same server)", "",
                "| case | Flowlet req/s | Starlette req/s | Flowlet / Starlette | FastAPI req/s | Flowlet / FastAPI "
                "| Starlette+joserfc req/s | Flowlet / Starlette+joserfc |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in glue_cases:
            f = _rps(agg, "flowlet", c)
            cells = [titles.get(c, c), _f(f)]
            for g in GLUE:
                r = _rps(agg, g, c)
                cells += [_f(r), _f(_ratio(f, r), "{:.2f}x")]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")

    pairs = [("raw ASGI hello world", "raw", "uvicorn-raw"), ("Flowlet open GET (no access log)", "flowlet",
                                                               "uvicorn-flowlet")]
    if any((u, "open") in agg for _, _, u in pairs):
        out += ["### granian vs uvicorn", "",
                f"One worker each, same app, `open` case. uvicorn runs with {env['uvicorn_http']} and the "
                f"{env['uvicorn_loop']} loop; granian with the {env['granian_loop']} loop.", "",
                "| app | granian req/s | uvicorn req/s | granian / uvicorn | p99 ms granian / uvicorn | peak RSS MB granian / uvicorn (all processes) |",
                "|---|---:|---:|---:|---:|---:|"]
        for label, g, u in pairs:
            ga, ua = agg.get((g, "open"), {}), agg.get((u, "open"), {})
            out.append(f"| {label} | {_f(ga.get('rps'))} | {_f(ua.get('rps'))} | "
                       f"{_f(_ratio(ga.get('rps'), ua.get('rps')), '{:.2f}x')} | "
                       f"{_f(ga.get('p99_ms'), '{:.2f}')} / {_f(ua.get('p99_ms'), '{:.2f}')} | "
                       f"{_f(ga.get('hwm_sum_mb'))} / {_f(ua.get('hwm_sum_mb'))} |")
        out.append("")

    st = data.get("startup") or []
    if st:
        out += ["### Start-up of `flowlet serve`", "",
                "From process start until the workspace's last route answers 200 (includes the CLI's "
                "validation load, granian's start and the worker's own load). RSS right after: all "
                "server processes summed / the largest one.", "",
                "| endpoints | start-up s (median, range) | RSS after start MB (all / largest) | peak RSS MB (all) |",
                "|---:|---:|---:|---:|"]
        for n in sorted({s["endpoints"] for s in st}):
            ok = [s for s in st if s["endpoints"] == n and "error" not in s]
            if not ok:
                out.append(f"| {n} | failed: {[s.get('error') for s in st if s['endpoints'] == n][0]} | | |")
                continue
            ts = [s["startup_s"] for s in ok]
            rss = statistics.median(s["memory"]["rss_sum_kb"] for s in ok) / 1024
            big = statistics.median(s["memory"]["hwm_max_kb"] for s in ok) / 1024
            hwm = statistics.median(s["memory"]["hwm_sum_kb"] for s in ok) / 1024
            out.append(f"| {n} | {statistics.median(ts):.2f} ({min(ts):.2f}–{max(ts):.2f}) | "
                       f"{rss:.0f} / {big:.0f} | {hwm:.0f} |")
        out.append("")

    ip = data.get("inprocess_jwt")
    if ip:
        out += ["### Cost of a token, in process (no HTTP)", ""]
        if "error" in ip:
            out += [f"failed: `{ip['error'][:300]}`", ""]
        else:
            out += [f"`bench/jwt_first_seen.py`: microseconds per verification, median of {ip['rounds']} rounds "
                    f"of {ip['n']} tokens. Flowlet = `JwtPolicy.authenticate` (parse the header, hash the "
                    "token, cache lookup; on a miss strict parsing, the signature check, claims and scopes).", "",
                    "| algorithm | Flowlet repeated token | Flowlet first-seen token | PyJWT decode | joserfc decode + claims |",
                    "|---|---:|---:|---:|---:|"]
            for alg, row in ip["results"].items():
                out.append(f"| {alg} | {_f(row.get('flowlet_cached_us'), '{:.1f}')} | "
                           f"{_f(row.get('flowlet_first_us'), '{:.1f}')} | {_f(row.get('pyjwt_us'), '{:.1f}')} | "
                           f"{_f(row.get('joserfc_us'), '{:.1f}')} |")
            out.append("")
            if ip.get("argon2_verify_ms") is not None:
                out += [f"One argon2id verification (argon2-cffi defaults, what the usual Basic glue does on "
                        f"every request): {ip['argon2_verify_ms']:.0f} ms of CPU.", ""]
    out.append(END)
    return "\n".join(out)


def _la(la) -> str:
    return "?" if not la else " ".join(f"{x:.2f}" for x in la)


def chart(data: dict, path: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    agg = aggregate(data["results"])
    tg = [t for t in targets(data, agg) if t["unit"] == "x"]
    glue_rows = []
    for c, title in data["cases"].items():
        f = _rps(agg, "flowlet", c)
        vals = {g: _ratio(f, _rps(agg, g, c)) for g in ("starlette", "fastapi")}
        if any(v is not None for v in vals.values()):
            glue_rows.append((title, vals))
    panels = [p for p in (tg, glue_rows) if p]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 0.38 * sum(len(p) for p in panels) + 2.2 * len(panels)),
                             squeeze=False)
    ax_i = 0
    if tg:
        ax = axes[ax_i][0]
        ax_i += 1
        ys = range(len(tg))
        colors = ["#757575" if t["met"] is None else "#2e7d32" if t["met"] else "#c62828" for t in tg]
        ax.barh(list(ys), [t["value"] for t in tg], color=colors, height=0.6)
        for y, t in zip(ys, tg):
            if t["goal"] is not None:
                ax.plot([t["goal"], t["goal"]], [y - 0.4, y + 0.4], color="black", linewidth=2)
            ax.text(t["value"], y, f" {t['value']:.2f}x", va="center", fontsize=8)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([t["label"] for t in tg], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ratio of median req/s (black tick: goal; green: met, red: missed)")
        ax.set_title("Flowlet benchmark targets")
        ax.set_xlim(0, max(max(t["value"] for t in tg), max(t["goal"] or 0 for t in tg)) * 1.18)
    if glue_rows:
        ax = axes[ax_i][0]
        n = len(glue_rows)
        width = 0.38
        for k, (g, color) in enumerate((("starlette", "#1565c0"), ("fastapi", "#00897b"))):
            ys = [i + (k - 0.5) * width for i in range(n)]
            vals = [row[1].get(g) or 0 for row in glue_rows]
            ax.barh(ys, [min(v, 100) for v in vals], height=width, color=color, label=f"Flowlet / {g}")
            for y, v in zip(ys, vals):
                if v:
                    ax.text(min(v, 100), y, f" {v:.1f}x" if v <= 100 else f" {v:.0f}x (cut at 100x)",
                            va="center", fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(right=400)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_yticks(range(n))
        ax.set_yticklabels([row[0] for row in glue_rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("Flowlet req/s ÷ glue req/s (log scale; > 1: Flowlet faster)")
        ax.set_title("Flowlet against Starlette / FastAPI with the usual middleware")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(data: dict, out: Path, chart_path: Path | None) -> Path | None:
    made = chart(data, chart_path) if chart_path is not None else None
    block = tables(data)
    if made is not None:
        block = block.replace(END, f"![ratios]({made.name})\n\n{END}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        text = out.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            out.write_text(head + block + tail)
            return made
    out.write_text("# Benchmarks\n\n" + block + "\n")
    return made


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python bench/report.py RESULTS.json OUT.md   (rebuilds the tables and OUT.png)")
    out_md = Path(sys.argv[2])
    write(json.loads(Path(sys.argv[1]).read_text()), out_md, out_md.with_suffix(".png"))
