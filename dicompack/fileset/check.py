"""File-set checker: the DICOMDIR against PS3.3 Annex F / PS3.10 and against
the files it references.  Each finding has a severity, a place and a reason;
only 'error' findings make a File-set invalid."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from dicompack.enums import ScanStatus, Severity
from dicompack.errors import PackageInvalidError
from dicompack.fileset.dicomdir import DicomDir, read_index
from dicompack.fileset.layout import valid_file_id
from dicompack.fileset.records import Record, is_single_level, key_bytes, known_record_types, record_keys
from dicompack.report import Finding
from dicompack.scan import ScanResult, scan_files
from dicompack.standard import MEDIA_STORAGE_DIRECTORY_STORAGE

# What may sit below what (PS3.3 Table F.4-1, the parts we write and read).
_ALLOWED_BELOW = {
    None: {"PATIENT", "PRIVATE", "TOPIC"},
    "PATIENT": {"STUDY", "PRIVATE", "HL7 STRUC DOC"},
    "STUDY": {"SERIES", "PRIVATE", "FILM SESSION", "HANGING PROTOCOL"},
}
_NOT_LEAF = {"PATIENT", "STUDY", "SERIES"}


def record_where(rec: Record) -> str:
    """Where a finding about ``rec`` is: its type, byte offset and File ID."""
    fid = "\\".join(rec.file_id) if rec.file_id else ""
    return f"{rec.type} record at byte {rec.offset}" + (f" ({fid})" if fid else "")


def check_fileset(root: Path, *, jobs: int | None = None,
                  dicomdir: Path | None = None) -> tuple[DicomDir | None, list[Finding], int]:
    """Check the File-set rooted at ``root``; return (dicomdir, findings, files).

    ``dicomdir``: check this file as the File-set's DICOMDIR instead of
    ``root/DICOMDIR`` (`dicomdir --update` checks its new DICOMDIR before
    renaming it into place)."""
    root = Path(root)
    findings: list[Finding] = []
    dicomdir_path = Path(dicomdir) if dicomdir is not None else root / "DICOMDIR"
    if not dicomdir_path.is_file():
        # "File-set", not the root's path: for a ZIP that is a private
        # temporary folder; the caller names the package.
        findings.append(Finding(Severity.ERROR, "File-set", _missing_dicomdir_reason(root)))
        return None, findings, 0
    try:
        dd = read_index(root, dicomdir_path)
    except PackageInvalidError as exc:
        findings.append(Finding(Severity.ERROR, "DICOMDIR", exc.message))
        return None, findings, 0
    findings += dd.findings
    findings += _check_header(dd)
    listed = _Listed(findings)
    listed.extend(_check_tree(dd.roots, None))
    listed.extend(_check_keys(dd))
    scans = _scan_tree(root, jobs, skip=os.path.relpath(dicomdir_path, root))
    listed.extend(_check_references(dd, root, scans))
    listed.close()
    return dd, findings, len(scans)


# A hostile DICOMDIR can make every one of its records wrong in several ways:
# findings are listed up to this many, the rest counted in one last finding
# (an error if any of them is), so memory and output stay bounded.
MAX_LISTED_FINDINGS = 10_000


class _Listed:
    """The findings list, capped at MAX_LISTED_FINDINGS."""

    def __init__(self, findings: list[Finding]):
        self.findings, self.dropped, self.dropped_errors = findings, 0, 0

    def extend(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            if len(self.findings) < MAX_LISTED_FINDINGS:
                self.findings.append(finding)
            else:
                self.dropped += 1
                self.dropped_errors += finding.severity == Severity.ERROR

    def close(self) -> None:
        if self.dropped:
            self.findings.append(Finding(
                Severity.ERROR if self.dropped_errors else Severity.WARNING, "File-set",
                f"{self.dropped:,} more findings not listed ({self.dropped_errors:,} errors; "
                f"at most {MAX_LISTED_FINDINGS:,} are listed)"))


def _missing_dicomdir_reason(root: Path) -> str:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.upper() == "DICOMDIR":
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                return (f"no DICOMDIR at the File-set root; found {rel!r} instead "
                        "(PS3.10: exactly one DICOMDIR, at the root, named in upper case)")
    return NO_DICOMDIR


NO_DICOMDIR = ("no DICOMDIR at the File-set root: not a File-set (`dicompack unpack --rebuild` builds one "
               "from a ZIP of DICOM files, `dicompack pack` from a folder)")


def _check_header(dd: DicomDir) -> list[Finding]:
    """The DICOMDIR's File Meta and File-set identification (PS3.3 F.3.2.1)."""
    out = []
    if dd.sop_class and dd.sop_class != MEDIA_STORAGE_DIRECTORY_STORAGE:
        out.append(Finding(Severity.ERROR, "DICOMDIR", f"Media Storage SOP Class is {dd.sop_class}, "
                                                f"not {MEDIA_STORAGE_DIRECTORY_STORAGE}"))
    if len(dd.fileset_id) > 16:
        out.append(Finding(Severity.ERROR, "DICOMDIR", "File-set ID is longer than 16 characters"))
    if dd.consistency_flag != 0:
        out.append(Finding(Severity.ERROR, "DICOMDIR", f"File-set Consistency Flag is {dd.consistency_flag:#06x}, "
                                                "PS3.3 F.3.2.1 requires 0000H"))
    return out


