"""Input scanning: find DICOM files by content, read only their headers.

A file is classified as
- ``dicom``: a complete Part 10 file, or a raw data set without preamble
  (accepted; it gets proper File Meta when written, noted as a fix);
- ``skipped``: not DICOM (README, JPEG, Thumbs.db) or an old DICOMDIR;
- ``invalid``: looks like DICOM but is truncated or unparsable.
Values are kept as raw bytes so that character sets survive untouched into
the DICOMDIR.  Scanning runs in a process pool over both cores.
"""
from __future__ import annotations

import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from . import dcmio
from .dcmio import (DEFLATED_LE, EXPLICIT_LITTLE, Encoding,
                    StructureError, Walker, decode_text)
from .records import record_type_for, wanted_tags

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
META_END = 0x00030000
# Elements of a File Meta group we need to judge it.
_META_REQUIRED = {0x00020001: "File Meta Information Version",
                  0x00020002: "Media Storage SOP Class UID",
                  0x00020003: "Media Storage SOP Instance UID",
                  0x00020010: "Transfer Syntax UID",
                  0x00020012: "Implementation Class UID"}


@dataclass(slots=True)
class ScanResult:
    path: str
    status: str                      # 'dicom' | 'skipped' | 'invalid'
    reason: str = ""
    size: int = 0
    transfer_syntax: str = ""
    has_preamble: bool = False
    dataset_offset: int = 0          # first byte of the data set in the file
    pixel_offset: int | None = None  # Pixel Data (or Float/Double Float) element header; not for deflated files
    pixel_end: int | None = None     # just past that element (incl. fragment delimiter)
    values: dict[int, bytes] = field(default_factory=dict)   # raw text values
    sequences: dict[int, bytes] = field(default_factory=dict)  # encoded SQ elements
    fixes: list[str] = field(default_factory=list)           # what writing must repair
    owned: bool = False              # a private temporary this run wrote: moved into place, not copied

    @property
    def sop_class(self) -> str:
        return self.text(SOP_CLASS_UID)

    @property
    def sop_instance(self) -> str:
        return self.text(SOP_INSTANCE_UID)

    def text(self, tag: int) -> str:
        raw = self.values.get(tag)
        return decode_text(raw) if raw else ""

    @property
    def needs_rewrite(self) -> bool:
        """True when the file cannot be copied byte for byte."""
        return bool(self.fixes)


def scan_file(path: str) -> ScanResult:
    """Classify one file and, for DICOM, extract what the File-set needs."""
    try:
        size = os.path.getsize(path)
        if size < 8:
            return ScanResult(path, "skipped", "not DICOM (too small)", size)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _scan_buffer(path, buf, size)
    except OSError as exc:
        return ScanResult(path, "invalid", f"cannot read: {exc.strerror or exc}")


def _scan_buffer(path: str, buf, size: int) -> ScanResult:
    if size >= 132 and buf[128:132] == b"DICM":
        try:
            return _scan_part10(path, buf, size)
        except (StructureError, struct.error, zlib.error, UnicodeError) as exc:
            return ScanResult(path, "invalid", f"truncated or corrupt: {exc}", size)
    return _scan_raw(path, buf, size)


def _scan_part10(path: str, buf, size: int) -> ScanResult:
    meta, dataset_offset = _read_meta(buf, 132)
    res = ScanResult(path, "dicom", size=size, has_preamble=True,
                     dataset_offset=dataset_offset)
    if decode_text(meta.get(0x00020002, b"")) == DICOMDIR_SOP_CLASS:
        return ScanResult(path, "skipped", "old DICOMDIR (the index is rebuilt from the files)", size)
    declared_ts = decode_text(meta.get(0x00020010, b""))
    _walk_dataset(res, buf, declared_ts)
    if res.status != "dicom":
        return res
    if not res.sop_instance or not res.sop_class:
        return ScanResult(path, "invalid", "no SOP Class/Instance UID in the data set", size)
    _judge_meta(res, meta, buf, dataset_offset)
    return res


def _scan_raw(path: str, buf, size: int) -> ScanResult:
    """A file without preamble: raw data set (or meta without preamble)."""
    group = struct.unpack_from("<H", buf, 0)[0]
    if group not in (0x0002, 0x0008):
        return ScanResult(path, "skipped", "not DICOM", size)
    res = ScanResult(path, "dicom", size=size)
    try:
        if group == 0x0002:
            meta, res.dataset_offset = _read_meta(buf, 0)
            declared = decode_text(meta.get(0x00020010, b""))
        else:
            meta, declared = {}, ""
        _walk_dataset(res, buf, declared)
    except (StructureError, struct.error, zlib.error, UnicodeError):
        return ScanResult(path, "skipped", "not DICOM (no valid data set)", size)
    if res.status != "dicom" or not res.sop_instance:
        return ScanResult(path, "skipped", "not DICOM (no SOP Instance UID)", size)
    res.fixes.append("raw data set without preamble: written as a Part 10 file")
    if meta:
        _judge_meta(res, meta, buf, res.dataset_offset)
    return res


