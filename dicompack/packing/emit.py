"""Pack, stage 4: emit the planned File-set, as one output or as volumes
(--split), each written to a temporary sibling and renamed into place
only when every volume is complete."""
from __future__ import annotations

import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, cast

from dicompack import fileset as fs
from dicompack.errors import DicompackError, UsageError
from dicompack.fileset.profile import application_profile
from dicompack.fileset.records import walk_all
from dicompack.options import PackOptions
from dicompack.output import atomic_directory, atomic_file
from dicompack.packing import writers
from dicompack.packing.refusals import refuse_unreceivable
from dicompack.packing.volumes import plan_volumes, write_zip_volume
from dicompack.report import PackReport, Problem, Progress


def emit(dest, stream: bool, fmt: str, layout, report: PackReport, options: PackOptions,
          progress: Progress) -> None:
    _summarize(report, layout)
    if options.descriptor:
        if not Path(options.descriptor).is_file():
            raise UsageError("File-set Descriptor file not found", where=str(options.descriptor))
        layout.descriptor = Path(options.descriptor)
    package_uid = writers.package_uid_for(layout, options.fileset_id)
    summary = _fileset_summary(report)
    with ExitStack() as stack:   # every volume is renamed into place only when all are written
        volumes, spool = [layout], None
        if options.split and not stream:
            volumes, spool = plan_volumes(stack, dest, fmt, layout, options, progress, package_uid, summary, report,
                                          size=options.split)
        fs.release_key_values(layout)
        for i, vol in enumerate(volumes, 1):
            volume = (i, len(volumes))
            target = dest if stream else fs.volume_name(dest, i, len(volumes))
            refuse_unreceivable(fmt, len(vol.layout.leaves if spool else vol.leaves), options, target)
            report.volumes.append("<stream>" if stream else str(target))
            written = emit_volume(stack, target, stream, fmt, vol, options, progress, package_uid,
                                   summary | {"volume_instances": len(vol.layout.leaves if spool else vol.leaves)},
                                   volume, report, spool=spool)
            if options.split and not stream and written > options.split:
                # The plan measured every volume; never hand over one that is too big.
                raise DicompackError(f"volume came to {written:,} bytes, over the volume size of "
                                     f"{options.split:,} (a dicompack bug: please report it)", where=str(target))
            report.bytes_written += written


def emit_volume(stack: ExitStack, target, stream: bool, fmt: str, layout, options: PackOptions,
                 progress: Progress, package_uid: str, summary: dict, volume: tuple[int, int],
                 report: PackReport, spool=None) -> int:
    """Write one volume: ``layout`` is a Layout, or with ``spool`` (--split)
    a ZipVolume whose entries are copied from the spool."""
    if fmt == "dir":
        tmp = stack.enter_context(atomic_directory(target, force=options.force))
        written = writers.write_folder(tmp, layout, options.fileset_id, progress)
        if volume[1] > 1:
            written += writers.write_folder_manifest(tmp, package_uid=package_uid, summary=summary, volume=volume)
        if options.per_file:
            report.stages["cms"] = writers.secure_files_in_place(tmp, recipients=list(options.recipients),
                                                             signer=options.signer, aead=options.aead,
                                                             legacy=options.legacy, progress=progress)
            written = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        return written
    if stream:
        out = cast(BinaryIO, writers.CountingWriter(sys.stdout.buffer if str(target) == "-" else target))
    else:   # a real file: seekable, so ZIP local headers get patched in place
        out = stack.enter_context(atomic_file(target, force=options.force))
    if spool is not None:
        def write_zip_to(sink):
            return write_zip_volume(sink, layout, spool, progress)
    else:
        def write_zip_to(sink):
            return writers.write_zip(sink, layout, progress=progress, fileset_id=options.fileset_id,
                                     method=options.zip_method, summary=summary, package_uid=package_uid,
                                     volume=volume, level=options.zip_level, workers=options.jobs)
    if fmt == "secure":
        info, entries = writers.write_secure(out, write_zip_to, recipients=list(options.recipients),
                                         signer=options.signer, aead=options.aead, legacy=options.legacy)
        report.stages["cms"] = {"content_encryption": info.content_encryption, "recipients": info.recipients,
                                "signed": info.signed, "digest": info.digest,
                                "profile": "PS3.15 D.1 Basic DICOM Media Security" if not options.aead
                                else "AES-GCM AuthEnvelopedData (outside PS3.15 D.1)"}
    else:
        entries = write_zip_to(out)
    out.flush()
    written = cast(writers.CountingWriter, out).count if stream else out.tell()
    methods = Counter(e.method for e in entries) + Counter(report.stages.get("zip", {}).get("methods", {}))
    report.stages["zip"] = {"entries": report.stages.get("zip", {}).get("entries", 0) + len(entries) + 1,
                            "methods": dict(methods), "suggested_attachment_name": "DICOM.ZIP"}
    return written


def _fileset_summary(report: PackReport) -> dict:
    return {"fileset_id": report.fileset_id, "patients": report.patients, "studies": report.studies,
            "series": report.series, "instances": report.instances,
            "transfer_syntaxes": report.transfer_syntaxes,
            "application_profile": report.application_profile}


def _summarize(report: PackReport, layout: fs.Layout) -> None:
    counts = Counter(r.type for r in walk_all(layout.roots))
    report.patients, report.studies, report.series = counts["PATIENT"], counts["STUDY"], counts["SERIES"]
    report.instances = len(layout.leaves)
    report.transfer_syntaxes = dict(Counter(leaf.transfer_syntax for leaf in layout.leaves))
    report.application_profile = application_profile(report.transfer_syntaxes)
    report.invented = [vars(i) for i in layout.invented]
    report.warnings += [Problem(p, w) for p, w in layout.warnings]   # after the scan's
    report.fixes += [Problem(p, what) for p, what in layout.fix_lines()]
