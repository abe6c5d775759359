"""Functions the demo's flows call (the workspace folder is on sys.path)."""


def add(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        raise TypeError("a and b must be numbers")
    return a + b


async def order(id: int, changes: dict | None = None):
    """An async step: the stored order, with the changes applied."""
    order = {"id": id, "item": "coffee beans", "quantity": 1}
    if changes:
        order.update({k: v for k, v in changes.items() if k in ("item", "quantity")})
    return order
