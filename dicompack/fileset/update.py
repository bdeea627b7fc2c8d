"""Build or update the DICOMDIR of a File-set in place (the FSC and FSU
roles of PS3.10 / PS3.11): index files where they are, merge new records
into an existing index, and replace the DICOMDIR only after the whole
File-set with the new index passes the check."""
from __future__ import annotations

import os
import time
from pathlib import Path

from dicompack.enums import ScanStatus, Severity
from dicompack.errors import InvalidInputError, PackageInvalidError, UsageError
from dicompack.fileset.check import check_fileset
from dicompack.fileset.dicomdir import DicomDir, read_index, write_dicomdir
from dicompack.fileset.layout import plan_layout, valid_file_id, validate_fileset_id
from dicompack.fileset.records import PATIENT_ID, SERIES_UID, STUDY_UID, Record, key_bytes, walk_all
from dicompack.report import DicomdirReport, Problem, Progress, ProgressCallback
from dicompack.scan import ScanResult, iter_source_files, scan_files

# Temporary files of a (re)build: never indexed, removed when it ends.
_TMP_MARK = ".dicompack-tmp"


def build_dicomdir(root: str | os.PathLike[str], *, fileset_id: str | None = None, update: bool = False,
                   jobs: int | None = None, progress: ProgressCallback | None = None) -> DicomdirReport:
    """(Re)build the DICOMDIR of an existing File-set from its files.

    Without ``update`` a broken or stale index is ignored and rebuilt from
    the files.  With ``update`` (FSU role) existing records are kept as they
    are (read in any native syntax, lower-level directory files followed) and
    records are added for files the DICOMDIR does not reference; a file whose
    SOP Instance UID the DICOMDIR already holds is refused.  Either way the
    new DICOMDIR is written to a temporary sibling and checked with the
    File-set; it replaces the old one only when the check passes.
    """
    started = time.monotonic()
    root = Path(root)
    if not root.is_dir():
        raise UsageError("not a folder", where=str(root))
    dicomdir = root / "DICOMDIR"
    existing = read_index(root) if update and dicomdir.exists() else None
    if existing:
        refuse_lossy_update(existing, where=str(dicomdir))   # before scanning anything
    if fileset_id is None:
        fileset_id = existing.fileset_id if existing else ""
    validate_fileset_id(fileset_id)
    report = DicomdirReport(path=str(dicomdir), fileset_id=fileset_id)
    prog = Progress(progress)
    scans = scan_files(_unindexed_files(root, existing), jobs=jobs, progress=lambda d, t: prog("scan", d, t))
    fixed_ids, dicom = _placed_files(root, scans, report, _indexed_uids(existing))
    layout = plan_layout(dicom, fixed_ids)
    roots = layout.roots
    if existing:
        roots = updated_index(existing, layout.roots, where=str(dicomdir))
        report.added = len(layout.leaves)
    report.records = _write_checked(root, dicomdir, roots, fileset_id, jobs)
    report.instances = sum(1 for r in walk_all(roots) if r.file_id)
    report.invented = [vars(i) for i in layout.invented]
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _unindexed_files(root: Path, existing: DicomDir | None) -> list[str]:
    """The files below ``root`` to index: not the DICOMDIR, none it already
    references, no temporary file of ours."""
    known = {os.path.join(*r.file_id) for r in existing.records if r.file_id} if existing else set()
    return [p for p in iter_source_files([root])
            if os.path.relpath(p, root) != "DICOMDIR" and os.path.relpath(p, root) not in known
            and _TMP_MARK not in p]


def _indexed_uids(existing: DicomDir | None) -> dict[str, str]:
    """SOP Instance UID -> File ID of the instances the DICOMDIR holds."""
    if not existing:
        return {}
    return {r.sop_instance: "/".join(r.file_id) for r in existing.records
            if r.in_use and r.file_id and r.sop_instance}


