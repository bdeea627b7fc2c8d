"""Generate dicompack/data/deid_safe_private.json from PS3.15 Table E.3.10-1
(Safe Private Attributes, used by the Retain Safe Private Option).

    python tools/gen_safe_private.py SOURCE.tsv --edition "..."

SOURCE is the table transcribed as tab-separated text with the header
``private_creator group element vr vm meaning``: group as 4 hex digits,
element as the low byte of (gggg,xxEE), private creator exactly as the
standard writes it.  The source is not kept in this repository; the
generated file records the edition and where it came from.

Output: one row per attribute, keyed by (private creator, group, element
byte): the key under which the engine looks a private element up.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "dicompack" / "data" / "deid_safe_private.json"
COLUMNS = ["private_creator", "group", "element", "vr", "vm", "meaning"]


def convert(lines: list[str]) -> list[dict]:
    reader = csv.DictReader(lines, delimiter="\t")
    if reader.fieldnames != COLUMNS:
        raise ValueError(f"expected the columns {COLUMNS}, got {reader.fieldnames}")
    rows, seen = [], set()
    for n, row in enumerate(reader, 2):
        group, element = row["group"].upper(), row["element"].upper()
        if not re.fullmatch(r"[0-9A-F]{4}", group) or int(group, 16) % 2 == 0:
            raise ValueError(f"line {n}: {group!r} is not a private (odd) group")
        if not re.fullmatch(r"[0-9A-F]{2}", element):
            raise ValueError(f"line {n}: {element!r} is not an element byte")
        creator = row["private_creator"]
        if not creator or creator != creator.strip():
            raise ValueError(f"line {n}: private creator {creator!r} is empty or padded")
        key = (creator, group, element)
        if key in seen:
            raise ValueError(f"line {n}: {key} repeats")
        seen.add(key)
        rows.append({"creator": creator, "group": group, "element": element, "vr": row["vr"],
                     "vm": row["vm"], "meaning": row["meaning"]})
    return sorted(rows, key=lambda r: (r["creator"], r["group"], r["element"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("--edition", required=True, help="the standard's edition and where the copy came from")
    args = parser.parse_args()
    rows = convert(args.source.read_text("utf-8").splitlines())
    doc = {"source": args.edition, "table": "PS3.15 Table E.3.10-1 Safe Private Attributes",
           "generated_by": "tools/gen_safe_private.py", "rows": rows}
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
