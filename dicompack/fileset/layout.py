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
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dicompack.errors import DuplicateInstanceError, UsageError
from dicompack.fileset.dicomdir import encode_meta
from dicompack.fileset.records import (
    INSTANCE_NUMBER,
    PATIENT_ID,
    PATIENT_NAME,
    SERIES_NUMBER,
    SERIES_UID,
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
from dicompack.scan import ScanResult, in_lossy_syntax, is_lossy

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


# ---------------------------------------------------------------- duplicates

@dataclass
class DuplicateOutcome:
    kept: list[ScanResult]
    collapsed: list[tuple[str, str]] = field(default_factory=list)   # (path, same as)
    conflicts: list[tuple[str, str]] = field(default_factory=list)   # (path left out, why; names the kept file)


def resolve_duplicates(scans: list[ScanResult], *, skip_invalid: bool) -> DuplicateOutcome:
    """PS3.10 forbids two files with one SOP Instance UID in a File-set.

    Of each group sharing a UID the best copy is kept (``_quality``: never by
    path, so renaming files cannot change the choice): byte-identical copies
    collapse into it, differing ones are conflicts, each naming the kept file
    and why it won.  Conflicts are an error (listing every one), or left out
    with --skip-invalid.
    """
    by_uid: dict[str, list[ScanResult]] = defaultdict(list)
    for s in scans:
        by_uid[s.sop_instance].append(s)
    winners: set[int] = set()
    out = DuplicateOutcome(kept=[])
    for group in by_uid.values():
        if len(group) == 1:
            winners.add(id(group[0]))
            continue
        digests = {id(s): sha256_file(s.path) for s in group}
        # max() keeps the first of equal keys: identical copies keep the first path.
        best = max(group, key=lambda s: (_quality(s), digests[id(s)]))
        winners.add(id(best))
        for s in group:
            if s is best:
                continue
            if digests[id(s)] == digests[id(best)]:
                out.collapsed.append((s.path, best.path))
            else:
                out.conflicts.append((s.path, f"same SOP Instance UID as {best.path} "
                                              f"(kept: {_why_kept(best, s)})"))
    out.kept = [s for s in scans if id(s) in winners]
    if out.conflicts and not skip_invalid:
        raise DuplicateInstanceError(
            f"{len(out.conflicts)} conflicting duplicate instance(s)",
            where=out.conflicts[0][0], problems=out.conflicts)
    return out


def _quality(s: ScanResult) -> tuple:
    """Higher is better: pixels at all (a copy without them is not a lossless
    copy of the image), lossless pixels over lossy ones, then -- of copies
    equally lossy -- one not stored in a lossy syntax (a decompressed copy
    every reader can open), then completeness: elements, then bytes."""
    return (s.has_pixels, not is_lossy(s), not in_lossy_syntax(s), s.element_count,
            s.size - s.dataset_offset)


def _why_kept(best: ScanResult, other: ScanResult) -> str:
    """The first quality criterion on which ``best`` beat ``other``."""
    a, b = _quality(best), _quality(other)
    if a[0] != b[0]:
        return "has Pixel Data"
    if a[1] != b[1]:
        flag = ", Lossy Image Compression 01" if other.lossy_compression == "01" else ""
        return f"lossless ({best.transfer_syntax}) over lossy ({other.transfer_syntax}{flag})"
    if a[2] != b[2]:
        return (f"not stored in a lossy Transfer Syntax ({best.transfer_syntax} over "
                f"{other.transfer_syntax}; both flagged lossy)")
    if a[3] != b[3]:
        return f"more elements ({a[3]} vs {b[3]})"
    if a[4] != b[4]:
        return f"larger data set ({a[4]} vs {b[4]} bytes)"
    return "equal by every measure; chosen by content digest, not by name"


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
    # path -> what was changed in the values its records took from it
    value_fixes: dict[str, list[str]] = field(default_factory=dict)

    def fix_lines(self) -> list[tuple[str, str]]:
        """One (path, what) line per source file whose values had to be
        made valid for the records."""
        return [(path, "directory record values made valid: " + "; ".join(what))
                for path, what in self.value_fixes.items() if what]
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
        patient = make_record("PATIENT", first, invent=invent, notes=layout.invented,
                              fixes=layout.value_fixes)
        layout.roots.append(patient)
        for st_no, (_, series_list) in enumerate(sorted(studies, key=_study_order), 1):
            s0 = series_list[0][1][0]
            study = make_record("STUDY", s0, invent={STUDY_ID: str(st_no)}, notes=layout.invented,
                                fixes=layout.value_fixes)
            patient.children.append(study)
            for se_no, (_, instances) in enumerate(sorted(series_list, key=_series_order), 1):
                series = make_record("SERIES", instances[0], notes=layout.invented,
                                     invent={SERIES_NUMBER: str(se_no)},
                                     fixes=layout.value_fixes)
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
    leaf = make_record(rtype, scan, invent={INSTANCE_NUMBER: str(number)}, notes=layout.invented,
                       fixes=layout.value_fixes)
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


ZERO_PREAMBLE = b"\x00" * 128


def copy_instance(scan: ScanResult, dest: Path) -> int:
    """Copy one input file to ``dest``: unchanged, with its preamble zeroed,
    or with the File Meta and (zero) preamble the standard demands.  The
    source is never modified; only an unchanged file may be moved or copied
    whole.  Returns bytes written."""
    if scan.needs_rewrite:
        head, offset = encode_meta(scan.sop_class, scan.sop_instance, scan.transfer_syntax), scan.dataset_offset
    elif scan.clear_preamble:
        head, offset = ZERO_PREAMBLE, len(ZERO_PREAMBLE)
    else:
        if scan.owned and _moved(scan.path, dest):
            return scan.size
        shutil.copyfile(scan.path, dest)
        return scan.size
    with open(scan.path, "rb") as src, open(dest, "wb") as out:
        out.write(head)
        src.seek(offset)
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

@dataclass
class VolumePlan:
    volumes: list[list[ScanResult]]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Unit:
    """What goes into a volume whole: a series, an instance of a series too
    large for one volume, or a single-level instance."""
    scans: list[ScanResult]
    cost: int
    series: Record | None = None


class VolumeTooSmall(ValueError):
    """One instance, alone in a volume, needs more bytes than the volume size."""

    def __init__(self, scan: ScanResult, needed: int):
        super().__init__(scan.path)
        self.scan, self.needed = scan, needed


def split_volumes(layout: Layout, limit: int, measure: Callable[[list[ScanResult]], int],
                  cost: Callable[[ScanResult], int]) -> VolumePlan:
    """Cut the File-set into volumes of at most ``limit`` output bytes.

    ``measure(scans)`` is the exact (or safely bounded) size of a volume
    holding ``scans``: a complete File-set with its DICOMDIR and manifest,
    compressed, encrypted.  ``cost(scan)`` is a cheap share of one instance
    (its compressed bytes); the per-instance overhead on top is learned from
    each measure.  Series are placed whole, in File-set order, each volume
    filled before the next is opened; only a series larger than a volume is
    split by instance (noted), starting in the room the current volume has
    left.  A volume is measured before it is closed, and the first unit of
    a volume is always measured, so no volume is ever over ``limit``."""
    sizer = _Estimator(limit, measure)
    plan = VolumePlan(volumes=[])
    queue = deque(_units(layout, cost))
    current = _Open()

    def close() -> None:
        # Estimates let units in without a measure: give back what does
        # not fit.  The first unit was measured alone, so one always stays.
        while sizer.measure(current.units) > limit:
            queue.appendleft(current.pop())
        plan.volumes.append([scan for unit in current.units for scan in unit.scans])
        current.clear()

    while queue or current.units:
        if not queue:
            close()         # may give units back: the loop goes on with them
            continue
        unit = queue.popleft()
        if sizer.fits(current, unit):
            current.append(unit)
            continue
        if unit.series is not None and len(unit.scans) > 1 and not sizer.fits(_Open(), unit):
            series = unit.series
            plan.notes.append(f"series {'/'.join(series.children[0].file_id[:3])} exceeds the volume size: "
                              "split by instance")
            queue.extendleft(reversed([_Unit([scan], cost(scan)) for scan in unit.scans]))
            continue
        if not current.units:
            raise VolumeTooSmall(unit.scans[0], sizer.measure([unit]))
        queue.appendleft(unit)
        close()
    return plan


def _units(layout: Layout, cost: Callable[[ScanResult], int]) -> list[_Unit]:
    """Series (and single-level instances) in File-set order."""
    units = []
    for rec in layout.roots:
        if rec.file_id:
            units.append(_Unit([rec.source], cost(rec.source)))
            continue
        for series in (r for r in rec.walk() if r.type == "SERIES"):
            scans = [leaf.source for leaf in series.children if leaf.file_id]
            if scans:
                units.append(_Unit(scans, sum(cost(s) for s in scans), series))
    return units


class _Open:
    """The volume being filled: running totals, and its last measured size
    (the anchor) with the totals it was measured at."""

    def __init__(self):
        self.clear()

    def append(self, unit: _Unit) -> None:
        self.units.append(unit)
        self.cost += unit.cost
        self.count += len(unit.scans)
        if self.pending is not None:
            self.anchor, self.pending = (self.pending, self.cost, self.count), None

    def pop(self) -> _Unit:
        unit = self.units.pop()
        self.cost -= unit.cost
        self.count -= len(unit.scans)
        self.anchor = self.pending = None
        return unit

    def clear(self) -> None:
        self.units: list[_Unit] = []
        self.cost = self.count = 0
        self.anchor: tuple[int, int, int] | None = None
        self.pending: int | None = None


class _Estimator:
    """Decides whether a unit fits, measuring only near the limit.

    The estimate is the volume's last measured size (or the empty volume)
    plus the costs added since and a learned overhead per instance (DICOMDIR
    record, manifest line, ZIP headers, CMS framing), relearned from every
    measure.  Within a margin of the limit it measures: a wide margin until
    the volume has been measured once, then a narrow one, since only the
    overhead of what was added since can be off.  A unit alone in a volume
    is always measured; a whole volume is measured before it is closed."""

    NARROW = 4 << 10           # bytes, plus PER_INSTANCE_SLACK per instance added since the anchor
    PER_INSTANCE_SLACK = 64

    def __init__(self, limit: int, measure: Callable[[list[ScanResult]], int]):
        self.limit, self._measure = limit, measure
        self.wide = max(16 << 10, limit // 64)
        self.empty = measure([])
        self.per_instance = 512.0

    def measure(self, units: list[_Unit]) -> int:
        scans = [scan for unit in units for scan in unit.scans]
        size = self._measure(scans)
        if scans:
            self.per_instance = max(0.0, (size - self.empty - sum(u.cost for u in units)) / len(scans))
        return size

    def fits(self, current: _Open, unit: _Unit) -> bool:
        current.pending = None
        if not current.units:
            size = self.measure([unit])
            current.pending = size if size <= self.limit else None
            return size <= self.limit
        size, cost, count = current.anchor or (self.empty, 0, 0)
        added = current.count - count + len(unit.scans)
        estimate = size + current.cost - cost + unit.cost + self.per_instance * added
        margin = self.NARROW + self.PER_INSTANCE_SLACK * added if current.anchor else self.wide
        if estimate <= self.limit - margin:
            return True
        if estimate > self.limit + margin:
            return False
        size = self.measure(current.units + [unit])
        current.pending = size if size <= self.limit else None
        return size <= self.limit


def volume_name(dest: Path, index: int, count: int) -> Path:
    """NAME-1of3.zip, NAME-1of3.p7m, NAME-1of3 (folder)."""
    if count == 1:
        return dest
    suffix = dest.suffix if dest.suffix.lower() in (".zip", ".p7m") else ""
    stem = dest.name[:-len(suffix)] if suffix else dest.name
    return dest.with_name(f"{stem}-{index}of{count}{suffix}")


# ---------------------------------------------------------------- FSU: update an index

_MATCH_KEY = {"PATIENT": PATIENT_ID, "STUDY": STUDY_UID, "SERIES": SERIES_UID}


def updated_index(existing, added: list[Record], where: str = "DICOMDIR") -> list[Record]:
    """The record tree of ``existing`` (a read DicomDir) with the records of
    ``added`` merged in: patients matched by Patient ID, studies by Study
    Instance UID, series by Series Instance UID.

    Every existing record is kept (FSU role): an index with in-use records no
    offset leads to is refused rather than rewritten without them.  Records
    that pointed at a lower-level directory file keep the records read from
    it and lose the reference, so the result is one PS3.10 DICOMDIR."""
    refuse_lossy_update(existing, where)
    for rec in existing.directory_refs:
        rec.file_id, rec.sop_class, rec.sop_instance, rec.transfer_syntax = None, "", "", ""
    return _merge_level(existing.roots, added)


def refuse_lossy_update(existing, where: str = "DICOMDIR") -> None:
    """Refuse (exit 4) an index that an update would write without some of
    its records: unreadable directory files, records no offset leads to."""
    from dicompack.errors import PackageInvalidError
    if existing.unread_directory_files:
        label, why = existing.unread_directory_files[0]
        raise PackageInvalidError(f"the lower-level directory file {label} cannot be read ({why}); --update "
                                  "would drop the records it holds: rebuild the index from the files with "
                                  "`dicompack dicomdir DIR` (without --update)", where=where)
    lost = existing.unreachable()
    if lost:
        first = lost[0]
        raise PackageInvalidError(
            f"{len(lost):,} in-use record(s) cannot be reached from the DICOMDIR's root (first: {first.type} "
            f"record at byte {first.offset}); --update would drop them: rebuild the index from the files "
            "with `dicompack dicomdir DIR` (without --update)", where=where)


def _merge_level(old: list[Record], new: list[Record]) -> list[Record]:
    # Recursion is bounded: read trees are linked at most MAX_RECORD_DEPTH deep.
    merged = list(old)
    twins: dict[tuple[str, bytes], Record] = {}
    for rec in old:
        if rec.in_use and rec.type in _MATCH_KEY:
            twins.setdefault((rec.type, _match_value(rec)), rec)   # the first one, as before
    for rec in new:
        twin = twins.get((rec.type, _match_value(rec))) if rec.type in _MATCH_KEY else None
        if twin is None:
            merged.append(rec)
            if rec.type in _MATCH_KEY:
                twins[(rec.type, _match_value(rec))] = rec
        else:
            twin.children = _merge_level(twin.children, rec.children)
    return merged


def _match_value(rec: Record) -> bytes:
    from dicompack.fileset.records import key_bytes
    return key_bytes(rec, _MATCH_KEY[rec.type])


_FILESET_ID = re.compile(r"^[A-Z0-9_ ]{0,16}$")


def validate_fileset_id(fileset_id: str) -> None:
    """PS3.3 F.5: File-set ID is CS, at most 16 characters."""
    if not _FILESET_ID.match(fileset_id):
        raise UsageError("File-set ID must be at most 16 characters of A-Z 0-9 _ and space",
                         where=fileset_id)
