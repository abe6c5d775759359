"""Functions of the contracts workspace."""

from flowlet import Reject


def lookup(id: int):
    if id > 100:
        raise Reject(404, "no such item", {"id": id})
    return {"id": id, "name": f"item {id}", "price": id * 1.5}


def count(tree: dict) -> int:
    return 1 + sum(count(child) for child in tree.get("children", []))
