"""The library API.  The CLI is a thin shell over exactly these calls."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dicompack.errors import (
    DicompackError,
    DuplicateInstanceError,
    InvalidInputError,
    StorageError,
    UsageError,
)
from dicompack.fileset import layout as fs
from dicompack.fileset import update as update_index
from dicompack.fileset.check import check_fileset
from dicompack.fileset.layout import validate_fileset_id
from dicompack.fileset.listing import list_index
from dicompack.fileset.profile import application_profile
from dicompack.fileset.records import (
    Record,
    walk_all,
)
from dicompack.output import atomic_directory, atomic_file, check_destination, private_tempdir
from dicompack.packing import writers as pkg
from dicompack.report import (
    CheckReport,
    DicomdirReport,
    ListReport,
    PackReport,
    Problem,
    Progress,
    ProgressCallback,
    UnpackReport,
    VerifyReport,
)
from dicompack.scan import ScanResult, iter_source_files, scan_files


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
    keep_preamble: bool = False      # keep non-TIFF preambles as they are (default: zeroed, CVE-2019-11687)
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
    validate_fileset_id(options.fileset_id)
    fmt = output_format(dest, options.format)
    pkg.entry_method("1.2.840.10008.1.2.1", options.zip_method)  # validate early
    stream = pkg.is_stream(dest) or str(dest) == "-"
    check_transport(fmt, stream=stream, per_file=options.per_file, protection=_protection(options),
                    recipients=bool(options.recipients))
    _check_key_material(options)
    started = time.monotonic()
    progress = Progress(options.progress)
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
        _preamble_stage(kept, options, report)
        _emit(dest, stream, fmt, fs.plan_layout(kept), report, options, progress)
    report.seconds = round(time.monotonic() - started, 3)
    report.files_per_second = round(report.instances / report.seconds, 1) if report.seconds else 0.0
    return report


def check_transport(fmt: str, *, stream: bool, per_file: bool, protection: list[str],
                    recipients: bool) -> None:
    """Refuse, before any work, option sets that would not protect what the
    caller asked to protect.  ``protection`` names the encryption/signing
    options given: for an output that is neither encrypted nor signed they
    would be dropped silently and the PHI sent in the clear."""
    secure = fmt == "secure" or per_file
    if protection and not secure:
        output = "stream" if stream else {"dir": "folder", "zip": "ZIP"}[fmt]
        raise UsageError(f"{', '.join(protection)} given, but a {output} output is "
                         "neither encrypted nor signed: write a secure package (-o NAME.p7m or --format "
                         "secure) or, for a folder, Secure DICOM Files (--per-file)")
    if secure and not recipients:
        raise UsageError("a secure package needs --recipient CERT and/or --password-file")
    if per_file and (fmt != "dir" or stream):
        raise UsageError("--per-file writes a folder of Secure DICOM Files: give a folder destination")
    if fmt == "dir" and stream:
        raise UsageError("a folder File-set cannot be written to a stream; use --format zip")


def _protection(options: PackOptions) -> list[str]:
    """The encryption/signing options of a library call, named as the CLI names them."""
    return [name for name, given in (("recipients", options.recipients), ("signer", options.signer is not None),
                                     ("aead", options.aead)) if given]


def _check_key_material(options: PackOptions) -> None:
    """The same checks the CLI makes with file names, for library callers."""
    from dicompack import keys
    from dicompack.container import cms_crypto as limits
    from dicompack.container.cms import CertRecipient, PasswordRecipient
    if len(options.recipients) > limits.MAX_RECIPIENTS:   # receivers refuse more (cms_crypto limits)
        raise UsageError(f"{len(options.recipients)} recipients: at most {limits.MAX_RECIPIENTS}")
    for r in options.recipients:
        if isinstance(r, CertRecipient):
            keys.check_recipient_certificate(r.cert, where=f"recipient {r.cert.subject.rfc4514_string()}")
        elif isinstance(r, PasswordRecipient):
            keys.check_new_password(r.password, where="package password")
            if not limits.MIN_PBKDF2_ITERATIONS <= r.iterations <= limits.MAX_PBKDF2_ITERATIONS:
                raise UsageError(f"PBKDF2 iterations must be {limits.MIN_PBKDF2_ITERATIONS:,} to "
                                 f"{limits.MAX_PBKDF2_ITERATIONS:,} (receivers refuse others)",
                                 where="--pbkdf2-iterations")
        else:
            raise UsageError(f"not a recipient: {type(r).__name__} (CertRecipient or PasswordRecipient)")
    for cert in options.reid_recipients:
        keys.check_recipient_certificate(cert, where=f"re-identification recipient "
                                                     f"{cert.subject.rfc4514_string()}")
    if options.signer is not None:
        keys.check_signer(options.signer.key, options.signer.cert,
                          where=f"signer {options.signer.cert.subject.rfc4514_string()}")


def _preamble_stage(scans: list[ScanResult], options: PackOptions, report: PackReport) -> None:
    """Zero every preamble that is not a TIFF header (PS3.10 7.1 dual
    personality): the 128 bytes are free for applications, so an attacker
    can put an executable header there and the DICOM file still reads as
    DICOM (CVE-2019-11687).  Files written anew (File Meta repaired,
    de-identified, recompressed) get a zero preamble anyway.  Sources are
    counted in ``_scan_inputs``; this marks the files actually copied."""
    from dicompack.scan import PREAMBLE_FOREIGN, PREAMBLE_TIFF
    copied = Counter(scan.preamble for scan in scans if not scan.needs_rewrite)
    for scan in scans:
        if scan.preamble == PREAMBLE_FOREIGN and not scan.needs_rewrite and not options.keep_preamble:
            scan.clear_preamble = True
    if copied[PREAMBLE_TIFF]:
        report.stages.setdefault("preamble", {})["tiff_kept"] = copied[PREAMBLE_TIFF]
    if options.keep_preamble and copied[PREAMBLE_FOREIGN]:
        report.stages.setdefault("preamble", {})["foreign_kept"] = copied[PREAMBLE_FOREIGN]


def _transform_stage(scans: list[ScanResult], options: PackOptions, stack: ExitStack,
                     progress: Progress, report: PackReport, *, stage_beside: Path | None) -> list[ScanResult]:
    """De-identify and/or recompress every instance into a private staging
    folder, in parallel; return the scans of the staged files.  For a folder
    output the staging folder is a (PID-tagged) sibling of the destination,
    so staged files are renamed into the File-set rather than copied."""
    from dicompack import transform as tf
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
        # Every instance runs, whatever others raise: one run names every problem.
        outcomes = workers.transform(scans, stage, spec, progress, tolerate=(DicompackError,))
    failed = Counter(o.stage for o in outcomes if o.error is not None)
    outcomes = _leave_out_refused(outcomes, options, report)
    if options.j2k is not None:
        report.stages["j2k"] = _j2k_summary(outcomes, options.j2k)
    if options.deid is not None:
        from dicompack.deid import table
        actions = Counter()
        for o in outcomes:
            actions.update(o.actions)
        report.stages["deid"] = {"profile": "PS3.15 E.1 Basic Application Level Confidentiality Profile",
                                 "table": table()["source"], "options": options.deid.enabled_columns(),
                                 "instances": len(outcomes), "refused": failed["de-identification"],
                                 "actions": dict(actions),
                                 "reidentifiable_by": len(options.reid_recipients)}
    return [o.scan for o in outcomes]


def _leave_out_refused(outcomes: list, options: PackOptions, report: PackReport) -> list:
    """Instances a transform stage could not take (burned-in policy, damaged
    Pixel Data, a header pydicom cannot read or write): each is named with
    its stage.  With --skip-invalid they are left out; without, the pack
    fails listing them all, with the input files the scan refused (kept for
    this moment so that one run shows every problem), under the error class
    of the earliest stage that failed (scan 3, de-identification 10, J2K 11)."""
    from dicompack.transform import STAGES
    failed = [o for o in outcomes if o.error is not None]
    for o in failed:
        if isinstance(o.error, StorageError):      # the disk, not an instance: nothing to leave out
            raise o.error
    kept = [o for o in outcomes if o.error is None]
    order = list(STAGES)
    failed.sort(key=lambda o: order.index(o.stage) if o.stage in order else len(order))
    if options.skip_invalid and kept:
        report.invalid += [Problem(o.path, o.problem) for o in failed]
        return kept
    problems = [o.failure for o in failed]
    earlier = [(p.path, p.reason) for p in report.invalid] if not options.skip_invalid else []
    if earlier:
        raise InvalidInputError(f"{len(earlier) + len(problems)} input file(s) cannot be packed",
                                where=earlier[0][0], problems=earlier + problems)
    if problems:
        first = failed[0].error
        raise type(first)(first.message, where=first.where, problems=problems)
    return kept


def _after_deid(uid: str, options: PackOptions) -> str:
    """A UID as it reads after de-identification (lossy maps key on it)."""
    if options.deid is None:
        return uid
    from dicompack.deid import Deidentifier
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
    if options.descriptor:
        if not Path(options.descriptor).is_file():
            raise UsageError("File-set Descriptor file not found", where=str(options.descriptor))
        layout.descriptor = Path(options.descriptor)
    package_uid = pkg.package_uid_for(layout, options.fileset_id)
    summary = _fileset_summary(report)
    with ExitStack() as stack:   # every volume is renamed into place only when all are written
        volumes, spool = [layout], None
        if options.split and not stream:
            volumes, spool = _split(stack, dest, fmt, layout, options, progress, package_uid, summary, report)
        fs.release_key_values(layout)
        for i, vol in enumerate(volumes, 1):
            volume = (i, len(volumes))
            target = dest if stream else fs.volume_name(dest, i, len(volumes))
            _refuse_unreceivable(fmt, len(vol.layout.leaves if spool else vol.leaves), options, target)
            report.volumes.append("<stream>" if stream else str(target))
            written = _emit_volume(stack, target, stream, fmt, vol, options, progress, package_uid,
                                   summary | {"volume_instances": len(vol.layout.leaves if spool else vol.leaves)},
                                   volume, report, spool=spool)
            if options.split and not stream and written > options.split:
                # The plan measured every volume; never hand over one that is too big.
                raise DicompackError(f"volume came to {written:,} bytes, over the volume size of "
                                     f"{options.split:,} (a dicompack bug: please report it)", where=str(target))
            report.bytes_written += written


# Receivers parse a volume's manifest only within ZipLimits.max_manifest_memory
# (about 115,000 entries): never write a package our own verify would refuse.
MAX_INSTANCES_PER_PACKAGE = 100_000


def _refuse_unreceivable(fmt: str, instances: int, options: PackOptions, target) -> None:
    if fmt != "dir" and not options.per_file and instances > MAX_INSTANCES_PER_PACKAGE:
        raise UsageError(f"{instances:,} instances in one package: receivers accept at most "
                         f"{MAX_INSTANCES_PER_PACKAGE:,} per ZIP or secure volume; use --split SIZE",
                         where=str(target))


def _split(stack: ExitStack, dest: Path, fmt: str, layout, options: PackOptions, progress: Progress,
           package_uid: str, summary: dict, report: PackReport):
    """--split: volumes of at most ``options.split`` bytes as written.

    ZIP and secure volumes: every instance is compressed once into a private
    spool, volumes are planned from the real compressed sizes (exact ZIP,
    DICOMDIR and manifest bytes; the CMS envelope bounded from the actual
    recipients and signer) and later assembled by copying compressed bytes.
    Folder volumes: file sizes, exactly.  Returns the volumes (ZipVolume,
    or Layout for folders) and the spool (None for folders)."""
    from dicompack.container.zip import EntrySpool
    sealed = (pkg.SecureSizer(list(options.recipients), options.signer, options.aead, options.legacy)
              if fmt == "secure" or options.per_file else None)
    spool = spooled = None
    if fmt != "dir":
        spool = stack.enter_context(EntrySpool(stack.enter_context(private_tempdir("spool")) / "entries"))
        spooled = pkg.spool_instances(layout, spool, options.zip_method, progress)

    def build(scans: list, volume: tuple[int, int]):
        vol = fs.plan_layout(scans)
        vol.descriptor = layout.descriptor
        vol_summary = summary | {"volume_instances": len(vol.leaves)}
        if fmt == "dir":
            return vol, pkg.folder_volume_size(vol, fileset_id=options.fileset_id, summary=vol_summary,
                                               package_uid=package_uid, volume=volume, sealed=sealed)
        prepared = pkg.prepare_zip_volume(vol, spooled, fileset_id=options.fileset_id, method=options.zip_method,
                                          summary=vol_summary, package_uid=package_uid, volume=volume)
        return prepared, sealed.bound(prepared.zip_size) if sealed else prepared.zip_size

    widest = 10 ** len(str(len(layout.leaves))) - 1     # the volume numbers are not known while planning
    cost = ((lambda scan: spooled[scan.path].info.compressed_size) if spooled is not None
            else pkg.instance_bytes)
    reserve = 0
    for _attempt in range(6):
        try:
            plan = fs.split_volumes(layout, options.split - reserve,
                                    lambda scans: build(scans, (widest, widest))[1], cost)
        except fs.VolumeTooSmall as small:
            raise UsageError(f"this instance needs {small.needed:,} bytes in a volume of its own, more than "
                             f"the volume size of {options.split:,} (--split)", where=small.scan.path) from None
        built = [build(scans, (i, len(plan.volumes))) for i, scans in enumerate(plan.volumes, 1)]
        # With the real volume numbers a deflated manifest may come out a few
        # bytes longer than planned: plan again with that much held back.
        if all(size <= options.split for _, size in built):
            break
        reserve = reserve * 4 or 256
    else:
        raise DicompackError("could not plan volumes within the volume size (a dicompack bug: please report it)",
                             where=str(dest))
    report.warnings += [Problem(str(dest), note) for note in plan.notes]
    return [vol for vol, _ in built], spool


def _emit_volume(stack: ExitStack, target, stream: bool, fmt: str, layout, options: PackOptions,
                 progress: Progress, package_uid: str, summary: dict, volume: tuple[int, int],
                 report: PackReport, spool=None) -> int:
    """Write one volume: ``layout`` is a Layout, or with ``spool`` (--split)
    a ZipVolume whose entries are copied from the spool."""
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
    if spool is not None:
        def write_zip_to(sink):
            return pkg.write_zip_volume(sink, layout, spool, progress)
    else:
        def write_zip_to(sink):
            return pkg.write_zip(sink, layout, progress=progress, **kwargs)
    if fmt == "secure":
        info, entries = pkg.write_secure(out, write_zip_to, recipients=list(options.recipients),
                                         signer=options.signer, aead=options.aead, legacy=options.legacy)
        report.stages["cms"] = {"content_encryption": info.content_encryption, "recipients": info.recipients,
                                "signed": info.signed, "digest": info.digest,
                                "profile": "PS3.15 D.1 Basic DICOM Media Security" if not options.aead
                                else "AES-GCM AuthEnvelopedData (outside PS3.15 D.1)"}
    else:
        entries = write_zip_to(out)
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
    from dicompack.scan import PREAMBLE_FOREIGN
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


def _summarize(report: PackReport, layout: fs.Layout) -> None:
    counts = Counter(r.type for r in walk_all(layout.roots))
    report.patients, report.studies, report.series = counts["PATIENT"], counts["STUDY"], counts["SERIES"]
    report.instances = len(layout.leaves)
    report.transfer_syntaxes = dict(Counter(leaf.transfer_syntax for leaf in layout.leaves))
    report.application_profile = application_profile(report.transfer_syntaxes)
    report.invented = [vars(i) for i in layout.invented]
    report.warnings += [Problem(p, w) for p, w in layout.warnings]   # after the scan's
    report.fixes += [Problem(p, what) for p, what in layout.fix_lines()]



# ---------------------------------------------------------------- dicomdir

@storage_errors
def build_dicomdir(root, *, fileset_id: str | None = None, update: bool = False,
                   jobs: int | None = None, progress: ProgressCallback | None = None) -> DicomdirReport:
    """(Re)build the DICOMDIR of an existing File-set from its files; with
    ``update`` keep its records and add the files it does not reference
    (see fileset.update)."""
    return update_index.build_dicomdir(root, fileset_id=fileset_id, update=update, jobs=jobs, progress=progress)


def merge_records(old: list[Record], new: list[Record]) -> list[Record]:
    """Add the records of ``new`` into ``old``, matching patients by Patient
    ID, studies by Study Instance UID and series by Series Instance UID."""
    return update_index.merge_records(old, new)


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
        from dicompack.receiving import sources as receive
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
        return list_index(root, str(path))


# ---------------------------------------------------------------- receiving

@dataclass(frozen=True)
class ReceiveOptions:
    """Keys and policies for verify/unpack.  Giving a key, a password or a
    trust anchor makes the receive policy strict: every package and volume
    must be encrypted and signed by a trusted signer, unless relaxed."""
    key: object = None               # recipient private key (RSA or EC)
    cert: object = None              # its certificate (selects the recipient info)
    password: bytes | None = None    # or the package password (PWRI)
    trust: tuple = ()                # trust anchors for the signer's chain
    allow_unsigned: bool = False     # accept DigestedData (integrity without origin)
    allow_plain: bool = False        # accept a plain (unencrypted, unsigned) ZIP although keys are given
    legacy: bool = False             # accept SHA-1 and weak PBKDF2 parameters chosen by old senders (openssl's PWRI)
    jobs: int | None = None
    limits: object = None            # container.zip.ZipLimits; None for the defaults
    progress: ProgressCallback | None = None


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


def _label(src) -> str:
    return "<stream>" if pkg.is_stream(src) else str(src)


@storage_errors
def verify(src, options: ReceiveOptions = ReceiveOptions()) -> VerifyReport:
    """Verify a package (ZIP, secure package, folder of Secure DICOM Files)
    or a File-set under the receive policy, without restoring anything."""
    from dicompack.receiving import sources as receive
    policy = receive.policy_for(options)
    with ExitStack() as stack:
        path = _as_path(src, stack)
        source = receive.open_source(path, _label(src), options, policy, stack, Path(tempfile.gettempdir()),
                                     Progress(options.progress))
        return source.report


def _staged_names(roots: list[Path], labels: list[str]):
    """A function naming a path under one of ``roots`` as the user knows
    it: "<package>: <entry>" (or "<package>" for the root itself)."""
    pairs = [(os.path.abspath(root), label) for root, label in zip(roots, labels)]

    def rename(where):
        if not where:
            return where
        text = os.path.abspath(str(where)) if os.path.isabs(str(where)) else str(where)
        for root, label in pairs:
            if text == root:
                return label
            if text.startswith(root + os.sep):
                return f"{label}: {Path(os.path.relpath(text, root)).as_posix()}"
        return where
    return rename


@storage_errors
def unpack(src, dest, options: ReceiveOptions = ReceiveOptions(), *, force: bool = False,
           rebuild: bool = False) -> UnpackReport:
    """Verify, then restore a package's File-set at ``dest`` atomically.

    ``src`` may be a list of volumes (NAME-1ofN ...): every one is verified
    under the receive policy, all must share one package UID and be
    complete, and are merged into one File-set (an instance two volumes
    carry with different bytes refuses the merge).  With ``rebuild`` a
    foreign ZIP (no DICOMDIR, DICOMDIR in a subfolder, non-conformant names)
    is turned into a conformant File-set instead; a dicompack manifest it
    carries must still match.
    """
    from dicompack.receiving import sources as receive
    sources = list(src) if isinstance(src, (list, tuple)) else [src]
    dest = Path(dest)

    def rebuild_into(roots: list[Path], target: Path, label: str) -> PackReport:
        # The roots are private staging folders: every path pack reports
        # under one is named "<package>: <entry>" instead.
        labels = [one for _, one in items] if len(items) == len(roots) else [label] * len(roots)
        rename = _staged_names(roots, labels)
        try:
            report = pack(roots, target, PackOptions(force=force, jobs=options.jobs, skip_invalid=rebuild,
                                                     progress=options.progress))
        except DicompackError as err:
            err.where = rename(err.where)
            err.problems = [(rename(where), what) for where, what in err.problems]
            raise
        for name in ("skipped", "invalid", "duplicates_collapsed", "fixes", "warnings"):
            for problem in getattr(report, name, []):
                problem.path = rename(problem.path)
        return report

    with ExitStack() as stack:
        items = [(_as_path(one, stack), _label(one)) for one in sources]
        return receive.unpack(items, dest, options, force=force, rebuild=rebuild, stack=stack,
                              rebuild_into=rebuild_into)


@storage_errors
def reidentify(src, dest, options: ReceiveOptions = ReceiveOptions(), *, force: bool = False) -> PackReport:
    """Restore the original values sealed by ``--reid-recipient`` in every
    instance of a package or File-set, and pack the result at ``dest``."""
    from dicompack.deid.reid import restore_file
    with ExitStack() as stack:
        path = _as_path(src, stack)
        work = stack.enter_context(private_tempdir("reid"))
        from dicompack.receiving import sources as receive
        unpacked = None
        folder = path if path.is_dir() else path.parent
        if receive.sniff(path) == "fileset" and not receive.is_secure_folder(folder):
            # A plain folder proves nothing about who sealed its payloads (anyone
            # holding the public certificate can): the receive policy of
            # verify/unpack applies, so it takes --allow-plain by name (and
            # then needs no --trust: there is no signer to trust).
            if not options.allow_plain:
                receive.policy_for(options).refuse_plain(_label(src))
            relaxed = "--allow-plain (plain folder: payloads not signed)"
            root = folder
        else:
            relaxed = " ".join(receive.policy_for(options).relaxed) or "none"
            root = unpacked = work / "unpacked"
            unpack(path, root, options)
        staged = work / "restored"
        staged.mkdir()
        scans = [s for s in scan_files(iter_source_files([root]), jobs=options.jobs) if s.status == "dicom"]
        if not scans:
            raise InvalidInputError("no DICOM instances to re-identify", where=str(src))
        for n, scan in enumerate(scans):
            # Name the instance as the user knows it, never by our private unpack folder.
            where = scan.path if unpacked is None else f"{src}:{Path(scan.path).relative_to(root).as_posix()}"
            restore_file(scan.path, staged / f"{n:08d}", key=options.key, cert=options.cert,
                         password=options.password, where=where)
        report = pack([staged], dest, PackOptions(force=force, jobs=options.jobs, progress=options.progress))
        report.stages["receive"] = {"relaxed": relaxed}
        return report
