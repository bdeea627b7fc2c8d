"""File-set layout: group scanned instances into patients/studies/series,
assign PS3.10 File IDs, resolve duplicates, and write the files.

Layout is ``PAnnnnnn/STnnnnnn/SEnnnnnn/IMnnnnnn``, ordered by patient,
study date/time/UID, series number, instance number, so the same input
always gives the same File-set.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .dicomdir import encode_meta
from .errors import DuplicateInstanceError
from .records import (INSTANCE_NUMBER, MODALITY, PATIENT_ID, PATIENT_NAME,
                      SERIES_NUMBER, SERIES_UID, STUDY_DATE, STUDY_ID,
                      STUDY_TIME, STUDY_UID, Invented, Record, is_single_level,
                      make_record, record_type_for)
from .scan import ScanResult

FILE_ID_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")
MAX_FILE_ID_LEVELS = 8
_DATE_TIME_DEFAULTS = {STUDY_DATE: "19000101", STUDY_TIME: "000000"}


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


# ---------------------------------------------------------------- duplicates

@dataclass
class DuplicateOutcome:
    kept: list[ScanResult]
    collapsed: list[tuple[str, str]] = field(default_factory=list)   # (path, same as)
    conflicts: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)


def resolve_duplicates(scans: list[ScanResult], *, skip_invalid: bool) -> DuplicateOutcome:
    """PS3.10 forbids two files with one SOP Instance UID in a File-set.

    Byte-identical copies collapse into the first (sorted path order);
    differing ones are conflicts: an error, or left out with --skip-invalid.
    """
    by_uid: dict[str, list[ScanResult]] = defaultdict(list)
    for s in scans:
        by_uid[s.sop_instance].append(s)
    out = DuplicateOutcome(kept=[])
    for s in scans:
        group = by_uid[s.sop_instance]
        if group[0] is s:
            out.kept.append(s)
            continue
        first = group[0]
        if sha256_file(s.path) == sha256_file(first.path):
            out.collapsed.append((s.path, first.path))
        else:
            out.conflicts.append((s.path, f"same SOP Instance UID {s.sop_instance} as "
                                          f"{first.path} but different content"))
    if out.conflicts and not skip_invalid:
        raise DuplicateInstanceError(
            f"{len(out.conflicts)} conflicting duplicate instance(s)",
            where=out.conflicts[0][0], problems=out.conflicts)
    return out


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- layout

@dataclass
class Layout:
    roots: list[Record]
    leaves: list[Record]
    invented: list[Invented] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)   # (where, what)
    descriptor: Path | None = None      # File-set Descriptor file, stored as File ID README


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
    for p_no, (pkey, studies) in enumerate(sorted(patients.items(), key=_patient_order), 1):
        first = studies[0][1][0][1][0]
        invent = {PATIENT_ID: "DP" + hashlib.sha256(_raw(first, PATIENT_NAME)).hexdigest()[:10].upper()}
        patient = make_record("PATIENT", first, invent=invent, notes=layout.invented)
        layout.roots.append(patient)
        for st_no, (_, series_list) in enumerate(sorted(studies, key=_study_order), 1):
            s0 = series_list[0][1][0]
            invent = {STUDY_ID: str(st_no), **_DATE_TIME_DEFAULTS}
            study = make_record("STUDY", s0, invent=invent, notes=layout.invented)
            patient.children.append(study)
            for se_no, (_, instances) in enumerate(sorted(series_list, key=_series_order), 1):
                series = make_record("SERIES", instances[0], notes=layout.invented,
                                     invent={SERIES_NUMBER: str(se_no), MODALITY: "OT"})
                study.children.append(series)
                instances.sort(key=lambda s: (_number(s.values.get(INSTANCE_NUMBER)), s.sop_instance))
                for im_no, scan in enumerate(instances, 1):
                    file_id = fixed_ids.get(scan.path) or (
                        f"PA{p_no:06d}", f"ST{st_no:06d}", f"SE{se_no:06d}", f"IM{im_no:06d}")
                    leaf = _leaf(scan, file_id, im_no, layout)
                    series.children.append(leaf)
    for n, scan in enumerate(sorted(single, key=lambda s: s.sop_instance), 1):
        layout.roots.append(_leaf(scan, fixed_ids.get(scan.path) or (f"OB{n:06d}",), n, layout))
    return layout


def _leaf(scan: ScanResult, file_id: tuple[str, ...], number: int, layout: Layout) -> Record:
    rtype = record_type_for(scan.sop_class)
    invent = {INSTANCE_NUMBER: str(number), 0x00080023: "19000101", 0x00080033: "000000"}
    leaf = make_record(rtype, scan, invent=invent, notes=layout.invented)
    # Interned: 100,000 leaves share a few distinct components and UIDs.
    leaf.file_id = tuple(sys.intern(part) for part in file_id)
    leaf.sop_class, leaf.sop_instance = sys.intern(scan.sop_class), scan.sop_instance
    leaf.transfer_syntax = sys.intern(scan.transfer_syntax)
    leaf.source = scan
    layout.leaves.append(leaf)
    return leaf


def _group_patients(scans: list[ScanResult], layout: Layout):
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


def _patient_order(item):
    pkey, studies = item
    return pkey


def _study_order(item):
    study_uid, series_list = item
    first = series_list[0][1][0]
    return (_raw(first, STUDY_DATE), _raw(first, STUDY_TIME), study_uid)


def _series_order(item):
    series_uid, instances = item
    return (_number(instances[0].values.get(SERIES_NUMBER)), series_uid)


# ---------------------------------------------------------------- writing

def release_key_values(layout: Layout) -> None:
    """Once records exist, scans need only their identity: drop the rest
    (a third of the memory of a 100,000-instance pack)."""
    keep = (0x00080016, 0x00080018)
    for leaf in layout.leaves:
        scan = leaf.source
        scan.values = {tag: scan.values[tag] for tag in keep if tag in scan.values}
        scan.sequences = {}


def copy_instance(scan: ScanResult, dest: Path) -> int:
    """Copy one input file to ``dest``: unchanged, or with the File Meta and
    preamble the standard demands.  Returns bytes written."""
    if not scan.needs_rewrite:
        if scan.owned and _moved(scan.path, dest):
            return scan.size
        shutil.copyfile(scan.path, dest)
        return scan.size
    meta = encode_meta(scan.sop_class, scan.sop_instance, scan.transfer_syntax)
    with open(scan.path, "rb") as src, open(dest, "wb") as out:
        out.write(meta)
        src.seek(scan.dataset_offset)
        shutil.copyfileobj(src, out, 1 << 20)
        return out.tell()


def _moved(path: str, dest: Path) -> bool:
    """Rename a file this run staged into place (creating and writing a file
    costs far more than a rename); False across file systems."""
    try:
        os.replace(path, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        return False
    return True


def leaf_path(root: Path, leaf: Record) -> Path:
    return root.joinpath(*leaf.file_id)


# ---------------------------------------------------------------- volumes

# Per-instance bytes besides the file: DICOMDIR record, ZIP headers, manifest line.
VOLUME_OVERHEAD_PER_FILE = 1024


@dataclass
class VolumePlan:
    volumes: list[list[ScanResult]]
    notes: list[str] = field(default_factory=list)


def split_volumes(layout: Layout, limit: int) -> VolumePlan:
    """Cut the File-set into volumes of at most ``limit`` bytes (estimated
    uncompressed).  Patients, then studies, then series stay whole where they
    fit; only a series larger than a volume is split by instance (noted)."""
    plan = VolumePlan(volumes=[[]])
    used = [0]

    def size(rec: Record) -> int:
        return sum(leaf.source.size + VOLUME_OVERHEAD_PER_FILE for leaf in rec.walk() if leaf.file_id)

    def leaves(rec: Record) -> list[ScanResult]:
        return [leaf.source for leaf in rec.walk() if leaf.file_id]

    def put(rec: Record) -> None:
        n = size(rec)
        fits_fresh = n <= limit or not rec.children
        if used[0] + n > limit and plan.volumes[-1] and fits_fresh:
            plan.volumes.append([])
            used[0] = 0
        if used[0] + n <= limit or not rec.children:
            if n > limit:
                plan.notes.append(f"{rec.source.path}: instance alone exceeds the volume size")
            plan.volumes[-1].extend(leaves(rec))
            used[0] += n
            return
        if rec.type == "SERIES":
            plan.notes.append(f"series {'/'.join(rec.children[0].file_id[:3])} exceeds the volume size: "
                              "split by instance")
        for child in rec.children:
            put(child)

    for root in layout.roots:
        put(root)
    return plan


def volume_name(dest: Path, index: int, count: int) -> Path:
    """NAME-1of3.zip, NAME-1of3.p7m, NAME-1of3 (folder)."""
    if count == 1:
        return dest
    suffix = dest.suffix if dest.suffix.lower() in (".zip", ".p7m") else ""
    stem = dest.name[:-len(suffix)] if suffix else dest.name
    return dest.with_name(f"{stem}-{index}of{count}{suffix}")
