"""Functions the demo's flows call (the workspace folder is on sys.path)."""

import math

from flowlet import Reject


def add(a, b):
    total = a + b                     # the input contract made both numbers
    if not math.isfinite(total):
        # A 4xx the function chooses: {"error": "...", "details": {...}}
        raise Reject(422, "the sum is too large", {"max": 1.7976931348623157e308})
    return total


async def order(id: int, changes: dict | None = None):
    """An async step: the stored order, with the changes applied."""
    order = {"id": id, "item": "coffee beans", "quantity": 1}
    if changes:
        order.update({k: v for k, v in changes.items() if k in ("item", "quantity")})
    return order
