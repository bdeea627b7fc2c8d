"""Pack, stage 1: the inputs.  Sources (paths, streams) become scanned
DICOM instances; files that are not DICOM are listed as skipped, broken
ones as invalid, byte-identical duplicates collapsed and conflicting ones
refused; preambles that could carry an executable are marked for zeroing."""
from __future__ import annotations

import os
import shutil
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from dicompack import fileset as fs
from dicompack.enums import ScanStatus
from dicompack.errors import DuplicateInstanceError, InvalidInputError, UsageError
from dicompack.options import PackOptions
from dicompack.output import private_tempdir
from dicompack.report import PackReport, Problem, Progress
from dicompack.scan import PREAMBLE_FOREIGN, PREAMBLE_TIFF, ScanResult, iter_source_files, scan_files


def preamble_stage(scans: list[ScanResult], options: PackOptions, report: PackReport) -> None:
    """Zero every preamble that is not a TIFF header (PS3.10 7.1 dual
    personality): the 128 bytes are free for applications, so an attacker
    can put an executable header there and the DICOM file still reads as
    DICOM (CVE-2019-11687).  Files written anew (File Meta repaired,
    de-identified, recompressed) get a zero preamble anyway.  Sources are
    counted in ``scan_inputs``; this marks the files actually copied."""
    copied = Counter(scan.preamble for scan in scans if not scan.needs_rewrite)
    for scan in scans:
        if scan.preamble == PREAMBLE_FOREIGN and not scan.needs_rewrite and not options.keep_preamble:
            scan.clear_preamble = True
    if copied[PREAMBLE_TIFF]:
        report.stages.setdefault("preamble", {})["tiff_kept"] = copied[PREAMBLE_TIFF]
    if options.keep_preamble and copied[PREAMBLE_FOREIGN]:
        report.stages.setdefault("preamble", {})["foreign_kept"] = copied[PREAMBLE_FOREIGN]


def source_paths(sources, stack: ExitStack) -> list:
    """Paths as given; binary streams and (name, stream) pairs are spooled
    into a private temporary folder first (scanning needs random access)."""
    if isinstance(sources, (str, os.PathLike)) or hasattr(sources, "read"):
        sources = [sources]
    paths, spool = [], None
    for n, src in enumerate(sources):
        if isinstance(src, (str, os.PathLike)):
            paths.append(src)
            continue
        name, stream = src if isinstance(src, tuple) else (getattr(src, "name", None), src)
        if not hasattr(stream, "read"):
            raise UsageError(f"source {n} is neither a path, a binary stream nor a (name, stream) pair")
        if spool is None:
            spool = stack.enter_context(private_tempdir("src"))
            paths.append(spool)
        with open(spool / f"{n:08d}", "wb") as f:
            shutil.copyfileobj(stream, f, 1 << 20)
    return paths


def scan_inputs(sources: list, report: PackReport, options: PackOptions, progress: Progress,
                 *, exclude: Path | None) -> list[ScanResult]:
    paths = [p for p in iter_source_files(sources) if not _inside(p, exclude)]
    progress("scan", 0, len(paths))
    scans = scan_files(paths, jobs=options.jobs, progress=lambda d, t: progress("scan", d, t))
    good = []
    for s in scans:
        if s.status == ScanStatus.DICOM:
            good.append(s)
        elif s.status == ScanStatus.SKIPPED:
            report.skipped.append(Problem(s.path, s.reason))
        else:
            report.invalid.append(Problem(s.path, s.reason))
    # Conflicting duplicates are resolved (and listed) before anything is
    # raised, so that one strict run names every invalid file and every
    # conflict.  With a transform stage to come, its problems are named with
    # these too (_leave_out_refused raises them all).
    dup = fs.resolve_duplicates(good, skip_invalid=True)
    report.duplicates_collapsed = [Problem(p, f"byte-identical to {same}") for p, same in dup.collapsed]
    report.invalid += [Problem(p, why) for p, why in dup.conflicts]
    transforming = good and (options.j2k is not None or options.deid is not None)
    if report.invalid and not options.skip_invalid and not transforming:
        _raise_invalid(report.invalid, conflicts=len(dup.conflicts))
    report.warnings += [Problem(s.path, note) for s in dup.kept for note in s.notes]
    if not dup.kept:
        raise InvalidInputError("no DICOM instances found in the input",
                                where=", ".join(str(s) for s in sources))
    report.fixes = [Problem(s.path, fix) for s in dup.kept for fix in s.fixes]
    _count_preambles(dup.kept, report, options)
    return dup.kept


def _raise_invalid(invalid: list[Problem], *, conflicts: int) -> None:
    """Strict mode: one error naming every refused file and every conflict."""
    problems = [(p.path, p.reason) for p in invalid]
    refused = len(problems) - conflicts
    if not refused:
        raise DuplicateInstanceError(f"{conflicts} conflicting duplicate instance(s)",
                                     where=problems[0][0], problems=problems)
    what = f"{refused} invalid input file(s)"
    if conflicts:
        what += f" and {conflicts} conflicting duplicate instance(s)"
    raise InvalidInputError(what, where=problems[0][0], problems=problems)


def _count_preambles(scans: list[ScanResult], report: PackReport, options: PackOptions) -> None:
    """Report the sources whose preamble is neither zeros nor a TIFF header:
    replaced by zeros (listed per file) unless --keep-preamble."""
    foreign = [s for s in scans if s.preamble == PREAMBLE_FOREIGN]
    if foreign and not options.keep_preamble:
        report.stages.setdefault("preamble", {})["sanitised"] = len(foreign)
        report.fixes += [Problem(s.path, "preamble is not zeros nor a TIFF header (a possible executable, "
                                         "CVE-2019-11687): replaced by zeros") for s in foreign]


def _inside(path: str, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
