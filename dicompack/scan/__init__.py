"""Input scanning: find DICOM files by content, read only their headers
(classify), walking each data set once (walk, inflate); many files in a
process pool over both cores (sources).  What the scan makes of a file is a
ScanResult (result)."""
from __future__ import annotations

from dicompack.scan.classify import scan_file
from dicompack.scan.inflate import DEFLATED_MAX_BYTES, DEFLATED_MAX_RATIO, DEFLATED_RATIO_FLOOR, inflate_limit
from dicompack.scan.result import (
    HEADER_ONLY_NOTE,
    LOSSY_IMAGE_COMPRESSION,
    PREAMBLE_FOREIGN,
    PREAMBLE_TIFF,
    PREAMBLE_ZERO,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    ScanResult,
    in_lossy_syntax,
    is_lossy,
    preamble_kind,
)
from dicompack.scan.sources import iter_source_files, scan_files
from dicompack.scan.walk import structure_reason

__all__ = [
    "DEFLATED_MAX_BYTES", "DEFLATED_MAX_RATIO", "DEFLATED_RATIO_FLOOR", "HEADER_ONLY_NOTE",
    "LOSSY_IMAGE_COMPRESSION", "PREAMBLE_FOREIGN", "PREAMBLE_TIFF", "PREAMBLE_ZERO",
    "SOP_CLASS_UID", "SOP_INSTANCE_UID", "ScanResult",
    "in_lossy_syntax", "inflate_limit", "is_lossy", "iter_source_files", "preamble_kind",
    "scan_file", "scan_files", "structure_reason",
]
