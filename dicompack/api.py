"""The library API.  The CLI is a thin shell over exactly these calls."""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import fileset as fs
from .check import check_fileset
from .dicomdir import read_dicomdir, write_dicomdir_file
from .errors import DeidentificationError, InvalidInputError, PackageInvalidError, StorageError, UsageError
from . import package as pkg
from .output import atomic_directory, atomic_file, check_destination, private_tempdir
from .records import (MODALITY, PATIENT_ID, PATIENT_NAME, SERIES_NUMBER,
                      SERIES_UID, STUDY_DATE, STUDY_DESCRIPTION, STUDY_UID,
                      Record, key_text, walk_all)
from .report import (CheckReport, DicomdirReport, ListReport, PackReport, UnpackReport, VerifyReport,
                     Problem, Progress, ProgressCallback)
from .scan import ScanResult, iter_source_files, scan_files

_FILESET_ID = re.compile(r"^[A-Z0-9_ ]{0,16}$")


@dataclass(frozen=True)
class PackOptions:
    fileset_id: str = ""
    format: str | None = None        # 'dir' | 'zip' | 'secure'; default from the destination's suffix
    zip_method: str = "auto"         # 'auto' (deflate native, store compressed) | 'deflate' | 'store' | 'zstd'
    split: int | None = None         # volume size in bytes: several complete File-sets NAME-1ofN
    recipients: tuple = ()           # container.cms.CertRecipient / PasswordRecipient (secure packages)
    signer: object = None            # container.cms.Signer; None -> DigestedData (integrity only)
    aead: bool = False               # AES-256-GCM AuthEnvelopedData (outside PS3.15 D.1)
    legacy: bool = False             # allow SHA-1 signatures (3DES is never written)
    j2k: object = None               # j2k.J2KOptions: recompress native Pixel Data to JPEG 2000
    deid: object = None              # deid.DeidOptions: de-identify every instance (PS3.15 E)
    reid_recipients: tuple = ()      # certificates that may re-identify (Encrypted Attributes Sequence)
    descriptor: Path | None = None   # File-set Descriptor file (text), stored as README
    per_file: bool = False           # folder output of Secure DICOM Files (PS3.10 7.4), DICOMDIR included
    skip_invalid: bool = False
    force: bool = False
    jobs: int | None = None
    progress: ProgressCallback | None = None


FORMATS = ("dir", "zip", "secure")


def output_format(dest, requested: str | None) -> str:
    """The package format: asked for, or from the destination's suffix."""
    if requested:
        if requested not in FORMATS:
            raise UsageError(f"unknown format {requested!r} (one of {', '.join(FORMATS)})")
        return requested
    if pkg.is_stream(dest) or str(dest) == "-":
        return "zip"
    suffix = Path(dest).suffix.lower()
    return {".zip": "zip", ".p7m": "secure"}.get(suffix, "dir")


def _validate_fileset_id(fileset_id: str) -> None:
    if not _FILESET_ID.match(fileset_id):
        raise UsageError("File-set ID must be at most 16 characters of A-Z 0-9 _ and space",
                         where=fileset_id)


