"""Table E.1-1 as data (dicompack/data/deid_e1_1.json), the action that
applies to a tag under a set of options, and Table E.3.10-1 (safe private
attributes, dicompack/data/deid_safe_private.json)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

# Combined actions resolved to the least disruptive conformant choice
# (PS3.15 E.3.1): an element that is present keeps a harmless value.
COMBINED = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}


def _data(name: str) -> dict:
    return json.loads(resources.files("dicompack.data").joinpath(name).read_text("utf-8"))


@lru_cache(maxsize=1)
def safe_private() -> frozenset[tuple[str, int, int]]:
    """Table E.3.10-1 as (private creator, group, element byte) keys."""
    return frozenset((row["creator"], int(row["group"], 16), int(row["element"], 16))
                     for row in _data("deid_safe_private.json")["rows"])


@lru_cache(maxsize=1)
def table() -> dict:
    doc = _data("deid_e1_1.json")
    exact, wildcard, private = {}, [], None
    for row in doc["rows"]:
        if row["tag"] == "private":
            private = row
        elif "x" in row["tag"]:
            mask = int("".join("0" if c == "x" else "f" for c in row["tag"]), 16)
            value = int(row["tag"].replace("x", "0"), 16)
            wildcard.append((mask, value, row))
        else:
            exact[int(row["tag"], 16)] = row
    return {"source": doc["source"], "exact": exact, "wildcard": wildcard, "private": private,
            "rows": len(doc["rows"])}


def row_for(tag: int) -> dict | None:
    t = table()
    row = t["exact"].get(tag)
    if row is not None:
        return row
    if (tag >> 16) % 2 == 1:
        return t["private"]
    for mask, value, wrow in t["wildcard"]:
        if tag & mask == value:
            return wrow
    return None


def action_for(row: dict, columns: list[str]) -> str:
    """The action of ``row``: the last enabled option column that names one
    wins over the Basic Profile (options only ever retain or clean)."""
    action = row["basic"]
    for column in columns:
        if column in row:
            action = row[column]
    return COMBINED.get(action, action)