def _read_meta(buf, start: int) -> tuple[dict[int, bytes], int]:
    walker = Walker(buf, EXPLICIT_LITTLE)
    meta: dict[int, bytes] = {}
    pos = start
    for el in walker.elements(start, stop_tag=META_END):
        if el.length == dcmio.UNDEFINED:
            raise StructureError("undefined length in File Meta")
        meta[el.tag] = bytes(buf[el.value_offset:el.end])
        pos = el.end
    return meta, pos


def _walk_dataset(res: ScanResult, buf, declared_ts: str) -> None:
    """Walk the data set with the declared encoding, or detect the real one."""
    candidates = [declared_ts] if declared_ts else []
    candidates += [t for t in (dcmio.EXPLICIT_LE, dcmio.IMPLICIT_LE) if t not in candidates]
    first_error: Exception | None = None
    for ts in candidates:
        try:
            _collect(res, buf, ts)
        except StructureError as exc:
            first_error = first_error or exc
            res.values.clear()
            res.sequences.clear()
            continue
        res.transfer_syntax = ts
        if declared_ts and ts != declared_ts:
            res.fixes.append(f"File Meta says Transfer Syntax {declared_ts} but the "
                             f"data set is encoded as {ts}")
        return
    res.status = "invalid"
    res.reason = f"truncated or corrupt: {first_error}"


def _collect(res: ScanResult, buf, ts: str) -> None:
    data, base = buf, res.dataset_offset
    if ts == DEFLATED_LE:
        # Deflated data sets are inflated in memory; they are small in practice
        # and are copied whole, so pixel offsets are not needed.
        data, base = zlib.decompress(bytes(buf[base:]), -zlib.MAX_WBITS), 0
    enc = Encoding.for_syntax(ts)
    walker = Walker(data, enc)
    wanted = _interned_tags()
    pixel_offset = None
    has_pixels = False
    first = True
    for el in walker.elements(base):
        if first and enc.explicit and el.vr not in dcmio.VALID_VRS:
            raise StructureError("not explicit VR")
        first = False
        tag = wanted.get(el.tag)
        if tag is not None:
            if el.vr == b"SQ" or el.length == dcmio.UNDEFINED:
                res.sequences[tag] = _encoded_sequence(res.path, data, el, enc)
            else:
                res.values[tag] = bytes(data[el.value_offset:el.end])
        if el.tag in dcmio.PIXEL_DATA_TAGS:
            has_pixels = True
            if ts != DEFLATED_LE:
                pixel_offset, res.pixel_end = el.header_offset, el.end
    if first:
        raise StructureError("empty data set")
    if not has_pixels and record_type_for(decode_text(res.values.get(SOP_CLASS_UID, b""))) == "IMAGE":
        # An image object must end with Pixel Data: one that stops at an
        # element boundary before it was cut short.
        raise StructureError("image object ends before its Pixel Data")
    res.pixel_offset = pixel_offset


@lru_cache(maxsize=1)
def _interned_tags() -> dict[int, int]:
    # One int object per tag shared by all results: 100,000 scans would
    # otherwise hold millions of equal ints as dict keys.
    return {tag: tag for tag in wanted_tags()}


def _encoded_sequence(path: str, data, el: dcmio.Element, enc: Encoding) -> bytes:
    """The sequence element in Explicit VR LE, for copying into a record."""
    if enc == EXPLICIT_LITTLE:
        return bytes(data[el.header_offset:el.end])
    return _reencode_with_pydicom(path, el.tag)


def _reencode_with_pydicom(path: str, tag: int) -> bytes:
    # Rare path (sequence keys of implicit VR or big endian files): let pydicom
    # convert the sequence, then encode it as Explicit VR Little Endian.
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    ds = dcmread(path, force=True, stop_before_pixels=True, specific_tags=[tag])
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_data_element(out, ds[tag])
    return out.getvalue()


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


# ---------------------------------------------------------------- sources

def iter_source_files(sources: Iterable[str | os.PathLike]) -> list[str]:
    """Every regular file under the given files/folders, in sorted order."""
    found: list[str] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found.extend(os.path.join(root, name) for name in sorted(files))
        elif p.is_file():
            found.append(str(p))
        else:
            from .errors import InvalidInputError
            raise InvalidInputError("no such file or folder", where=str(src))
    return sorted(dict.fromkeys(found))


def scan_files(paths: list[str], *, jobs: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[ScanResult]:
    """Scan many files, in parallel when there are enough of them."""
    jobs = jobs or os.cpu_count() or 1
    results: list[ScanResult] = []
    shared: dict[bytes, bytes] = {}
    if jobs == 1 or len(paths) < 1000:
        for p in paths:
            results.append(_share_values(scan_file(p), shared))
            if progress:
                progress(len(results), len(paths))
        return results
    from .parallel import process_pool
    with process_pool(jobs) as pool:
        for res in pool.map(scan_file, paths, chunksize=64):
            results.append(_share_values(res, shared))
            if progress and len(results) % 64 == 0:
                progress(len(results), len(paths))
    if progress:
        progress(len(results), len(paths))
    return results


def _share_values(res: ScanResult, shared: dict[bytes, bytes]) -> ScanResult:
    """Instances of one series repeat the same patient/study/series values;
    keeping one bytes object per distinct value keeps 100,000 scans small."""
    values = res.values
    for tag, value in values.items():
        values[tag] = shared.setdefault(value, value)
    return res


