"""Build or update the DICOMDIR of a File-set in place (the FSC and FSU
roles of PS3.10 / PS3.11): index files where they are, merge new records
into an existing index, and replace the DICOMDIR only after the whole
File-set with the new index passes the check."""
from __future__ import annotations

import os
import time
from pathlib import Path

from dicompack.errors import InvalidInputError, PackageInvalidError, UsageError
from dicompack.fileset import layout as fs
from dicompack.fileset.check import check_fileset
from dicompack.fileset.dicomdir import read_index, write_dicomdir
from dicompack.fileset.layout import validate_fileset_id
from dicompack.fileset.records import Record, walk_all
from dicompack.report import DicomdirReport, Problem, Progress, ProgressCallback
from dicompack.scan import ScanResult, iter_source_files, scan_files


def build_dicomdir(root, *, fileset_id: str | None = None, update: bool = False,
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
        fs.refuse_lossy_update(existing, where=str(dicomdir))   # before scanning anything
    if fileset_id is None:
        fileset_id = existing.fileset_id if existing else ""
    validate_fileset_id(fileset_id)
    known = {os.path.join(*r.file_id) for r in existing.records if r.file_id} if existing else set()
    report = DicomdirReport(path=str(dicomdir), fileset_id=fileset_id)
    paths = [p for p in iter_source_files([root])
             if os.path.relpath(p, root) != "DICOMDIR" and os.path.relpath(p, root) not in known
             and ".dicompack-tmp" not in p]
    prog = Progress(progress)
    scans = scan_files(paths, jobs=jobs, progress=lambda d, t: prog("scan", d, t))
    indexed = {r.sop_instance: "/".join(r.file_id) for r in existing.records
               if r.in_use and r.file_id and r.sop_instance} if existing else {}
    fixed_ids, dicom = _placed_files(root, scans, report, indexed)
    layout = fs.plan_layout(dicom, fixed_ids)
    roots = layout.roots
    if existing:
        roots = fs.updated_index(existing, layout.roots, where=str(dicomdir))
        report.added = len(layout.leaves)
    report.records = _write_checked(root, dicomdir, roots, fileset_id, jobs)
    report.instances = sum(1 for r in walk_all(roots) if r.file_id)
    report.invented = [vars(i) for i in layout.invented]
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _write_checked(root: Path, dicomdir: Path, roots: list[Record], fileset_id: str,
                   jobs: int | None) -> int:
    """Write the DICOMDIR to a temporary sibling, check the File-set with it,
    and rename it into place only if the check finds no error: a failed
    (re)build leaves the File-set as it was."""
    tmp = dicomdir.with_name("DICOMDIR.dicompack-tmp")
    try:
        with open(tmp, "wb") as f:
            count = write_dicomdir(f, roots, fileset_id=fileset_id)
            f.flush()
            os.fsync(f.fileno())
        _dd, findings, _files = check_fileset(root, jobs=jobs, dicomdir=tmp)
        errors = [f for f in findings if f.severity == "error"]
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
                  indexed: dict[str, str] | None = None):
    """The scanned files that can be indexed where they are; ``indexed``
    maps the SOP Instance UIDs the DICOMDIR already holds to their File IDs."""
    fixed_ids: dict[str, tuple[str, ...]] = {}
    bad: list[tuple[str, str]] = []
    dicom = []
    for s in scans:
        rel = os.path.relpath(s.path, root)
        if s.status != "dicom":
            report.skipped.append(Problem(rel, s.reason))
            continue
        parts = tuple(Path(rel).parts)
        reason = fs.valid_file_id(parts)
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
    seen: dict[str, str] = dict(indexed or {})
    for s in dicom:
        if s.sop_instance in seen:
            already = " (already in the DICOMDIR)" if indexed and s.sop_instance in indexed else ""
            raise InvalidInputError(f"same SOP Instance UID as {seen[s.sop_instance]}{already}; "
                                    "nothing changed", where=os.path.relpath(s.path, root))
        seen[s.sop_instance] = os.path.relpath(s.path, root)
    return fixed_ids, dicom


def merge_records(old: list[Record], new: list[Record]) -> list[Record]:
    """Add the records of ``new`` into ``old``, matching patients by Patient
    ID, studies by Study Instance UID and series by Series Instance UID."""
    return fs._merge_level(old, new)
