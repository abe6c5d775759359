"""``flowlet.Reject``: how a function step answers 4xx on purpose.

    from flowlet import Reject
    def transfer(amount, balance):
        if amount > balance:
            raise Reject(409, "insufficient funds", {"balance": balance})

The answer is ``status`` with ``{"error": message}`` (plus ``"details"`` when given), with the
path's CORS headers like any other error. Only 400-499: a server error is not a choice a flow
makes, and anything else a step raises stays a 500 that shows nothing.
"""

from __future__ import annotations

import json
from typing import Any

from flowlet.errors import HTTPError


class Reject(HTTPError):
    def __init__(self, status: int, message: str, details: Any = None):
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 499:
            raise ValueError(f"Reject status must be an integer from 400 to 499, got {status!r}")
        if not isinstance(message, str):
            raise TypeError("Reject message must be a string")
        super().__init__(status, message)
        self.details = details
        payload: dict[str, Any] = {"error": message}
        if details is not None:
            payload["details"] = details
        # Encoded here, in the step: details that are not JSON fail where they were made.
        self.body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def __reduce__(self):
        # Steps may run in another process: the exception crosses as its arguments.
        return (Reject, (self.status, self.message, self.details))
