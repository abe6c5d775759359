"""``flowlet serve --dev``: every real answer checked against its endpoint's ``output`` schemas.

A mismatch is logged (with the request id) and the answer goes out unchanged. Without
``--dev`` this module is not even imported: production pays nothing.
"""

from __future__ import annotations

import json
import logging

from flowlet.contracts.contract import OutputContract

log = logging.getLogger("flowlet.contracts")


def check_answer(where: str, output: OutputContract, status: int, headers: list[tuple[bytes, bytes]],
                 body: bytes, rid: str) -> list[dict[str, str]]:
    """Problems of one answer (also logged); ``where`` names the endpoint (METHOD PATH FILE)."""
    if status not in output.schemas:
        if status < 400:
            log.warning("answer of %s: status %s is not declared in output (declared: %s)", where, status,
                        ", ".join(map(str, sorted(output.schemas))), extra={"request_id": rid})
            return [{"at": "", "problem": f"status {status} is not declared"}]
        return []
    ctype = next((v for k, v in headers if k == b"content-type"), b"")
    try:
        value = json.loads(body) if b"json" in ctype and body else None
    except ValueError:
        value = None
    if value is None and (b"json" not in ctype or body):
        problems = [{"at": "", "problem": "is not a JSON body"}]
    else:
        problems = output.problems(status, value)
    if problems:
        log.warning("answer of %s does not match output.%s: %s", where, status,
                    "; ".join(f"{p['at'] or '/'} {p['problem']}" for p in problems), extra={"request_id": rid})
    return problems
