"""File-set layout: group scanned instances into patients/studies/series
and assign PS3.10 File IDs; the File ID and File-set ID rules.

Layout is ``PAnnnnnn/STnnnnnn/SEnnnnnn/IMnnnnnn``, ordered by patient,
study date/time/UID, series number, instance number, so the same input
always gives the same File-set.
"""
from __future__ import annotations

import hashlib
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from dicompack.errors import UsageError
from dicompack.fileset.records import (
    INSTANCE_NUMBER,
    PATIENT_ID,
    PATIENT_NAME,
    SERIES_NUMBER,
    SERIES_UID,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_DATE,
    STUDY_ID,
    STUDY_TIME,
    STUDY_UID,
    Invented,
    Record,
    is_single_level,
    make_record,
    record_type_for,
)
from dicompack.scan import ScanResult

FILE_ID_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")
MAX_FILE_ID_LEVELS = 8


def valid_file_id(parts: tuple[str, ...] | list[str]) -> str | None:
    """None when ``parts`` is a valid PS3.10 File ID, else the reason."""
    if not parts:
        return "empty File ID"
    if len(parts) > MAX_FILE_ID_LEVELS:
        return f"{len(parts)} levels (at most {MAX_FILE_ID_LEVELS})"
    for part in parts:
        if not FILE_ID_COMPONENT.match(part):
            return f"component {part!r} is not 1-8 characters of A-Z 0-9 _"
    return None


_FILESET_ID = re.compile(r"^[A-Z0-9_ ]{0,16}$")


def validate_fileset_id(fileset_id: str) -> None:
    """PS3.3 F.5: File-set ID is CS, at most 16 characters."""
    if not _FILESET_ID.match(fileset_id):
        raise UsageError("File-set ID must be at most 16 characters of A-Z 0-9 _ and space",
                         where=fileset_id)


# ---------------------------------------------------------------- layout

# The grouped input: (Series Instance UID, its instances), and
# (Study Instance UID, its series), UIDs as read.
_Series = tuple[bytes, list[ScanResult]]
_Study = tuple[bytes, list[_Series]]


@dataclass
class Layout:
    """The record tree of a File-set: root records, the leaves that
    reference files, and what had to be invented or fixed to build it."""
    roots: list[Record]
    leaves: list[Record]
    invented: list[Invented] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)   # (where, what)
    # path -> what was changed in the values its records took from it
    value_fixes: dict[str, list[str]] = field(default_factory=dict)
    descriptor: Path | None = None      # File-set Descriptor file, stored as File ID README

    def fix_lines(self) -> list[tuple[str, str]]:
        """One (path, what) line per source file whose values had to be
        made valid for the records."""
        return [(path, "directory record values made valid: " + "; ".join(what))
                for path, what in self.value_fixes.items() if what]


def source_scan(leaf: Record) -> ScanResult:
    """The scan a record of a Layout was made from.  ``Record.source`` is
    typed ``object``: records sit a layer below the scan."""
    return cast(ScanResult, leaf.source)


def _number(raw: bytes | None) -> float:
    try:
        return float(raw.strip(b" \x00")) if raw and raw.strip(b" \x00") else float("inf")
    except ValueError:
        return float("inf")


def _raw(s: ScanResult, tag: int) -> bytes:
    return (s.values.get(tag) or b"").strip(b" \x00")


def plan_layout(scans: list[ScanResult], fixed_ids: dict[str, tuple[str, ...]] | None = None) -> Layout:
    """Group instances and build the record tree with File IDs.

    ``fixed_ids`` (path -> File ID) keeps the names of files already placed
    in a File-set (rebuilding a DICOMDIR); otherwise File IDs are assigned.
    """
    fixed_ids = fixed_ids or {}
    layout = Layout(roots=[], leaves=[])
    hierarchical = [s for s in scans if not is_single_level(record_type_for(s.sop_class))]
    single = [s for s in scans if is_single_level(record_type_for(s.sop_class))]
    patients = _group_patients(hierarchical, layout)
    for p_no, (_, studies) in enumerate(sorted(patients.items(), key=_patient_order), 1):
        layout.roots.append(_patient(studies, p_no, layout, fixed_ids))
    for n, scan in enumerate(sorted(single, key=lambda s: s.sop_instance), 1):
        layout.roots.append(_leaf(scan, fixed_ids.get(scan.path) or (f"OB{n:06d}",), n, layout))
    return layout


