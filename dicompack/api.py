"""The library API.  The CLI is a thin shell over exactly these calls."""
from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import fileset as fs
from .check import check_fileset
from .dicomdir import read_dicomdir, write_dicomdir_file
from .errors import InvalidInputError, PackageInvalidError, UsageError
from .output import atomic_directory
from .records import (MODALITY, PATIENT_ID, PATIENT_NAME, SERIES_NUMBER,
                      SERIES_UID, STUDY_DATE, STUDY_DESCRIPTION, STUDY_UID,
                      Record, key_text, walk_all)
from .report import (CheckReport, DicomdirReport, ListReport, PackReport,
                     Problem, Progress, ProgressCallback)
from .scan import ScanResult, iter_source_files, scan_files

_FILESET_ID = re.compile(r"^[A-Z0-9_ ]{0,16}$")


@dataclass(frozen=True)
class PackOptions:
    fileset_id: str = ""
    skip_invalid: bool = False
    force: bool = False
    jobs: int | None = None
    progress: ProgressCallback | None = None


def _validate_fileset_id(fileset_id: str) -> None:
    if not _FILESET_ID.match(fileset_id):
        raise UsageError("File-set ID must be at most 16 characters of A-Z 0-9 _ and space",
                         where=fileset_id)


def pack(sources, dest, options: PackOptions = PackOptions()) -> PackReport:
    """Build a standard File-set with a DICOMDIR at ``dest`` from ``sources``."""
    _validate_fileset_id(options.fileset_id)
    started = time.monotonic()
    progress = Progress(options.progress)
    dest = Path(dest)
    report = PackReport(output=str(dest), format="dir", fileset_id=options.fileset_id)
    kept = _scan_inputs(sources, report, options, progress, exclude=dest)
    layout = fs.plan_layout(kept)
    with atomic_directory(dest, force=options.force) as tmp:
        report.bytes_written = _write_instances(tmp, layout, progress, report)
        progress("dicomdir", 0, 1)
        write_dicomdir_file(tmp / "DICOMDIR", layout.roots, fileset_id=options.fileset_id)
        report.bytes_written += (tmp / "DICOMDIR").stat().st_size
        progress("dicomdir", 1, 1)
    _summarize(report, layout, started)
    return report


def _scan_inputs(sources, report: PackReport, options: PackOptions, progress: Progress,
                 *, exclude: Path) -> list[ScanResult]:
    paths = [p for p in iter_source_files(sources) if not _inside(p, exclude)]
    progress("scan", 0, len(paths))
    scans = scan_files(paths, jobs=options.jobs, progress=lambda d, t: progress("scan", d, t))
    good = []
    for s in scans:
        if s.status == "dicom":
            good.append(s)
        elif s.status == "skipped":
            report.skipped.append(Problem(s.path, s.reason))
        else:
            report.invalid.append(Problem(s.path, s.reason))
    if report.invalid and not options.skip_invalid:
        problems = [(p.path, p.reason) for p in report.invalid]
        raise InvalidInputError(f"{len(problems)} invalid input file(s)", where=problems[0][0],
                                problems=problems)
    dup = fs.resolve_duplicates(good, skip_invalid=options.skip_invalid)
    report.duplicates_collapsed = [Problem(p, f"byte-identical to {same}") for p, same in dup.collapsed]
    report.invalid += [Problem(p, why) for p, why in dup.conflicts]
    if not dup.kept:
        raise InvalidInputError("no DICOM instances found in the input",
                                where=", ".join(str(s) for s in sources))
    report.fixes = [Problem(s.path, fix) for s in dup.kept for fix in s.fixes]
    return dup.kept


def _inside(path: str, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _write_instances(tmp: Path, layout: fs.Layout, progress: Progress, report: PackReport) -> int:
    total = len(layout.leaves)
    written = 0
    made: set[Path] = set()
    for n, leaf in enumerate(layout.leaves, 1):
        dest = fs.leaf_path(tmp, leaf)
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        written += fs.copy_instance(leaf.source, dest)
        if n % 32 == 0 or n == total:
            progress("copy", n, total, written)
    return written


def _summarize(report: PackReport, layout: fs.Layout, started: float) -> None:
    counts = Counter(r.type for r in walk_all(layout.roots))
    report.patients, report.studies, report.series = counts["PATIENT"], counts["STUDY"], counts["SERIES"]
    report.instances = len(layout.leaves)
    report.transfer_syntaxes = dict(Counter(leaf.transfer_syntax for leaf in layout.leaves))
    report.application_profile = application_profile(report.transfer_syntaxes)
    report.invented = [vars(i) for i in layout.invented]
    report.warnings += [Problem(p, w) for p, w in layout.warnings]
    report.seconds = round(time.monotonic() - started, 3)
    report.files_per_second = round(report.instances / report.seconds, 1) if report.seconds else 0.0


_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
         "1.2.840.10008.1.2.4.70"}


def application_profile(syntaxes) -> str:
    """The PS3.11 general purpose profile the File-set's syntaxes fit."""
    used = set(syntaxes)
    if used <= {"1.2.840.10008.1.2.1"}:
        return "STD-GEN-CD"
    if used <= {"1.2.840.10008.1.2.1"} | _J2K:
        return "STD-GEN-USB-J2K"
    if used <= {"1.2.840.10008.1.2.1"} | _JPEG:
        return "STD-GEN-USB-JPEG"
    return "STD-GEN-MIME (syntaxes outside the CD/DVD/USB general purpose profiles)"


