"""Closed sets of values shared by options, reports and the CLI.

Each is a ``str`` enum: members compare equal to their value, so JSON
reports and CLI arguments keep the plain strings they always had, and the
type checker sees a closed set instead of ``str``.
"""
from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """``str(member)`` and f-strings give the value on every Python >= 3.10."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class OutputFormat(StrEnum):
    """What ``pack`` writes."""
    DIR = "dir"           # a File-set folder
    ZIP = "zip"           # PS3.12 Annex V ZIP
    SECURE = "secure"     # CMS secure package (PS3.15 D.1) around the ZIP


class ZipMethod(StrEnum):
    """How ZIP entries are stored."""
    AUTO = "auto"         # deflate native Pixel Data, store what is already compressed
    DEFLATE = "deflate"
    STORE = "store"
    ZSTD = "zstd"


class Severity(StrEnum):
    """Of a check finding: only errors make a report not ok."""
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class PackageKind(StrEnum):
    """What ``verify`` found at the path it was given."""
    ZIP = "zip"
    SECURE = "secure"
    FILESET = "fileset"
    SECURE_FILESET = "secure-fileset"   # a folder of Secure DICOM Files (PS3.10 7.4)


class ScanStatus(StrEnum):
    """What the scan made of one input file."""
    DICOM = "dicom"       # a DICOM instance to pack
    SKIPPED = "skipped"   # not DICOM, or a DICOMDIR (rebuilt, never copied)
    INVALID = "invalid"   # DICOM but unusable (truncated, no SOP Instance UID ...)
