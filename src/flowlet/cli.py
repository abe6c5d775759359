"""The `flowlet` command: parses arguments and calls the layers below."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flowlet.errors import ConfigErrors


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["serve"]:
        _exit_0_on_sigterm()     # before the slower imports below: start-up is short of one
    parser = argparse.ArgumentParser(prog="flowlet", description="HTTP endpoint flows with security settings.")
    parser.add_argument("--version", action="version", version=f"flowlet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="scaffold a workspace with commented example flows")
    p.add_argument("dir", help="the folder to create (must not exist, or be empty)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="serve a workspace")
    p.add_argument("dir", nargs="?", default=".", help="the workspace folder (default: the current folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes (default: 1); they share the port and the secrets store")
    p.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain: serve HTTPS (with --tls-key)")
    p.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    p.add_argument("--tls-self-signed", action="store_true",
                   help="serve HTTPS with a development certificate kept in the workspace's .flowlet/tls/")
    p.add_argument("--no-access-log", action="store_true", help="do not write a log line per request")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="the least severe log lines to write (default: info)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                   help="on SIGTERM or reload, let in-flight requests finish for up to S seconds, "
                        "then cut them (default: 30)")
    p.add_argument("--watch", action="store_true",
                   help="development: reload the workspace when its files change (as SIGHUP does)")
    p.add_argument("--log-format", default="json", choices=("json", "text"),
                   help="one JSON object per log line (default), or readable lines for a terminal")
    p.add_argument("--admin-port", type=int, metavar="P",
                   help="serve /healthz, /readyz and /metrics on this port (or `admin:` in flowlet.yaml)")
    p.add_argument("--admin-host", metavar="H", help="the admin listener's address (default 127.0.0.1)")
    p.add_argument("--tracing", action="store_true",
                   help="OpenTelemetry spans per request (needs the flowlet[otel] extra)")
    p.add_argument("--forwarded-allow-ips", metavar="LIST", default=None,
                   help="comma-separated addresses and CIDRs of reverse proxies whose Forwarded and "
                        "X-Forwarded-* headers are believed (joined with proxy.trusted in flowlet.yaml)")
    p.add_argument("--dev", action="store_true",
                   help="development: check every answer against its endpoint's output schemas and log mismatches")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="load the workspace and report problems as FILE:LINE")
    p.add_argument("dir", nargs="?", help="the workspace folder (default: the current folder)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("openapi", help="print the workspace's OpenAPI 3.1 document")
    p.add_argument("dir", nargs="?", default=".", help="the workspace folder (default: the current folder)")
    p.add_argument("--yaml", action="store_true", help="print YAML instead of JSON")
    p.set_defaults(func=cmd_openapi)

    p = sub.add_parser("routes", help="list every endpoint with its security settings")
    p.add_argument("dir", nargs="?", default=".", help="the workspace folder (default: the current folder)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_routes)

    from flowlet import cli_secrets
    cli_secrets.add_commands(sub)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("flowlet")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _load(root: Path, display_root: str | None = None, **kw):
    from flowlet.workspace.loader import load_workspace
    return load_workspace(root, display_root=display_root, **kw)


def _print_errors(exc: ConfigErrors) -> None:
    for err in exc.errors:
        print(str(err), file=sys.stderr)


def cmd_check(args) -> int:
    root = Path(args.dir or ".")
    display = None if args.dir in (None, ".") else args.dir
    try:
        ws = _load(root, display)
    except ConfigErrors as exc:
        _print_errors(exc)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    for w in ws.warnings:
        print(str(w), file=sys.stderr)
    print(f"ok: {len(ws.routes)} endpoint(s) on {len(ws.paths)} path(s), {len(ws.warnings)} warning(s)")
    ws.close()
    return 0


def cmd_serve(args) -> int:
    _exit_0_on_sigterm()
    from flowlet.server.serve import serve

    root = Path(args.dir)
    if not 0 <= args.drain_timeout <= 86400:
        print("error: --drain-timeout must be from 0 to 86400 seconds", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"error: --port must be from 1 to 65535, got {args.port}", file=sys.stderr)
        return 2
    if args.tls_cert:
        problem = _check_tls_files(args.tls_cert, args.tls_key)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
    if not _edge_environment(args):
        return 2
    code = _in_child(lambda: _prepare(root))   # errors end here, exit 1, before any worker starts
    if code:
        return code
    import flowlet
    if flowlet._sigterm_seen:                  # SIGTERM came right after the fork: its exit was lost
        return 0
    cert, key = args.tls_cert, args.tls_key
    if args.tls_self_signed:
        from flowlet.server.tls import ensure_self_signed
        cert, key = (str(p) for p in ensure_self_signed(root, [args.host]))
    problem = _check_bind(args.host, args.port)
    if problem:
        print(f"error: cannot listen on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 1
    admin = _admin_listener(root, args)
    if isinstance(admin, int):
        return admin
    if args.tracing:
        os.environ["FLOWLET_TRACING"] = "1"        # read by each worker (server.tracing)
    try:
        return serve(root, host=args.host, port=args.port, workers=args.workers, tls_cert=cert, tls_key=key,
                     access_log=not args.no_access_log, log_level=args.log_level, log_format=args.log_format,
                     drain_timeout=args.drain_timeout, watch=args.watch, dev=args.dev,
                     services=(admin,) if admin else ())
    except (OSError, RuntimeError, OverflowError) as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1


def _exit_0_on_sigterm() -> None:
    """SIGTERM during start-up ends `serve` with 0 too; its supervisor takes signals over later
    (and stops at once if one came whose exit was lost: see ``flowlet._sigterm_seen``)."""
    import signal

    import flowlet
    signal.signal(signal.SIGTERM, flowlet._exit_0)


def _admin_listener(root: Path, args):
    """The admin listener bound to --admin-port or flowlet.yaml's `admin:`, None when neither
    asks for one, or an exit code when its address cannot be used."""
    from flowlet.server.admin import AdminListener
    from flowlet.workspace.settings import load_settings

    loaded = load_settings(root)                    # the workspace loaded once already: no error here
    settings = loaded.admin
    port = args.admin_port if args.admin_port is not None else settings.port if settings else None
    if port is None:
        return None
    host = args.admin_host or (settings.host if settings else "127.0.0.1")
    if not 0 <= port < 65536:
        print(f"error: --admin-port must be from 0 to 65535, got {port}", file=sys.stderr)
        return 2
    admin = AdminListener(host, port)
    limits = loaded.rate_limits
    if limits is not None and limits.store is not None:
        admin.add_check("redis", lambda: _redis_check(limits))
    try:
        admin.bind()
    except OSError as exc:
        admin.stop()
        print(f"error: cannot listen on {host}:{port} (admin): {exc.strerror or exc}", file=sys.stderr)
        return 1
    from flowlet.server.admin_console import mount_console
    mount_console(admin, root)                      # /console/ when flowlet.yaml turns it on
    return admin


def _redis_check(limits) -> tuple[str, dict]:
    """Rate-limit counters in Redis: one PING. Down is degraded: the workers count locally."""
    import asyncio

    from flowlet.edge.ratelimit import probe
    state = asyncio.run(probe(limits)).get("redis", "down")
    return ("ok" if state == "ok" else "degraded"), {"redis": state}


def _edge_environment(args) -> bool:
    """Workers read the trusted proxies and the shared rate-limit counters from the environment."""
    from flowlet.edge.counters import ENV_TABLE, create_shared_table
    from flowlet.edge.proxy import ENV_ALLOW_IPS, parse_allow_ips
    if args.forwarded_allow_ips is not None:
        try:
            os.environ[ENV_ALLOW_IPS] = ",".join(parse_allow_ips(args.forwarded_allow_ips))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return False
    os.environ[ENV_TABLE] = create_shared_table()
    return True


def _prepare(root: Path) -> int:
    """Create declared development secrets, then load the workspace once to validate it."""
    from flowlet.workspace.devsecrets import ensure_dev_secrets
    try:
        ensure_dev_secrets(root)
        _load(root, serving=True).close()
    except ConfigErrors as exc:
        _print_errors(exc)
        return 1
    return 0


def _in_child(job) -> int:
    """Run ``job`` in a forked child: the supervisor process that stays behind then never holds
    the workspace's imports, only the workers do."""
    if not hasattr(os, "fork"):
        return job()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = job()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:            # SIGTERM while the child works: it goes too
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status) if status else 0