def _check_tree(roots: list[Record], parent: str | None) -> Iterator[Finding]:
    """Record types against their parents, in DICOMDIR order.  Iterative: the
    reader caps a read tree at MAX_RECORD_DEPTH, and this walk needs no
    Python stack whatever the depth."""
    pending: list[tuple[Record, str | None]] = [(rec, parent) for rec in reversed(roots)]
    while pending:
        rec, parent = pending.pop()
        if not rec.in_use:
            continue
        yield from _check_placement(rec, parent)
        pending += [(child, rec.type) for child in reversed(rec.children)]


def _check_placement(rec: Record, parent: str | None) -> list[Finding]:
    """The record's type against its parent's (PS3.3 Table F.4-1)."""
    out = []
    where = record_where(rec)
    allowed = _ALLOWED_BELOW.get(parent, set())
    if rec.type not in known_record_types():
        out.append(Finding(Severity.WARNING, where, f"unknown record type {rec.type!r}"))
    elif parent is None and not (rec.type in allowed or is_single_level(rec.type)):
        out.append(Finding(Severity.ERROR, where, "record type not allowed at the root"))
    elif parent in ("PATIENT", "STUDY") and rec.type not in allowed:
        out.append(Finding(Severity.ERROR, where, f"record type not allowed below {parent}"))
    elif parent == "SERIES" and rec.type in _NOT_LEAF:
        out.append(Finding(Severity.ERROR, where, "record type not allowed below SERIES"))
    elif parent not in (None, "PATIENT", "STUDY", "SERIES"):
        out.append(Finding(Severity.ERROR, where, f"record below a {parent} record, which has no lower level"))
    if rec.type in _NOT_LEAF and rec.file_id:
        out.append(Finding(Severity.WARNING, where, f"references a file although it is a {rec.type} record"))
    return out


def _check_keys(dd: DicomDir) -> Iterator[Finding]:
    """Each in-use record's Type 1 and Type 2 keys (PS3.3 F.5)."""
    for rec in dd.records:
        if not rec.in_use:
            continue
        for key in record_keys(rec.type):
            present = key.tag in rec.elements
            if key.type == "1" and (not present or not key_bytes(rec, key.tag)):
                if key.vr == b"SQ" and present:
                    continue
                yield Finding(Severity.ERROR, record_where(rec),
                              f"Type 1 key {key.keyword} is {'empty' if present else 'missing'}")
            elif key.type == "2" and not present:
                yield Finding(Severity.ERROR, record_where(rec), f"Type 2 key {key.keyword} is missing")
        if rec.type not in _NOT_LEAF and rec.type != "PRIVATE" and not rec.file_id and rec.children == []:
            yield Finding(Severity.WARNING, record_where(rec), "leaf record references no file")