def _patient(studies: list[_Study], p_no: int, layout: Layout, fixed_ids: dict[str, tuple[str, ...]]) -> Record:
    """The PATIENT record of ``studies``, with their records below it."""
    first = studies[0][1][0][1][0]
    invent = {PATIENT_ID: "DP" + hashlib.sha256(_raw(first, PATIENT_NAME)).hexdigest()[:10].upper()}
    patient = make_record("PATIENT", first, invent=invent, notes=layout.invented, fixes=layout.value_fixes)
    for st_no, (_, series_list) in enumerate(sorted(studies, key=_study_order), 1):
        study = make_record("STUDY", series_list[0][1][0], invent={STUDY_ID: str(st_no)}, notes=layout.invented,
                            fixes=layout.value_fixes)
        patient.children.append(study)
        for se_no, (_, instances) in enumerate(sorted(series_list, key=_series_order), 1):
            prefix = (f"PA{p_no:06d}", f"ST{st_no:06d}", f"SE{se_no:06d}")
            study.children.append(_series(instances, se_no, prefix, layout, fixed_ids))
    return patient


def _series(instances: list[ScanResult], se_no: int, prefix: tuple[str, ...], layout: Layout,
            fixed_ids: dict[str, tuple[str, ...]]) -> Record:
    """The SERIES record of ``instances``, with their leaves named ``prefix``/IMnnnnnn."""
    series = make_record("SERIES", instances[0], notes=layout.invented, invent={SERIES_NUMBER: str(se_no)},
                         fixes=layout.value_fixes)
    instances.sort(key=lambda s: (_number(s.values.get(INSTANCE_NUMBER)), s.sop_instance))
    for im_no, scan in enumerate(instances, 1):
        file_id = fixed_ids.get(scan.path) or (*prefix, f"IM{im_no:06d}")
        series.children.append(_leaf(scan, file_id, im_no, layout))
    return series


def _leaf(scan: ScanResult, file_id: tuple[str, ...], number: int, layout: Layout) -> Record:
    rtype = record_type_for(scan.sop_class)
    leaf = make_record(rtype, scan, invent={INSTANCE_NUMBER: str(number)}, notes=layout.invented,
                       fixes=layout.value_fixes)
    # Interned: 100,000 leaves share a few distinct components and UIDs.
    leaf.file_id = tuple(sys.intern(part) for part in file_id)
    leaf.sop_class, leaf.sop_instance = sys.intern(scan.sop_class), scan.sop_instance
    leaf.transfer_syntax = sys.intern(scan.transfer_syntax)
    leaf.source = scan
    layout.leaves.append(leaf)
    return leaf


def _group_patients(scans: list[ScanResult], layout: Layout) -> dict[bytes, list[_Study]]:
    """patient key -> list of (study uid, list of (series uid, [instances]))."""
    study_patient: dict[bytes, bytes] = {}
    tree: dict[bytes, dict[bytes, dict[bytes, list[ScanResult]]]] = defaultdict(lambda: defaultdict(dict))
    for s in scans:
        study_uid, series_uid = _raw(s, STUDY_UID), _raw(s, SERIES_UID)
        pkey = study_patient.setdefault(study_uid, _raw(s, PATIENT_ID) + b"\x00" + _raw(s, PATIENT_NAME))
        if pkey != _raw(s, PATIENT_ID) + b"\x00" + _raw(s, PATIENT_NAME):
            layout.warnings.append((s.path, "study also appears under another patient ID/name; "
                                            "kept with the first patient"))
        tree[pkey][study_uid].setdefault(series_uid, []).append(s)
    return {p: [(st, list(series.items())) for st, series in studies.items()]
            for p, studies in tree.items()}


def _patient_order(item: tuple[bytes, list[_Study]]) -> bytes:
    pkey, _studies = item
    return pkey


def _study_order(item: _Study) -> tuple[bytes, bytes, bytes]:
    study_uid, series_list = item
    first = series_list[0][1][0]
    return (_raw(first, STUDY_DATE), _raw(first, STUDY_TIME), study_uid)


def _series_order(item: _Series) -> tuple[float, bytes]:
    series_uid, instances = item
    return (_number(instances[0].values.get(SERIES_NUMBER)), series_uid)


def release_key_values(layout: Layout) -> None:
    """Once records exist, scans need only their identity: drop the rest
    (a third of the memory of a 100,000-instance pack)."""
    keep = (SOP_CLASS_UID, SOP_INSTANCE_UID)
    for leaf in layout.leaves:
        scan = source_scan(leaf)
        scan.values = {tag: scan.values[tag] for tag in keep if tag in scan.values}
        scan.sequences = {}
