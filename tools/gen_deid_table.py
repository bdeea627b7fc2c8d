"""Generate dicompack/data/deid_e1_1.json from PS3.15 Table E.1-1.

    python tools/gen_deid_table.py SOURCE.json [--edition "..."]

SOURCE is a machine-readable copy of the standard's table: the JSON that
innolitics/dicom-standard extracts from the standard's DocBook
(standard/confidentiality_profile_attributes.json: one object per row with
"tag", "name", "basicProfile" and one key per option column).  The source is
not kept in this repository; the generated file records where it came from.

Output: one row per attribute, tag as 8 hex digits with 'x' wildcards (e.g.
"60xx3000"), the Basic Profile action and the action of each option column
that has one.  Code interprets the actions; it never lists attributes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "dicompack" / "data" / "deid_e1_1.json"
# Option columns of Table E.1-1, in the table's order, with our names.
OPTION_COLUMNS = {
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_dates_full",
    "rtnLongModifDatesOpt": "retain_dates_modified",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}
ACTIONS = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/D", "X/Z", "X/Z/D", "X/Z/U*"}


def convert(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        if row["tag"].upper().startswith("(GGGG,EEEE)"):
            tag = "private"          # the row for every private attribute (odd group)
        else:
            tag = row["tag"].strip("()").replace(",", "").lower()
        if len(tag) != 8 and tag != "private":
            raise ValueError(f"unexpected tag {row['tag']!r}")
        entry = {"tag": tag, "name": row["name"], "basic": row["basicProfile"].strip()}
        for column, ours in OPTION_COLUMNS.items():
            if row.get(column, "").strip():
                entry[ours] = row[column].strip()
        for action in [v for k, v in entry.items() if k not in ("tag", "name")]:
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r} for {row['tag']}")
        out.append(entry)
    return sorted(out, key=lambda e: e["tag"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("--edition", default="DICOM PS3.15 Table E.1-1, as extracted by innolitics/dicom-standard "
                                               "(commit d6ed9ccf372fd4105029734c93f54a6fd027db02)")
    args = parser.parse_args()
    rows = convert(json.loads(args.source.read_text("utf-8")))
    doc = {"source": args.edition, "columns": ["basic", *OPTION_COLUMNS.values()],
           "generated_by": "tools/gen_deid_table.py", "rows": rows}
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
