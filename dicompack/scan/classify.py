"""Input scanning: find DICOM files by content, read only their headers.

A file is classified as
- ``dicom``: a complete Part 10 file, or a raw data set without preamble
  (accepted; it gets proper File Meta when written, noted as a fix);
- ``skipped``: not DICOM (README, JPEG, Thumbs.db) or an old DICOMDIR;
- ``invalid``: looks like DICOM but is truncated or unparsable.
Values are kept as raw bytes so that character sets survive untouched into
the DICOMDIR.
"""
from __future__ import annotations

import mmap
import os
import struct
import zlib

from dicompack import dcmio
from dicompack.dcmio import EXPLICIT_LITTLE, LimitExceededError, StructureError, Walker, decode_text
from dicompack.enums import ScanStatus
from dicompack.fileset.records import identity_problem
from dicompack.scan.result import ScanResult, preamble_kind
from dicompack.scan.walk import _walk_dataset, structure_reason
from dicompack.standard import MEDIA_STORAGE_DIRECTORY_STORAGE

META_END = 0x00030000
# Elements of a File Meta group we need to judge it.
_META_REQUIRED = {0x00020001: "File Meta Information Version",
                  0x00020002: "Media Storage SOP Class UID",
                  0x00020003: "Media Storage SOP Instance UID",
                  0x00020010: "Transfer Syntax UID",
                  0x00020012: "Implementation Class UID"}

def scan_file(path: str) -> ScanResult:
    """Classify one file and, for DICOM, extract what the File-set needs."""
    try:
        size = os.path.getsize(path)
        if size < 8:
            return ScanResult(path, ScanStatus.SKIPPED, "not DICOM (too small)", size)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _scan_buffer(path, buf, size)
    except OSError as exc:
        return ScanResult(path, ScanStatus.INVALID, f"cannot read: {exc.strerror or exc}")


def _scan_buffer(path: str, buf, size: int) -> ScanResult:
    if size >= 132 and buf[128:132] == b"DICM":
        try:
            return _scan_part10(path, buf, size)
        except (StructureError, struct.error, zlib.error, UnicodeError) as exc:
            return ScanResult(path, ScanStatus.INVALID, structure_reason(exc, size), size)
    return _scan_raw(path, buf, size)


def _scan_part10(path: str, buf, size: int) -> ScanResult:
    meta, dataset_offset = _read_meta(buf, 132)
    res = ScanResult(path, ScanStatus.DICOM, size=size, has_preamble=True,
                     dataset_offset=dataset_offset, preamble=preamble_kind(bytes(buf[:128])))
    if decode_text(meta.get(0x00020002, b"")) == MEDIA_STORAGE_DIRECTORY_STORAGE:
        return ScanResult(path, ScanStatus.SKIPPED, "old DICOMDIR (the index is rebuilt from the files)", size)
    declared_ts = decode_text(meta.get(0x00020010, b""))
    _walk_dataset(res, buf, declared_ts)
    if res.status != ScanStatus.DICOM:
        return res
    if not res.sop_instance or not res.sop_class:
        missing = [name for name, value in (("SOP Class UID (0008,0016)", res.sop_class),
                                            ("SOP Instance UID (0008,0018)", res.sop_instance)) if not value]
        return ScanResult(path, ScanStatus.INVALID, "no " + " and no ".join(missing) + " in the data set", size)
    if (problem := identity_problem(res.values)) is not None:
        return ScanResult(path, ScanStatus.INVALID, problem, size)
    _judge_meta(res, meta, buf, dataset_offset)
    return res


def _scan_raw(path: str, buf, size: int) -> ScanResult:
    """A file without preamble: raw data set (or meta without preamble)."""
    group = struct.unpack_from("<H", buf, 0)[0]
    # Group 0002 (File Meta, always little endian) or 0008, the first group of
    # a raw data set, little or big endian (0x0800 read little endian).
    if group not in (0x0002, 0x0008, 0x0800):
        return ScanResult(path, ScanStatus.SKIPPED, "not DICOM", size)
    res = ScanResult(path, ScanStatus.DICOM, size=size)
    try:
        if group == 0x0002:
            meta, res.dataset_offset = _read_meta(buf, 0)
            declared = decode_text(meta.get(0x00020010, b""))
        else:
            meta, declared = {}, ""
        walked = _walk_dataset(res, buf, declared)
    except LimitExceededError as exc:
        # Past a safety limit is not "not DICOM": it is refused, and listed.
        return ScanResult(path, ScanStatus.INVALID, f"refused: {exc}", size)
    except (StructureError, struct.error, zlib.error, UnicodeError):
        return ScanResult(path, ScanStatus.SKIPPED, "not DICOM (no valid data set)", size)
    if res.status != ScanStatus.DICOM:
        if walked:
            # It walked as DICOM and was refused for what it holds: listed, not skipped.
            return ScanResult(path, ScanStatus.INVALID, res.reason, size)
        return ScanResult(path, ScanStatus.SKIPPED, "not DICOM (no valid data set)", size)
    if not res.sop_instance:
        return ScanResult(path, ScanStatus.SKIPPED, "not DICOM (no SOP Instance UID)", size)
    if (problem := identity_problem(res.values)) is not None:
        return ScanResult(path, ScanStatus.INVALID, problem, size)
    res.fixes.append("raw data set without preamble: written as a Part 10 file")
    if meta:
        _judge_meta(res, meta, buf, res.dataset_offset)
    return res


def _read_meta(buf, start: int) -> tuple[dict[int, bytes], int]:
    """The File Meta group at ``start``: its raw values, and where it ends.

    It ends before the first element outside group 0002 (a data set may
    begin with a lower group, e.g. private group 0001) or before a tag that
    does not ascend (a second File Meta group seen in the wild begins the
    data set: the first group, the one readers use, declares the encoding).
    """
    walker = Walker(buf, EXPLICIT_LITTLE)
    meta: dict[int, bytes] = {}
    pos, last = start, -1
    while pos + 4 <= len(buf):
        tag = walker.peek_tag(pos)
        if tag >> 16 != 0x0002 or tag <= last:
            break
        tag, _, length, value = walker.read_header(pos)
        if length == dcmio.UNDEFINED:
            raise StructureError("undefined length in File Meta")
        if value + length > len(buf):
            raise StructureError(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {pos} needs "
                                 f"{length} bytes, only {len(buf) - value} left")
        meta[tag] = bytes(buf[value:value + length])
        pos, last = value + length, tag
    return meta, pos


def _judge_meta(res: ScanResult, meta: dict[int, bytes], buf, dataset_offset: int) -> None:
    """Note every File Meta problem that writing must repair."""
    for tag, name in _META_REQUIRED.items():
        if tag not in meta:
            res.fixes.append(f"File Meta lacks {name}")
    if decode_text(meta.get(0x00020002, b"")) not in ("", res.sop_class):
        res.fixes.append("Media Storage SOP Class UID differs from SOP Class UID")
    if decode_text(meta.get(0x00020003, b"")) not in ("", res.sop_instance):
        res.fixes.append("Media Storage SOP Instance UID differs from SOP Instance UID")
    group_length = meta.get(0x00020000)
    meta_start = 132 if res.has_preamble else 0
    if group_length is None:
        res.fixes.append("File Meta lacks its group length")
    elif len(group_length) == 4:
        first_after = meta_start + 12  # the group length element itself
        if struct.unpack("<I", group_length)[0] != dataset_offset - first_after:
            res.fixes.append("File Meta group length is wrong")
