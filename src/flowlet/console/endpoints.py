"""The endpoints page, and the start-block form of one endpoint: show, try an origin, save."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

from flowlet.console import flowfile
from flowlet.console.app import preflight_answer, problems_by_field
from flowlet.console.checks import Inspection
from flowlet.console.sessions import Session
from flowlet.console.web import PREFIX, ConsoleRequest, ConsoleResponse, query, redirect

if TYPE_CHECKING:
    from flowlet.console.app import Console

log = logging.getLogger("flowlet.console")


def index(console: Console, req: ConsoleRequest, session: Session) -> ConsoleResponse:
    insp = console.inspect()
    rows = []
    for p in (insp.routes or {}).get("paths", []):
        for e in p["endpoints"]:
            rows.append({**e, "rel": e["file"].rsplit(":", 1)[0], "path_cors": p["cors"]})
    flows = sorted(p.relative_to(console.root).as_posix() for p in (console.root / "flows").rglob("*.y*ml")) \
        if (console.root / "flows").is_dir() else []
    return console.page(200, "endpoints.html", session, rows=rows, insp=insp, flows=flows,
                        builtin=(insp.routes or {}).get("builtin", []),
                        recent=console.audit.recent(8), api_prefix=console.settings.api_prefix)


def _endpoint_of(insp: Inspection, rel: str) -> tuple[dict | None, dict | None]:
    for p in (insp.routes or {}).get("paths", []):
        for e in p["endpoints"]:
            if e["file"].rsplit(":", 1)[0] == rel:
                return p, e
    return None, None


def _secret_names(console: Console) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {"basic": [], "jwt": []}
    for s in console.store.list():
        if s.get("type") in names:
            names[s["type"]].append(s["name"])
    return names


def _render(console: Console, req: ConsoleRequest, session: Session, rel: str, form: flowfile.StartBlock,
            version: str, status: int = 200, **extra: object) -> ConsoleResponse:
    insp = console.inspect()
    path_info, endpoint = _endpoint_of(insp, rel)
    q = query(req)
    tried = None
    if path_info is not None and "origin" in q and q["origin"].strip():
        method = (q.get("try_method") or form.extra.get("method") or "GET").upper()
        status_, headers, body = preflight_answer(path_info["cors"], q["origin"].strip(), method,
                                                  q.get("try_headers", ""))
        tried = {"origin": q["origin"].strip(), "method": method, "headers": q.get("try_headers", ""),
                 "status": status_, "answer": headers, "body": body}
    widened = [w for w in insp.warnings if w.file == rel]
    context = dict(rel=rel, form=form, version=version, secrets=_secret_names(console), insp=insp,
                   path_info=path_info, endpoint=endpoint, widened=widened, tried=tried,
                   try_form={"origin": q.get("origin", ""), "method": q.get("try_method", ""),
                             "headers": q.get("try_headers", "")},
                   history=console.audit.recent(5, file=rel), api_prefix=console.settings.api_prefix,
                   field_errors={}, general_errors=[], notice="", conflict=None)
    context.update(extra)
    return console.page(status, "endpoint.html", session, **context)


def edit(console: Console, req: ConsoleRequest, session: Session) -> ConsoleResponse:
    q = query(req)
    rel = q.get("file", "")
    path = console.flow_path(rel)
    if path is None:
        return console.message(404, "Not found", "There is no such flow file.", session=session)
    try:
        data, doc = flowfile.load(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return console.message(422, "This flow cannot be edited here",
                               f"{rel} could not be read as a flow with an endpoint block ({exc}). "
                               "Fix it in the file; `flowlet check` names the problem.", session=session)
    notice, session.flash = session.flash, ""
    return _render(console, req, session, rel, flowfile.read_form(doc), flowfile.version_of(data),
                   notice=notice)


def save(console: Console, req: ConsoleRequest, session: Session, fields: dict[str, str]) -> ConsoleResponse:
    rel = query(req).get("file", "")
    path = console.flow_path(rel)
    if path is None:
        return console.message(404, "Not found", "There is no such flow file.", session=session)
    with console.write_lock:
        try:
            data, doc = flowfile.load(path)
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            return console.message(422, "This flow cannot be edited here", f"{rel}: {exc}", session=session)
        current = flowfile.version_of(data)
        if fields.get("version") != current:
            return _conflict(console, req, session, rel, doc, current)
        try:
            form = flowfile.parse_form(fields)
        except flowfile.FormError as exc:
            return _refused(console, req, session, rel, fields, current,
                            {k: [v] for k, v in exc.problems.items()}, [])
        after = copy.deepcopy(doc)
        flowfile.apply_form(after, form)
        text = flowfile.dump(after)
        checked = console.checks.check_edit(rel, text)
        if not checked.ok:
            by_field, general = problems_by_field(checked.errors, rel, text)
            return _refused(console, req, session, rel, fields, current, by_field, general)
        changed = flowfile.changes(doc, after)
        if not changed:
            session.flash = "Nothing changed: the file already says this."
            return redirect(f"{PREFIX}/endpoint?file={_q(rel)}")
        flowfile.write_atomic(path, text)
        new_version = flowfile.version_of(text.encode("utf-8"))
        console.audit.write(session.user, action="save-endpoint", file=rel,
                            endpoint=f"{form.extra.get('method') or doc['endpoint'].get('method')} "
                                     f"{doc['endpoint'].get('path')}",
                            version_before=current, version_after=new_version, changes=changed)
    log.info("console: %r saved %s (%d change(s))", session.user, rel, len(changed))
    session.flash = _reload(console)
    return redirect(f"{PREFIX}/endpoint?file={_q(rel)}")


def _q(text: str) -> str:
    from urllib.parse import quote_plus
    return quote_plus(text)


def _reload(console: Console) -> str:
    if console.reload is None:
        return "Saved. No server to reload is attached: `flowlet serve` picks it up when it next starts."
    try:
        served, message = console.reload()
    except Exception:
        log.exception("console: reload hook failed")
        return "Saved, but the server could not be asked to reload; see its log."
    return f"Saved. {message}" if served else f"Saved, but the server did not reload: {message}"


def _refused(console: Console, req: ConsoleRequest, session: Session, rel: str, fields: dict[str, str],
             version: str, by_field: dict[str, list[str]], general: list[str]) -> ConsoleResponse:
    """The form again, with what was typed and each error at its field; nothing was written."""
    shown = flowfile.StartBlock(
        auth=fields.get("auth", "open"), basic_secret=fields.get("basic_secret", ""),
        jwt_secret=fields.get("jwt_secret", ""), scope_kind=fields.get("scope_kind", "none"),
        scope_json=fields.get("scope_json", ""), scope_expr=fields.get("scope_expr", ""),
        cors_allow=fields.get("cors_allow", "none"), cors_domains=fields.get("cors_domains", ""),
        cors_headers=fields.get("cors_headers", ""), cors_credentials=fields.get("cors_credentials") == "on",
        cors_max_age=fields.get("cors_max_age", ""), csrf=fields.get("csrf") == "on")
    path = console.flow_path(rel)
    if path is not None:
        try:
            shown.extra = flowfile.read_form(flowfile.load(path)[1]).extra
        except (ValueError, OSError):
            pass
    return _render(console, req, session, rel, shown, version, status=422, field_errors=by_field,
                   general_errors=general)


def _conflict(console: Console, req: ConsoleRequest, session: Session, rel: str, doc: object,
              current: str) -> ConsoleResponse:
    last = console.audit.recent(1, file=rel)
    who = f"{last[0]['user']} saved it at {last[0]['at']}" if last else "it was changed on disk"
    conflict = (f"This file changed after you opened it ({who}). Your changes were not saved, so "
                "nothing was overwritten. The form now shows the current version: make your change "
                "again and save.")
    return _render(console, req, session, rel, flowfile.read_form(doc), current, status=409, conflict=conflict)
