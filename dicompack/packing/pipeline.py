"""Pack: scan -> transform -> layout -> emit, the whole pipeline."""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from dicompack import fileset as fs
from dicompack.fileset.layout import validate_fileset_id
from dicompack.options import PackOptions
from dicompack.output import check_destination
from dicompack.packing import writers
from dicompack.packing.emit import emit
from dicompack.packing.inputs import preamble_stage, scan_inputs, source_paths
from dicompack.packing.refusals import check_key_material, check_transport, output_format, protection_options
from dicompack.packing.stages import transform_stage
from dicompack.report import PackReport, Progress


def pack(sources, dest, options: PackOptions = PackOptions()) -> PackReport:
    """Build a standard File-set from ``sources`` and write it to ``dest``:
    a folder, a ZIP file, or any writable binary stream (non-seekable too)."""
    validate_fileset_id(options.fileset_id)
    fmt = output_format(dest, options.format)
    writers.parse_zip_method(options.zip_method)      # refused before any work
    stream = writers.is_stream(dest) or str(dest) == "-"
    check_transport(fmt, stream=stream, per_file=options.per_file, protection=protection_options(options),
                    recipients=bool(options.recipients))
    check_key_material(options)
    started = time.monotonic()
    progress = Progress(options.progress)
    label = "<stream>" if stream else str(dest)
    if not stream:
        dest = Path(dest)
        check_destination(dest, force=options.force)
    report = PackReport(output=label, format=fmt, fileset_id=options.fileset_id)
    with ExitStack() as stack:
        paths = source_paths(sources, stack)
        kept = scan_inputs(paths, report, options, progress, exclude=None if stream else dest)
        if options.j2k is not None or options.deid is not None:
            beside = dest.parent if fmt == "dir" and not stream else None
            kept = transform_stage(kept, options, stack, progress, report, stage_beside=beside)
        preamble_stage(kept, options, report)
        emit(dest, stream, fmt, fs.plan_layout(kept), report, options, progress)
    report.seconds = round(time.monotonic() - started, 3)
    report.files_per_second = round(report.instances / report.seconds, 1) if report.seconds else 0.0
    return report
