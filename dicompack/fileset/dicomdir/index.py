"""Lower-level directory files: a DICOMDIR whose records reference further
files in the DICOMDIR format, read into one record tree."""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path

from dicompack.enums import Severity
from dicompack.errors import PackageInvalidError
from dicompack.fileset.dicomdir.packed import MAX_DICOMDIR_KEY_BYTES
from dicompack.fileset.dicomdir.reader import (
    MAX_DICOMDIR_RECORDS,
    MAX_LISTED_LINK_FINDINGS,
    MAX_RECORD_DEPTH,
    DicomDir,
    _CappedFindings,
    read_dicomdir,
)
from dicompack.fileset.records import Record
from dicompack.report import Finding
from dicompack.standard import MEDIA_STORAGE_DIRECTORY_STORAGE

# Some vendors (Philips CDs among them) split the index: a record of the
# DICOMDIR references, through its Referenced File ID, another file in the
# DICOMDIR format (Media Storage Directory Storage, often named DIRFILE) whose
# root records are that record's lower level.  PS3.10 allows one DICOMDIR per
# File-set, so `check` reports each such reference as an error, while `ls`
# and `dicomdir --update` follow them (FSR role) and `--update` writes one
# conformant DICOMDIR.  Limits: directory files read, how deep they may
# reference further directory files, and the record cap shared by all files.
MAX_DIRECTORY_FILES = 1_000
MAX_DIRECTORY_FILE_NESTING = 4
DIRECTORY_FILE_NAME = "DIRFILE"


def references_directory_file(rec: Record) -> bool:
    """Whether a record points at a lower-level directory file."""
    if not rec.in_use or not rec.file_id:
        return False
    return rec.sop_class == MEDIA_STORAGE_DIRECTORY_STORAGE or (
        not rec.sop_class and rec.file_id[-1].upper() == DIRECTORY_FILE_NAME)


def read_index(root: str | os.PathLike, dicomdir: str | os.PathLike | None = None) -> DicomDir:
    """The DICOMDIR of the File-set at ``root`` (or the file ``dicomdir``),
    with the lower-level directory files its records reference read in.

    Raises PackageInvalidError when the DICOMDIR itself cannot be parsed; a
    directory file that cannot be read or followed is an error finding."""
    root = Path(root)
    path = Path(dicomdir) if dicomdir is not None else root / "DICOMDIR"
    dd = read_dicomdir(path)
    if any(references_directory_file(rec) for rec in dd.records):
        _DirectoryFiles(dd, root, path).follow()
    return dd