def _scan_tree(root: Path, jobs: int | None, skip: str = "DICOMDIR") -> dict[str, ScanResult]:
    """Every file of the File-set but its DICOMDIR (and ``skip``), scanned, by relative path."""
    paths = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            if os.path.relpath(full, root) not in ("DICOMDIR", skip):
                paths.append(full)
    return {os.path.relpath(s.path, root): s for s in scan_files(paths, jobs=jobs)}


def _check_references(dd: DicomDir, root: Path, scans: dict[str, ScanResult]) -> Iterator[Finding]:
    """Every in-use record that references a file against that file, in
    DICOMDIR order; then the DICOM files no record references."""
    referenced: set[str] = set()
    uids = Counter(rec.sop_instance for rec in dd.records if rec.in_use and rec.file_id)
    by_lower = {rel.lower(): rel for rel in scans}
    for rec in dd.records:
        if not rec.in_use or not rec.file_id:
            continue
        if rec in dd.directory_refs:
            # Reported by the reader (a lower-level directory file, read in).
            referenced.add(os.path.join(*rec.file_id))
            continue
        yield from _check_reference(rec, rec.file_id, scans, by_lower, uids, referenced)
    descriptor = os.path.join(*dd.descriptor) if dd.descriptor else None
    for rel, scan in scans.items():
        if rel not in referenced and rel != descriptor and scan.status == ScanStatus.DICOM:
            yield Finding(Severity.WARNING, rel, "DICOM file not referenced by the DICOMDIR (orphan)")


def _check_reference(rec: Record, file_id: tuple[str, ...], scans: dict[str, ScanResult],
                     by_lower: dict[str, str], uids: Counter[str], referenced: set[str]) -> Iterator[Finding]:
    """One record's File ID and the file it names; adds the file to ``referenced``."""
    where = record_where(rec)
    reason = valid_file_id(file_id)
    if reason:
        yield Finding(Severity.ERROR, where, f"invalid File ID: {reason}")
    rel = os.path.join(*file_id)
    if rel in referenced:
        yield Finding(Severity.ERROR, where, "another record references the same file")
    referenced.add(rel)
    if uids[rec.sop_instance] > 1:
        yield Finding(Severity.ERROR, where, f"SOP Instance UID {rec.sop_instance} is referenced "
                                             f"{uids[rec.sop_instance]} times")
    scan = scans.get(rel)
    if scan is None:
        other = by_lower.get(rel.lower())
        hint = f" (a file differing only in case exists: {other})" if other else ""
        yield Finding(Severity.ERROR, where, f"referenced file does not exist{hint}")
        return
    yield from _compare(rec, scan, where)


def _compare(rec: Record, scan: ScanResult, where: str) -> list[Finding]:
    """The record's UIDs and syntax against the file's, and the file's form."""
    if scan.status != ScanStatus.DICOM:
        return [Finding(Severity.ERROR, where, f"referenced file is not a valid DICOM file: {scan.reason}")]
    out = []
    for label, theirs, mine in (("SOP Instance UID", rec.sop_instance, scan.sop_instance),
                                ("SOP Class UID", rec.sop_class, scan.sop_class),
                                ("Transfer Syntax UID", rec.transfer_syntax, scan.transfer_syntax)):
        if theirs != mine:
            out.append(Finding(Severity.ERROR, where, f"record says {label} {theirs or '(none)'}, file has {mine}"))
    if not scan.has_preamble:
        out.append(Finding(Severity.ERROR, where, "referenced file is not a Part 10 file (no preamble/DICM)"))
    for fix in scan.fixes:
        out.append(Finding(Severity.WARNING, where, f"referenced file: {fix}"))
    return out