def _check_bind(host: str, port: int) -> str | None:
    """Bind once ourselves, so a taken port is one clear line rather than the server's backtrace."""
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return str(exc)
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _check_tls_files(cert: str, key: str) -> str | None:
    """A clear message for a certificate/key pair the TLS layer would refuse, before serving."""
    import ssl
    for path in (cert, key):
        if not Path(path).is_file():
            return f"TLS file not found: {path}"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}"
    return None


def cmd_routes(args) -> int:
    from flowlet.workspace.describe import describe_routes, format_routes
    data = _from_workspace(args, describe_routes)
    if data is None:
        return 1
    print(json.dumps(data, indent=2) if args.json else format_routes(data))
    return 0


def cmd_openapi(args) -> int:
    from flowlet.workspace.apidoc import openapi_document
    doc = _from_workspace(args, openapi_document)
    if doc is None:
        return 1
    if args.yaml:
        import yaml
        print(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), end="")
    else:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


def _from_workspace(args, build):
    """Load DIR, compute one description of it, close it; None (errors printed) when it fails to load."""
    try:
        ws = _load(Path(args.dir))
    except ConfigErrors as exc:
        _print_errors(exc)
        return None
    try:
        return build(ws)
    finally:
        ws.close()


def cmd_init(args) -> int:
    from flowlet.workspace.scaffold import init_workspace
    try:
        created = init_workspace(Path(args.dir))
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created workspace {args.dir} ({len(created)} files); next: flowlet serve {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