def storage_errors(func):
    """Turn OS-level failures (disk full, vanished or unreadable file) into
    a StorageError naming the file, so callers see one error family."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise StorageError(exc.strerror or str(exc), where=exc.filename or "output") from None
    return wrapper


@storage_errors
def pack(sources, dest, options: PackOptions = PackOptions()) -> PackReport:
    """Build a standard File-set from ``sources`` and write it to ``dest``:
    a folder, a ZIP file, or any writable binary stream (non-seekable too)."""
    _validate_fileset_id(options.fileset_id)
    fmt = output_format(dest, options.format)
    pkg.entry_method("1.2.840.10008.1.2.1", options.zip_method)  # validate early
    started = time.monotonic()
    progress = Progress(options.progress)
    stream = pkg.is_stream(dest) or str(dest) == "-"
    label = "<stream>" if stream else str(dest)
    if not stream:
        dest = Path(dest)
        check_destination(dest, force=options.force)
    report = PackReport(output=label, format=fmt, fileset_id=options.fileset_id)
    with ExitStack() as stack:
        paths = _source_paths(sources, stack)
        kept = _scan_inputs(paths, report, options, progress, exclude=None if stream else dest)
        if options.j2k is not None or options.deid is not None:
            beside = dest.parent if fmt == "dir" and not stream else None
            kept = _transform_stage(kept, options, stack, progress, report, stage_beside=beside)
        _emit(dest, stream, fmt, fs.plan_layout(kept), report, options, progress)
    report.seconds = round(time.monotonic() - started, 3)
    report.files_per_second = round(report.instances / report.seconds, 1) if report.seconds else 0.0
    return report


def _transform_stage(scans: list[ScanResult], options: PackOptions, stack: ExitStack,
                     progress: Progress, report: PackReport, *, stage_beside: Path | None) -> list[ScanResult]:
    """De-identify and/or recompress every instance into a private staging
    folder, in parallel; return the scans of the staged files.  For a folder
    output the staging folder is a (PID-tagged) sibling of the destination,
    so staged files are renamed into the File-set rather than copied."""
    from . import transform as tf
    stage = str(stack.enter_context(private_tempdir("stage", stage_beside)))
    if options.reid_recipients and options.deid is None:
        raise UsageError("--reid-recipient goes with --deidentify")
    from cryptography.hazmat.primitives.serialization import Encoding
    reid_pem = tuple(c.public_bytes(Encoding.PEM) for c in options.reid_recipients)
    spec = tf.TransformSpec(j2k=options.j2k, deid=options.deid, reid_pem=reid_pem)
    with tf.Workers(options.jobs or os.cpu_count() or 1, len(scans)) as workers:
        if options.j2k is not None and options.j2k.lossy:
            lossy = [s.sop_instance for s, yes in zip(scans, workers.map(tf.lossy_candidate, scans, spec)) if yes]
            spec = tf.TransformSpec(j2k=options.j2k, deid=options.deid, reid_pem=reid_pem,
                                    lossy_uids=tuple((_after_deid(u, options), tf.lossy_uid(_after_deid(u, options)))
                                                     for u in lossy))
        outcomes = workers.transform(scans, stage, spec, progress, tolerate=(DeidentificationError,))
    outcomes = _leave_out_refused(outcomes, options, report)
    if options.j2k is not None:
        report.stages["j2k"] = _j2k_summary(outcomes, options.j2k)
    if options.deid is not None:
        from .deid import table
        actions = Counter()
        for o in outcomes:
            actions.update(o.actions)
        report.stages["deid"] = {"profile": "PS3.15 E.1 Basic Application Level Confidentiality Profile",
                                 "table": table()["source"], "options": options.deid.enabled_columns(),
                                 "instances": len(outcomes), "refused": len(scans) - len(outcomes),
                                 "actions": dict(actions),
                                 "reidentifiable_by": len(options.reid_recipients)}
    return [o.scan for o in outcomes]


def _leave_out_refused(outcomes: list, options: PackOptions, report: PackReport) -> list:
    """Instances de-identification refused (burned-in policy): all of them
    are named; the pack fails, or with --skip-invalid leaves them out."""
    refused = [(o.path, o.error.message) for o in outcomes if o.error is not None]
    if not refused:
        return outcomes
    kept = [o for o in outcomes if o.error is None]
    if not options.skip_invalid or not kept:
        raise DeidentificationError(refused[0][1], where=refused[0][0], problems=refused)
    report.invalid += [Problem(path, f"refused by de-identification: {why}") for path, why in refused]
    return kept


def _after_deid(uid: str, options: PackOptions) -> str:
    """A UID as it reads after de-identification (lossy maps key on it)."""
    if options.deid is None:
        return uid
    from .deid import Deidentifier
    return Deidentifier(options.deid).map_uid(uid)


def _j2k_summary(outcomes, options) -> dict:
    done = [o.j2k for o in outcomes if o.j2k]
    src = sum(d["source_bytes"] for d in done)
    enc = sum(d["encoded_bytes"] for d in done)
    psnrs = [d["psnr"] for d in done if d.get("psnr") is not None]
    return {"mode": options.mode, "value": options.value, "verified": options.verify and not options.lossy,
            "encoded_instances": len(done), "frames": sum(d["frames"] for d in done),
            "kept": dict(Counter(o.note for o in outcomes if not o.j2k)),
            "source_bytes": src, "encoded_bytes": enc, "ratio": round(src / enc, 3) if enc else None,
            "min_psnr": min(psnrs) if psnrs else None,
            "new_sop_instance_uids": sum(1 for o in outcomes if o.j2k and options.lossy)}


def _source_paths(sources, stack: ExitStack) -> list:
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


def _emit(dest, stream: bool, fmt: str, layout, report: PackReport, options: PackOptions,
          progress: Progress) -> None:
    _summarize(report, layout)
    if (fmt == "secure" or options.per_file) and not options.recipients:
        raise UsageError("a secure package needs --recipient CERT and/or --password-file")
    if options.per_file and fmt != "dir":
        raise UsageError("--per-file writes a folder of Secure DICOM Files: give a folder destination")
    if fmt == "dir" and stream:
        raise UsageError("a folder File-set cannot be written to a stream; use --format zip")
    volumes = [layout]
    if options.split and not stream:
        plan = fs.split_volumes(layout, options.split)
        volumes = [fs.plan_layout(v) for v in plan.volumes]
        report.warnings += [Problem(str(dest), note) for note in plan.notes]
    if options.descriptor:
        if not Path(options.descriptor).is_file():
            raise UsageError("File-set Descriptor file not found", where=str(options.descriptor))
        for vol in volumes:
            vol.descriptor = Path(options.descriptor)
    package_uid = pkg.package_uid_for(layout, options.fileset_id)
    summary = _fileset_summary(report)
    fs.release_key_values(layout)
    with ExitStack() as stack:   # every volume is renamed into place only when all are written
        for i, vol in enumerate(volumes, 1):
            volume = (i, len(volumes))
            target = dest if stream else fs.volume_name(dest, i, len(volumes))
            report.volumes.append("<stream>" if stream else str(target))
            report.bytes_written += _emit_volume(stack, target, stream, fmt, vol, options, progress,
                                                 package_uid, summary | {"volume_instances": len(vol.leaves)},
                                                 volume, report)


def _emit_volume(stack: ExitStack, target, stream: bool, fmt: str, layout, options: PackOptions,
                 progress: Progress, package_uid: str, summary: dict, volume: tuple[int, int],
                 report: PackReport) -> int:
    if fmt == "dir":
        tmp = stack.enter_context(atomic_directory(target, force=options.force))
        written = pkg.write_folder(tmp, layout, options.fileset_id, progress)
        if volume[1] > 1:
            written += pkg.write_folder_manifest(tmp, package_uid=package_uid, summary=summary, volume=volume)
        if options.per_file:
            report.stages["cms"] = pkg.secure_files_in_place(tmp, recipients=list(options.recipients),
                                                             signer=options.signer, aead=options.aead,
                                                             legacy=options.legacy, progress=progress)
            written = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        return written
    kwargs = dict(fileset_id=options.fileset_id, method=options.zip_method, summary=summary,
                  package_uid=package_uid, volume=volume)
    if stream:
        out = _CountingWriter(sys.stdout.buffer if str(target) == "-" else target)
    else:   # a real file: seekable, so ZIP local headers get patched in place
        out = stack.enter_context(atomic_file(target, force=options.force))
    if fmt == "secure":
        info, entries = pkg.write_secure(out, layout, recipients=list(options.recipients),
                                         signer=options.signer, aead=options.aead, legacy=options.legacy,
                                         zip_kwargs=kwargs, progress=progress)
        report.stages["cms"] = {"content_encryption": info.content_encryption, "recipients": info.recipients,
                                "signed": info.signed, "digest": info.digest,
                                "profile": "PS3.15 D.1 Basic DICOM Media Security" if not options.aead
                                else "AES-GCM AuthEnvelopedData (outside PS3.15 D.1)"}
    else:
        entries = pkg.write_zip(out, layout, progress=progress, **kwargs)
    out.flush()
    written = out.count if stream else out.tell()
    methods = Counter(e.method for e in entries) + Counter(report.stages.get("zip", {}).get("methods", {}))
    report.stages["zip"] = {"entries": report.stages.get("zip", {}).get("entries", 0) + len(entries) + 1,
                            "methods": dict(methods), "suggested_attachment_name": "DICOM.ZIP"}
    return written


class _CountingWriter:
    """Counts bytes on their way to a non-seekable stream."""

    def __init__(self, out):
        self.out, self.count = out, 0

    def write(self, data) -> int:
        self.out.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def _fileset_summary(report: PackReport) -> dict:
    return {"fileset_id": report.fileset_id, "patients": report.patients, "studies": report.studies,
            "series": report.series, "instances": report.instances,
            "transfer_syntaxes": report.transfer_syntaxes,
            "application_profile": report.application_profile}


def _scan_inputs(sources: list, report: PackReport, options: PackOptions, progress: Progress,
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


def _inside(path: str, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _summarize(report: PackReport, layout: fs.Layout) -> None:
    counts = Counter(r.type for r in walk_all(layout.roots))
    report.patients, report.studies, report.series = counts["PATIENT"], counts["STUDY"], counts["SERIES"]
    report.instances = len(layout.leaves)
    report.transfer_syntaxes = dict(Counter(leaf.transfer_syntax for leaf in layout.leaves))
    report.application_profile = application_profile(report.transfer_syntaxes)
    report.invented = [vars(i) for i in layout.invented]
    report.warnings = [Problem(p, w) for p, w in layout.warnings]


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

@storage_errors
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

@contextmanager
def fileset_root(path):
    """The root folder of a File-set given as a folder, its DICOMDIR, or a
    ZIP package (extracted into a private temporary folder meanwhile)."""
    path = Path(path)
    if path.is_file() and path.name.upper() == "DICOMDIR":
        yield path.parent
    elif path.is_dir():
        yield path
    elif path.is_file():
        from . import receive
        if receive.sniff(path) != "zip":
            raise UsageError("not a File-set folder, DICOMDIR or ZIP", where=str(path))
        with receive.staged_zip(path, Path(tempfile.gettempdir())) as (root, _result, _reader):
            yield root
    else:
        raise UsageError("no such file or folder", where=str(path))


@storage_errors
def check(path, *, jobs: int | None = None) -> CheckReport:
    """Validate a File-set (folder, its DICOMDIR, or a ZIP package)."""
    with fileset_root(path) as root:
        dd, findings, files = check_fileset(root, jobs=jobs)
    findings = [f for f in findings if f.where != "DICOMPACK.JSON"]
    report = CheckReport(path=str(path), findings=[f.to_dict() for f in findings], files=files)
    if dd is not None:
        report.fileset_id, report.records = dd.fileset_id, len(dd.records)
    return report


def list_fileset(path) -> ListReport:
    """Patients / studies / series of a File-set, from its DICOMDIR."""
    with fileset_root(path) as root:
        return _list(root, str(path))


def _list(root: Path, label: str) -> ListReport:
    dicomdir = root / "DICOMDIR"
    if not dicomdir.is_file():
        raise PackageInvalidError("no DICOMDIR at the File-set root", where=str(root))
    dd = read_dicomdir(dicomdir)
    report = ListReport(path=label, fileset_id=dd.fileset_id)
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


# ---------------------------------------------------------------- receiving

@dataclass(frozen=True)
class ReceiveOptions:
    """Keys and policies for verify/unpack."""
    key: object = None               # recipient private key (RSA or EC)
    cert: object = None              # its certificate (selects the recipient info)
    password: bytes | None = None    # or the package password (PWRI)
    trust: tuple = ()                # trust anchors for the signer's chain
    allow_unsigned: bool = False     # accept DigestedData (integrity without origin)
    jobs: int | None = None
    limits: object = None            # container.zip.ZipLimits; None for the defaults
    progress: ProgressCallback | None = None


def _open_package(path: Path, label: str, options: ReceiveOptions, stack: ExitStack,
                  progress: Progress) -> tuple[Path, dict]:
    """The ZIP inside a package: the file itself, or, for a secure package,
    its decrypted and fully verified content in a private spool (0600 in a
    0700 folder, removed on every path)."""
    from . import receive
    if receive.sniff(path) != "cms":
        return path, {}
    if options.key is None and options.password is None:
        raise UsageError("secure package: give --key/--cert, --p12 or --password-file", where=label)
    from .container.cms import open_secure_package
    folder = stack.enter_context(private_tempdir("spool"))
    spool = folder / "package.zip"
    fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    done = [0]

    def on_bytes(n: int) -> None:
        done[0] += n
        progress("verify", 0, 1, done[0])

    with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
        secure = open_secure_package(src, out, key=options.key, cert=options.cert, password=options.password,
                                     trust=list(options.trust), allow_unsigned=options.allow_unsigned,
                                     on_bytes=on_bytes)
    return spool, secure.to_dict()


def _as_path(src, stack) -> Path:
    """A readable stream is spooled to a private temporary file (ZIPs need seeking)."""
    if not pkg.is_stream(src):
        path = Path(src)
        if not path.exists():
            raise UsageError("no such file or folder", where=str(src))
        return path
    spool = stack.enter_context(private_tempdir("spool")) / "package"
    with open(spool, "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)
    return spool


def _zip_report(path: Path, result, label: str) -> VerifyReport:
    report = VerifyReport(path=label, kind="zip", entries=result.entries, fileset_id=result.fileset_id,
                          records=result.records, files=result.files,
                          findings=[f.to_dict() for f in result.findings])
    if result.manifest:
        report.package_uid = result.manifest.get("package_uid", "")
        report.volume = result.manifest.get("volume", {})
    return report


@storage_errors
def verify(src, options: ReceiveOptions = ReceiveOptions()) -> VerifyReport:
    """Verify a package (ZIP) or a File-set without restoring anything."""
    from . import receive
    progress = Progress(options.progress)
    with ExitStack() as stack:
        path = _as_path(src, stack)
        kind = receive.sniff(path)
        label = "<stream>" if pkg.is_stream(src) else str(src)
        if kind == "fileset":
            secure = {}
            if pkg.is_secure_fileset(path if path.is_dir() else path.parent):
                path, secure = _open_secure_fileset(path, options, stack)
            checked = check(path, jobs=options.jobs)
            return VerifyReport(path=label, kind="secure-fileset" if secure else "fileset",
                                fileset_id=checked.fileset_id, records=checked.records, files=checked.files,
                                findings=checked.findings, secure=secure)
        zip_path, secure = _open_package(path, label, options, stack, progress)
        parent = Path(tempfile.gettempdir())
        with receive.staged_zip(zip_path, parent, limits=_limits(options)) as (root, result, reader):
            receive.check_zip_contents(root, reader, result, progress, jobs=options.jobs)
            report = _zip_report(path, result, label)
            if secure:
                report.kind, report.secure = "secure", secure
            return report


def _limits(options: ReceiveOptions):
    from .container.zip import ZipLimits
    return options.limits or ZipLimits()


@storage_errors
def unpack(src, dest, options: ReceiveOptions = ReceiveOptions(), *, force: bool = False,
           rebuild: bool = False) -> UnpackReport:
    """Verify, then restore a package's File-set at ``dest`` atomically.

    ``src`` may be a list of volumes (NAME-1ofN ...): all are verified, must
    share one package UID and be complete, and are merged into one File-set.
    With ``rebuild`` a foreign ZIP (no DICOMDIR, DICOMDIR in a subfolder,
    non-conformant names) is turned into a conformant File-set instead.
    """
    from . import receive
    progress = Progress(options.progress)
    dest = Path(dest)
    check_destination(dest, force=force)
    parent = receive.require_parent(dest)
    sources = list(src) if isinstance(src, (list, tuple)) else [src]
    with ExitStack() as stack:
        staged = []
        for one in sources:
            path = _as_path(one, stack)
            label = "<stream>" if pkg.is_stream(one) else str(one)
            if receive.sniff(path) == "fileset":
                if not (path.is_dir() and pkg.is_secure_fileset(path)):
                    raise UsageError("unpack takes a ZIP, a secure package or a folder of Secure DICOM Files",
                                     where=label)
                return _unpack_secure_fileset(path, dest, label, options, stack, parent)
            # Secure packages are decrypted and verified (signature, chain)
            # into a private spool first: no byte reaches the target before.
            zip_path, secure = _open_package(path, label, options, stack, progress)
            root, result, reader = stack.enter_context(
                receive.staged_zip(zip_path, parent, limits=_limits(options)))
            if rebuild:
                return _rebuild([root], dest, label, force, options)
            receive.check_zip_contents(root, reader, result, progress, jobs=options.jobs)
            verified = _zip_report(path, result, label)
            if secure:
                verified.kind, verified.secure = "secure", secure
            errors = [f for f in verified.findings if f["severity"] == "error"]
            if errors:
                raise PackageInvalidError(errors[0]["what"], where=errors[0]["where"], findings=errors)
            staged.append((root, verified))
        if len(staged) > 1:
            _check_volume_set([v for _, v in staged])
            merged = _rebuild([r for r, _ in staged], dest, ", ".join(map(str, sources)), force, options)
            merged.rebuilt, merged.verify = False, {"volumes": [v.to_dict() for _, v in staged]}
            return merged
        root, verified = staged[0]
        progress("restore", 0, 1)
        receive.restore(root, dest)
        progress("restore", 1, 1)
        return UnpackReport(path=verified.path, output=str(dest), files=verified.files,
                            verify=verified.to_dict())


def _open_secure_fileset(root: Path, options: ReceiveOptions, stack: ExitStack,
                         parent: Path | None = None) -> tuple[Path, dict]:
    """Decrypt and verify every Secure DICOM File into a private folder."""
    if options.key is None and options.password is None:
        raise UsageError("Secure DICOM Files: give --key/--cert, --p12 or --password-file", where=str(root))
    work = stack.enter_context(private_tempdir("spool", parent))
    out = work / "fileset"
    secure = pkg.open_secure_fileset(root, out, key=options.key, cert=options.cert, password=options.password,
                                     trust=list(options.trust), allow_unsigned=options.allow_unsigned)
    return out, secure


def _unpack_secure_fileset(root: Path, dest: Path, label: str, options: ReceiveOptions, stack: ExitStack,
                           parent: Path) -> UnpackReport:
    from . import receive
    plain, secure = _open_secure_fileset(root, options, stack, parent)
    checked = check(plain, jobs=options.jobs)
    report = VerifyReport(path=label, kind="secure-fileset", fileset_id=checked.fileset_id,
                          records=checked.records, files=checked.files, findings=checked.findings, secure=secure)
    errors = [f for f in report.findings if f["severity"] == "error"]
    if errors:
        raise PackageInvalidError(errors[0]["what"], where=errors[0]["where"], findings=errors)
    receive.restore(plain, dest)
    return UnpackReport(path=label, output=str(dest), files=checked.files, verify=report.to_dict())


def _check_volume_set(reports: list[VerifyReport]) -> None:
    """Volumes of one package: same package UID, each index once, none missing."""
    first = reports[0]
    count = first.volume.get("count", 1)
    seen: dict[int, str] = {}
    for r in reports:
        if r.package_uid != first.package_uid or not r.package_uid:
            raise PackageInvalidError(f"volume of another package ({r.package_uid or 'no manifest'}, "
                                      f"expected {first.package_uid})", where=r.path)
        index = r.volume.get("index")
        if r.volume.get("count") != count or index in seen:
            raise PackageInvalidError(f"volume {index} of {r.volume.get('count')} does not fit the set "
                                      f"(already have {sorted(seen)} of {count})", where=r.path)
        seen[index] = r.path
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise PackageInvalidError(f"missing volume(s) {', '.join(map(str, missing))} of {count}",
                                  where=first.path)


def _rebuild(roots: list[Path], dest: Path, label: str, force: bool, options: ReceiveOptions) -> UnpackReport:
    """Pack whatever DICOM the extracted folders hold into one conformant File-set."""
    packed = pack(roots, dest, PackOptions(force=force, jobs=options.jobs, skip_invalid=True,
                                            progress=options.progress))
    return UnpackReport(path=label, output=str(dest), files=packed.instances, rebuilt=True,
                        verify={"pack": packed.to_dict()})


@storage_errors
def reidentify(src, dest, options: ReceiveOptions = ReceiveOptions(), *, force: bool = False) -> PackReport:
    """Restore the original values sealed by ``--reid-recipient`` in every
    instance of a package or File-set, and pack the result at ``dest``."""
    from pydicom import dcmread

    from .deid.reid import restore
    with ExitStack() as stack:
        path = _as_path(src, stack)
        work = stack.enter_context(private_tempdir("reid"))
        from . import receive
        if receive.sniff(path) == "fileset":
            root = path if path.is_dir() else path.parent
        else:
            root = work / "unpacked"
            unpack(path, root, options)
        staged = work / "restored"
        staged.mkdir()
        scans = [s for s in scan_files(iter_source_files([root]), jobs=options.jobs) if s.status == "dicom"]
        if not scans:
            raise InvalidInputError("no DICOM instances to re-identify", where=str(src))
        for n, scan in enumerate(scans):
            ds = dcmread(scan.path)
            restore(ds, key=options.key, cert=options.cert, password=options.password, where=scan.path)
            ds.save_as(staged / f"{n:08d}", enforce_file_format=True)
        return pack([staged], dest, PackOptions(force=force, jobs=options.jobs, progress=options.progress))