def _write_checked(root: Path, dicomdir: Path, roots: list[Record], fileset_id: str,
                   jobs: int | None) -> int:
    """Write the DICOMDIR to a temporary sibling, check the File-set with it,
    and rename it into place only if the check finds no error: a failed
    (re)build leaves the File-set as it was."""
    tmp = dicomdir.with_name("DICOMDIR" + _TMP_MARK)
    try:
        with open(tmp, "wb") as f:
            count = write_dicomdir(f, roots, fileset_id=fileset_id)
            f.flush()
            os.fsync(f.fileno())
        _dd, findings, _files = check_fileset(root, jobs=jobs, dicomdir=tmp)
        errors = [f for f in findings if f.severity == Severity.ERROR]
        if errors:
            more = f" (and {len(errors) - 1:,} more; `dicompack check` lists them)" if len(errors) > 1 else ""
            raise PackageInvalidError(f"nothing changed: the new DICOMDIR would fail the File-set check: "
                                      f"{errors[0].where}: {errors[0].what}{more}", where=str(dicomdir))
        os.replace(tmp, dicomdir)
        return count
    finally:
        if tmp.exists():
            tmp.unlink()


def _placed_files(root: Path, scans: list[ScanResult], report: DicomdirReport,
                  indexed: dict[str, str] | None = None) -> tuple[dict[str, tuple[str, ...]], list[ScanResult]]:
    """The scanned files that can be indexed where they are, and their File
    IDs (path -> File ID); ``indexed`` maps the SOP Instance UIDs the
    DICOMDIR already holds to their File IDs."""
    fixed_ids: dict[str, tuple[str, ...]] = {}
    bad: list[tuple[str, str]] = []
    dicom = []
    for s in scans:
        rel = os.path.relpath(s.path, root)
        if s.status != ScanStatus.DICOM:
            report.skipped.append(Problem(rel, s.reason))
            continue
        parts = tuple(Path(rel).parts)
        reason = valid_file_id(parts)
        if reason:
            bad.append((rel, f"not a PS3.10 File ID ({reason}); use 'dicompack pack' to rename"))
        elif not s.has_preamble or s.needs_rewrite:
            bad.append((rel, "not a conformant Part 10 file (" + "; ".join(s.fixes) + "); use 'dicompack pack'"))
        else:
            fixed_ids[s.path] = parts
            dicom.append(s)
    if bad:
        raise InvalidInputError(f"{len(bad)} file(s) cannot be indexed in place", where=bad[0][0],
                                problems=bad)
    _refuse_known_uids(root, dicom, indexed or {})
    return fixed_ids, dicom


def _refuse_known_uids(root: Path, dicom: list[ScanResult], indexed: dict[str, str]) -> None:
    """PS3.10: one file per SOP Instance UID, among the new files and
    against those the DICOMDIR already holds."""
    seen: dict[str, str] = dict(indexed)
    for s in dicom:
        if s.sop_instance in seen:
            already = " (already in the DICOMDIR)" if s.sop_instance in indexed else ""
            raise InvalidInputError(f"same SOP Instance UID as {seen[s.sop_instance]}{already}; "
                                    "nothing changed", where=os.path.relpath(s.path, root))
        seen[s.sop_instance] = os.path.relpath(s.path, root)


# ---------------------------------------------------------------- FSU: merge into an index

_MATCH_KEY = {"PATIENT": PATIENT_ID, "STUDY": STUDY_UID, "SERIES": SERIES_UID}


def updated_index(existing: DicomDir, added: list[Record], where: str = "DICOMDIR") -> list[Record]:
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
    return merge_records(existing.roots, added)


def refuse_lossy_update(existing: DicomDir, where: str = "DICOMDIR") -> None:
    """Refuse (exit 4) an index that an update would write without some of
    its records: unreadable directory files, records no offset leads to."""
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


def merge_records(old: list[Record], new: list[Record]) -> list[Record]:
    """Add the records of ``new`` into ``old``, matching patients by Patient
    ID, studies by Study Instance UID and series by Series Instance UID."""
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
            twin.children = merge_records(twin.children, rec.children)
    return merged


def _match_value(rec: Record) -> bytes:
    return key_bytes(rec, _MATCH_KEY[rec.type])