# ---------------------------------------------------------------- dicomdir

def build_dicomdir(root, *, fileset_id: str | None = None, update: bool = False,
                   jobs: int | None = None, progress: ProgressCallback | None = None) -> DicomdirReport:
    """(Re)build the DICOMDIR of an existing File-set from its files.

    Without ``update`` a broken or stale index is ignored and rebuilt from
    the files.  With ``update`` (FSU role) existing records are kept as they
    are and records are added for files the DICOMDIR does not reference.
    """
    started = time.monotonic()
    root = Path(root)
    if not root.is_dir():
        raise UsageError("not a folder", where=str(root))
    dicomdir = root / "DICOMDIR"
    existing = read_dicomdir(dicomdir) if update and dicomdir.exists() else None
    if fileset_id is None:
        fileset_id = existing.fileset_id if existing else ""
    _validate_fileset_id(fileset_id)
    known = {os.path.join(*r.file_id) for r in existing.records if r.file_id} if existing else set()
    report = DicomdirReport(path=str(dicomdir), fileset_id=fileset_id)
    paths = [p for p in iter_source_files([root])
             if os.path.relpath(p, root) != "DICOMDIR" and os.path.relpath(p, root) not in known
             and ".dicompack-tmp" not in p]
    prog = Progress(progress)
    scans = scan_files(paths, jobs=jobs, progress=lambda d, t: prog("scan", d, t))
    fixed_ids, dicom = _placed_files(root, scans, report)
    layout = fs.plan_layout(dicom, fixed_ids)
    roots = layout.roots
    if existing:
        roots = merge_records(existing.roots, layout.roots)
        report.added = len(layout.leaves)
    report.records = write_dicomdir_file(dicomdir, roots, fileset_id=fileset_id)
    report.instances = sum(1 for r in walk_all(roots) if r.file_id)
    report.invented = [vars(i) for i in layout.invented]
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _placed_files(root: Path, scans: list[ScanResult], report: DicomdirReport):
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
    seen: dict[str, str] = {}
    for s in dicom:
        if s.sop_instance in seen:
            raise InvalidInputError(f"same SOP Instance UID as {seen[s.sop_instance]}",
                                    where=os.path.relpath(s.path, root))
        seen[s.sop_instance] = os.path.relpath(s.path, root)
    return fixed_ids, dicom


def merge_records(old: list[Record], new: list[Record]) -> list[Record]:
    """Add the records of ``new`` into ``old``, matching patients by Patient
    ID, studies by Study Instance UID and series by Series Instance UID."""
    match_key = {"PATIENT": PATIENT_ID, "STUDY": STUDY_UID, "SERIES": SERIES_UID}
    merged = list(old)
    for rec in new:
        tag = match_key.get(rec.type)
        twin = next((o for o in merged if tag and o.type == rec.type and o.in_use
                     and _key(o, tag) == _key(rec, tag)), None)
        if twin is None:
            merged.append(rec)
        else:
            twin.children = merge_records(twin.children, rec.children)
    return merged


def _key(rec: Record, tag: int) -> bytes:
    from .records import key_bytes
    return key_bytes(rec, tag)


# ---------------------------------------------------------------- reading

def resolve_fileset_root(path) -> Path:
    path = Path(path)
    if path.is_file() and path.name.upper() == "DICOMDIR":
        return path.parent
    if path.is_dir():
        return path
    raise UsageError("not a File-set folder or DICOMDIR", where=str(path))


def check(path, *, jobs: int | None = None) -> CheckReport:
    """Validate a File-set (folder or its DICOMDIR)."""
    root = resolve_fileset_root(path)
    dd, findings, files = check_fileset(root, jobs=jobs)
    report = CheckReport(path=str(root), findings=[f.to_dict() for f in findings], files=files)
    if dd is not None:
        report.fileset_id, report.records = dd.fileset_id, len(dd.records)
    return report


def list_fileset(path) -> ListReport:
    """Patients / studies / series of a File-set, from its DICOMDIR."""
    root = resolve_fileset_root(path)
    dicomdir = root / "DICOMDIR"
    if not dicomdir.is_file():
        raise PackageInvalidError("no DICOMDIR at the File-set root", where=str(root))
    dd = read_dicomdir(dicomdir)
    report = ListReport(path=str(root), fileset_id=dd.fileset_id)
    for p in dd.roots:
        if p.type != "PATIENT":
            continue
        studies = []
        for st in p.children:
            series = [_series_summary(se) for se in st.children if se.type == "SERIES"]
            studies.append({"study_uid": key_text(st, STUDY_UID), "date": key_text(st, STUDY_DATE),
                            "description": key_text(st, STUDY_DESCRIPTION), "series": series,
                            "instances": sum(s["instances"] for s in series)})
        report.patients.append({"patient_id": key_text(p, PATIENT_ID),
                                "name": key_text(p, PATIENT_NAME), "studies": studies})
    return report


def _series_summary(se: Record) -> dict:
    leaves = [r for r in se.children if r.in_use]
    return {"series_uid": key_text(se, SERIES_UID), "modality": key_text(se, MODALITY),
            "number": key_text(se, SERIES_NUMBER), "instances": len(leaves),
            "record_types": dict(Counter(r.type for r in leaves)),
            "transfer_syntaxes": dict(Counter(r.transfer_syntax for r in leaves))}
