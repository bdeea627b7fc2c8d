"""Generate dicompack/data/deid_e1_1.json from PS3.15 Table E.1-1.

    python tools/gen_deid_table.py SOURCE.json [--edition "..."]

SOURCE is a machine-readable copy of the standard's table, in either of two
public extractions of the standard's own text:
- innolitics/dicom-standard's standard/confidentiality_profile_attributes.json
  (a list of rows with "tag", "name", "basicProfile" and one key per option
  column; the edition is not recorded in it: give --edition);
- the "pymedphys-deid-table/1" file of pymedphys (rows with "tag", "name",
  "basic_profile" and "options"; its edition, source page digest and row
  digest are recorded into our file).
The source is not kept in this repository; the generated file records where
it came from.

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
# The same columns as pymedphys names them (the others are spelt as ours).
PYMEDPHYS_COLUMNS = {"retain_longitudinal_full_dates": "retain_dates_full",
                     "retain_longitudinal_modified_dates": "retain_dates_modified"}
ACTIONS = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/D", "X/Z", "X/Z/D", "X/Z/U*"}


def normalise(doc) -> tuple[list[tuple[str, str, str, dict]], str | None]:
    """(tag text, name, basic action, {our option column: action}) per row,
    and the edition the source records (None when it records none)."""
    if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("pymedphys-deid-table/"):
        rows = [(r["tag"], r["name"], r["basic_profile"],
                 {PYMEDPHYS_COLUMNS.get(k, k): v for k, v in r["options"].items()}) for r in doc["rows"]]
        page = doc["sources"][0]
        edition = (f"DICOM PS3.15 {doc['edition']} Table E.1-1, from {page['path']} (sha256 {page['sha256']}) "
                   f"as extracted by pymedphys ({doc['schema']}, rows sha256 {doc['content_sha256']})")
        return rows, edition
    return [(r["tag"], r["name"], r["basicProfile"],
             {ours: r[col] for col, ours in OPTION_COLUMNS.items() if r.get(col, "").strip()}) for r in doc], None


def convert(rows: list[tuple[str, str, str, dict]]) -> list[dict]:
    known = set(OPTION_COLUMNS.values())
    out = []
    for tag_text, name, basic, options in rows:
        if tag_text.upper().startswith("(GGGG,EEEE)"):
            tag = "private"          # the row for every private attribute (odd group)
        else:
            tag = tag_text.strip("()").replace(",", "").lower()
        if len(tag) != 8 and tag != "private":
            raise ValueError(f"unexpected tag {tag_text!r}")
        if set(options) - known:
            raise ValueError(f"unknown option columns {sorted(set(options) - known)} for {tag_text}")
        entry = {"tag": tag, "name": " ".join(name.split()), "basic": basic.strip()}
        entry.update({column: action.strip() for column, action in options.items() if action.strip()})
        for action in [v for k, v in entry.items() if k not in ("tag", "name")]:
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r} for {entry['tag']}")
        out.append(entry)
    return sorted(out, key=lambda e: e["tag"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("--edition", help="the edition and copy the source holds (required when it records none)")
    args = parser.parse_args()
    rows, recorded = normalise(json.loads(args.source.read_text("utf-8")))
    edition = args.edition or recorded
    if not edition:
        parser.error("this source records no edition: give --edition")
    doc = {"source": edition, "columns": ["basic", *OPTION_COLUMNS.values()],
           "generated_by": "tools/gen_deid_table.py", "rows": convert(rows)}
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