class _DirectoryFiles:
    """Reads the directory files referenced from ``dd`` into its tree:
    breadth first, each file once, every path inside the File-set root."""

    def __init__(self, dd: DicomDir, root: Path, top: Path):
        self.dd, self.root = dd, root
        self.real_root = os.path.realpath(root)
        self.visited = {os.path.realpath(top)}
        self.budget = MAX_DICOMDIR_RECORDS - len(dd.records)
        self.key_budget = MAX_DICOMDIR_KEY_BYTES - dd.key_bytes
        self.attempts = 0
        # The findings of all directory files share one cap.
        self.found = _CappedFindings(dd.findings, MAX_LISTED_LINK_FINDINGS)

    def follow(self) -> None:
        # (a level, the depth of its records, directory-file nesting)
        pending: deque[tuple[list[Record], int, int]] = deque([(self.dd.roots, 1, 0)])
        while pending:
            level, depth, nesting = pending.popleft()
            for rec in level:
                own = rec.children
                if own and depth < MAX_RECORD_DEPTH:
                    pending.append((own, depth + 1, nesting))
                if references_directory_file(rec) and rec not in self.dd.directory_refs:
                    self.dd.directory_refs.add(rec)
                    roots = self._read(rec, depth, nesting + 1)
                    rec.children = own + roots
                    pending.append((roots, depth + 1, nesting + 1))
        self.found.close("lower-level directory files")
        self._splice_pointers()

    def _read(self, rec: Record, depth: int, nesting: int) -> list[Record]:
        file_id = rec.file_id or ()    # never empty: references_directory_file(rec) holds
        label = "/".join(file_id)
        where = f"record at byte {rec.offset} ({rec.type})"
        self.attempts += 1
        if self.attempts > MAX_DIRECTORY_FILES:
            # One finding for all references past the cap: findings stay bounded.
            if self.attempts == MAX_DIRECTORY_FILES + 1:
                too_many = f"more than {MAX_DIRECTORY_FILES:,} directory file references (dicompack's limit)"
                self.dd.findings.append(Finding(Severity.ERROR, where, f"{label} and later ones not read: {too_many}"))
                self.dd.unread_directory_files.append((label, too_many))
            return []
        # Listed whatever the findings cap: at most MAX_DIRECTORY_FILES of each.
        self.dd.findings.append(Finding(
            Severity.ERROR, where, f"references the lower-level directory file {label}: PS3.10 allows one "
                                   "DICOMDIR per File-set (`dicompack dicomdir --update` merges it in)"))
        problem, path = self._locate(file_id)
        if problem is None and nesting > MAX_DIRECTORY_FILE_NESTING:
            problem = f"directory files nested more than {MAX_DIRECTORY_FILE_NESTING} deep (dicompack's limit)"
        if problem is None and depth >= MAX_RECORD_DEPTH:
            problem = f"records nested deeper than {MAX_RECORD_DEPTH} levels (dicompack's limit)"
        if problem is None:
            try:
                sub = read_dicomdir(path, budget=self.budget, base_depth=depth, key_budget=self.key_budget)
            except PackageInvalidError as exc:
                problem = exc.message
        if problem is not None:
            self.dd.findings.append(Finding(Severity.ERROR, label, f"lower-level directory file not read: {problem}"))
            self.dd.unread_directory_files.append((label, problem))
            return []
        self.budget -= len(sub.records)
        self.key_budget -= sub.key_bytes
        self.dd.directory_files.append(label)
        for f in sub.findings:
            self.found.append(Finding(f.severity, f"{label}: {f.where}", f.what))
        self._anchor_file_ids(sub, file_id[:-1])
        self.dd.records += sub.records
        return sub.roots

    def _locate(self, file_id: tuple[str, ...]) -> tuple[str | None, str]:
        """The path of a referenced directory file, refusing anything that
        could leave the File-set root (.., separators, symlinks out)."""
        if any(part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part for part in file_id):
            return "its File ID is not a relative path inside the File-set", ""
        path = os.path.join(self.root, *file_id)
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.real_root]) != self.real_root:
            return "it lies outside the File-set", ""
        if real in self.visited:
            return "it was already read (a loop between directory files)", ""
        if not os.path.isfile(real):
            return "no such file", ""
        self.visited.add(real)
        return None, real

    def _anchor_file_ids(self, sub: DicomDir, folder: tuple[str, ...]) -> None:
        """PS3.10 File IDs count from the File-set root; some vendors write
        them relative to the directory file's folder.  Such an ID is
        rewritten to count from the root when only that reading names a file."""
        if not folder:
            return
        for rec in sub.records:
            if not rec.file_id or any(part in ("", ".", "..") for part in rec.file_id):
                continue
            if (not os.path.isfile(os.path.join(self.root, *rec.file_id))
                    and os.path.isfile(os.path.join(self.root, *folder, *rec.file_id))):
                rec.file_id = folder + rec.file_id

    def _splice_pointers(self) -> None:
        """A PRIVATE record that points at a directory file stands for the
        records that file holds: they take its place in its level."""
        pending = [self.dd.roots]
        while pending:
            level = pending.pop()
            queue, spliced = deque(level), []
            while queue:
                rec = queue.popleft()
                if rec in self.dd.directory_refs and rec.type == "PRIVATE":
                    queue.extendleft(reversed(rec.children))
                else:
                    spliced.append(rec)
            level[:] = spliced
            pending += [rec.children for rec in level if rec.children]
