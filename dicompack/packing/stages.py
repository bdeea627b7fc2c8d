"""Pack, stage 2: de-identification and recompression of every instance,
in worker processes, into a private staging folder; summaries of what was
done for the report; instances a stage refused are left out (with
--skip-invalid) or named in one error."""
from __future__ import annotations

import os
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from dicompack.errors import DicompackError, InvalidInputError, StorageError, UsageError
from dicompack.options import PackOptions
from dicompack.output import private_tempdir
from dicompack.report import PackReport, Problem, Progress
from dicompack.scan import ScanResult


def transform_stage(scans: list[ScanResult], options: PackOptions, stack: ExitStack,
                     progress: Progress, report: PackReport, *, stage_beside: Path | None) -> list[ScanResult]:
    """De-identify and/or recompress every instance into a private staging
    folder, in parallel; return the scans of the staged files.  For a folder
    output the staging folder is a (PID-tagged) sibling of the destination,
    so staged files are renamed into the File-set rather than copied."""
    # start-up cost: pydicom, numpy, openjpeg and cryptography load only when a transform stage runs.
    from cryptography.hazmat.primitives.serialization import Encoding

    from dicompack import transform as tf
    from dicompack.deid import table
    stage = str(stack.enter_context(private_tempdir("stage", stage_beside)))
    if options.reid_recipients and options.deid is None:
        raise UsageError("--reid-recipient goes with --deidentify")
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
        actions: Counter[str] = Counter()
        for o in outcomes:
            actions.update(o.actions)
        report.stages["deid"] = {"profile": "PS3.15 E.1 Basic Application Level Confidentiality Profile",
                                 "table": table()["source"], "options": options.deid.enabled_columns(),
                                 "instances": len(outcomes), "refused": failed["de-identification"],
                                 "actions": dict(actions),
                                 "reidentifiable_by": len(options.reid_recipients)}
    # Every outcome left has no error, so a scan of its staged file.
    return [o.scan for o in outcomes if o.scan is not None]


def _leave_out_refused(outcomes: list, options: PackOptions, report: PackReport) -> list:
    """Instances a transform stage could not take (burned-in policy, damaged
    Pixel Data, a header pydicom cannot read or write): each is named with
    its stage.  With --skip-invalid they are left out; without, the pack
    fails listing them all, with the input files the scan refused (kept for
    this moment so that one run shows every problem), under the error class
    of the earliest stage that failed (scan 3, de-identification 10, J2K 11)."""
    failed = [o for o in outcomes if o.error is not None]
    for o in failed:
        if isinstance(o.error, StorageError):      # the disk, not an instance: nothing to leave out
            raise o.error
    kept = [o for o in outcomes if o.error is None]
    from dicompack.transform import STAGES  # start-up cost (see transform_stage)
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
    from dicompack.deid import Deidentifier  # start-up cost (see transform_stage)
    return Deidentifier(options.deid).map_uid(uid)


def _j2k_summary(outcomes, options) -> dict:
    done = [o.j2k for o in outcomes if o.j2k]
    src = sum(d["source_bytes"] for d in done)
    enc = sum(d["encoded_bytes"] for d in done)
    psnrs = [d["psnr"] for d in done if d.get("psnr") is not None]
    return {"codec": options.codec, "mode": options.mode, "value": options.value,
            "verified": options.verify and not options.lossy,
            "encoded_instances": len(done), "frames": sum(d["frames"] for d in done),
            "kept": dict(Counter(o.note for o in outcomes if not o.j2k)),
            "source_bytes": src, "encoded_bytes": enc, "ratio": round(src / enc, 3) if enc else None,
            "min_psnr": min(psnrs) if psnrs else None,
            "new_sop_instance_uids": sum(1 for o in outcomes if o.j2k and options.lossy)}
