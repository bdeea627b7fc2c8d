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
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from dicompack import dcmio
from dicompack.dcmio import (
    DEFLATED_LE,
    EXPLICIT_LITTLE,
    Encoding,
    LimitExceededError,
    StructureError,
    Walker,
    decode_text,
)
from dicompack.fileset.records import identity_problem, record_type_for, wanted_tags

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
    preamble: str = ""               # PREAMBLE_* kind of the 128-byte preamble ('' without one)
    clear_preamble: bool = False     # pack decided to write 128 zero bytes in its place
    has_pixels: bool = False         # a Pixel Data (or Float/Double Float) element is present
    element_count: int = 0           # top-level data set elements (a duplicate's completeness)
    lossy_compression: str = ""      # Lossy Image Compression (0028,2110): "00", "01" or absent
    notes: list[str] = field(default_factory=list)           # packed as is, but worth a warning

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


# The preamble's kinds.  PS3.10 7.1 leaves the 128 bytes to applications; the
# only use the standard names is a TIFF header (dual-personality files).
# Anything else may make the file run as something else: a PE executable
# whose header sits in the preamble is still a valid DICOM file (CVE-2019-11687).
PREAMBLE_ZERO, PREAMBLE_TIFF, PREAMBLE_FOREIGN = "zero", "tiff", "foreign"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def preamble_kind(head: bytes) -> str:
    """The kind of a 128-byte preamble: all zeros, a TIFF header, or foreign."""
    if not head.strip(b"\x00"):
        return PREAMBLE_ZERO
    return PREAMBLE_TIFF if head[:4] in _TIFF_MAGIC else PREAMBLE_FOREIGN


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
            return ScanResult(path, "invalid", structure_reason(exc, size), size)
    return _scan_raw(path, buf, size)


def _scan_part10(path: str, buf, size: int) -> ScanResult:
    meta, dataset_offset = _read_meta(buf, 132)
    res = ScanResult(path, "dicom", size=size, has_preamble=True,
                     dataset_offset=dataset_offset, preamble=preamble_kind(bytes(buf[:128])))
    if decode_text(meta.get(0x00020002, b"")) == DICOMDIR_SOP_CLASS:
        return ScanResult(path, "skipped", "old DICOMDIR (the index is rebuilt from the files)", size)
    declared_ts = decode_text(meta.get(0x00020010, b""))
    _walk_dataset(res, buf, declared_ts)
    if res.status != "dicom":
        return res
    if not res.sop_instance or not res.sop_class:
        missing = [name for name, value in (("SOP Class UID (0008,0016)", res.sop_class),
                                            ("SOP Instance UID (0008,0018)", res.sop_instance)) if not value]
        return ScanResult(path, "invalid", "no " + " and no ".join(missing) + " in the data set", size)
    if (problem := identity_problem(res.values)) is not None:
        return ScanResult(path, "invalid", problem, size)
    _judge_meta(res, meta, buf, dataset_offset)
    return res


def _scan_raw(path: str, buf, size: int) -> ScanResult:
    """A file without preamble: raw data set (or meta without preamble)."""
    group = struct.unpack_from("<H", buf, 0)[0]
    # Group 0002 (File Meta, always little endian) or 0008, the first group of
    # a raw data set, little or big endian (0x0800 read little endian).
    if group not in (0x0002, 0x0008, 0x0800):
        return ScanResult(path, "skipped", "not DICOM", size)
    res = ScanResult(path, "dicom", size=size)
    try:
        if group == 0x0002:
            meta, res.dataset_offset = _read_meta(buf, 0)
            declared = decode_text(meta.get(0x00020010, b""))
        else:
            meta, declared = {}, ""
        walked = _walk_dataset(res, buf, declared)
    except LimitExceededError as exc:
        # Past a safety limit is not "not DICOM": it is refused, and listed.
        return ScanResult(path, "invalid", f"refused: {exc}", size)
    except (StructureError, struct.error, zlib.error, UnicodeError):
        return ScanResult(path, "skipped", "not DICOM (no valid data set)", size)
    if res.status != "dicom":
        if walked:
            # It walked as DICOM and was refused for what it holds: listed, not skipped.
            return ScanResult(path, "invalid", res.reason, size)
        return ScanResult(path, "skipped", "not DICOM (no valid data set)", size)
    if not res.sop_instance:
        return ScanResult(path, "skipped", "not DICOM (no SOP Instance UID)", size)
    if (problem := identity_problem(res.values)) is not None:
        return ScanResult(path, "invalid", problem, size)
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


def _walk_dataset(res: ScanResult, buf, declared_ts: str) -> bool:
    """Walk the data set with the declared encoding, or detect the real one.

    Returns False when it walks in no encoding at all (for a raw file: not
    DICOM), True when it walked, or walked until refused for what it holds."""
    candidates = [declared_ts] if declared_ts else []
    if bytes(buf[res.dataset_offset:res.dataset_offset + 2]) == b"\x00\x08":
        # Group 0008 written big endian: an Explicit VR Big Endian data set
        # (the retired syntax; raw ones come without File Meta to say so).
        candidates.append(dcmio.EXPLICIT_BE)
    candidates += [t for t in (dcmio.EXPLICIT_LE, dcmio.IMPLICIT_LE) if t not in candidates]
    first_error: Exception | None = None
    for ts in candidates:
        try:
            _collect(res, buf, ts)
        except LimitExceededError as exc:
            # Another encoding would not make the file smaller or shallower.
            _forget_walk(res)
            res.status, res.reason = "invalid", f"refused: {exc}"
            return True
        except _NoFittingSyntax as exc:
            # The structure is sound in this encoding, the Pixel Data is not.
            _forget_walk(res)
            res.status, res.reason = "invalid", _no_fitting_syntax_reason(exc.ts, declared_ts)
            return True
        except _BrokenInItsEncoding as exc:
            # Elements walked in this encoding up to a defect no other
            # encoding explains: trying them would only cost time.
            _forget_walk(res)
            res.status, res.reason = "invalid", structure_reason(exc, res.size)
            return True
        except StructureError as exc:
            first_error = first_error or exc
            _forget_walk(res)
            continue
        res.transfer_syntax = ts
        if declared_ts and ts != declared_ts:
            res.fixes.append(f"File Meta says Transfer Syntax {declared_ts} but the "
                             f"data set is encoded as {ts}")
        return True
    res.status = "invalid"
    res.reason = structure_reason(first_error, res.size)
    return False


def _forget_walk(res: ScanResult) -> None:
    """Drop what a failed walk in one encoding collected."""
    res.values.clear()
    res.sequences.clear()
    res.notes.clear()
    res.lossy_compression = ""


_NATIVE_NAMES = {dcmio.IMPLICIT_LE: "Implicit VR Little Endian",
                 dcmio.EXPLICIT_LE: "Explicit VR Little Endian",
                 dcmio.EXPLICIT_BE: "Explicit VR Big Endian"}


def _no_fitting_syntax_reason(found: str, declared: str) -> str:
    what = f" (undefined length) in a data set encoded as {_NATIVE_NAMES[found]}"
    if declared and declared != found:
        what += f", not in the Explicit VR Little Endian the File Meta's Transfer Syntax {declared} needs"
    return f"corrupt: encapsulated Pixel Data{what}: no Transfer Syntax describes this file"



# Messages of dcmio.StructureError (and struct.error) raised only when a read
# needs bytes past the end of the buffer, i.e. of the file.
_CUT_SHORT_MARKERS = ("cut short", "runs past the end", "requires a buffer", "the file ends")
_NEEDS = re.compile(r"at byte (\d+) needs \d+ bytes, only (\d+) left")


def structure_reason(exc: BaseException | None, size: int | None = None) -> str:
    """The reason for a data set that does not walk: *truncated* when the
    file ends inside an element (a header, or a declared length that needs
    more bytes than the file has), otherwise *corrupt* (invalid VR, stray
    item, odd fragment, a length past its enclosing item...).  A file that
    ends exactly at an element boundary walks fine and is never truncated."""
    text = str(exc)
    needs = _NEEDS.search(text)
    if needs and size is not None:
        # "only K left" counts to the end of the enclosing item, or of the
        # file: it is the file when the value (after an 8 or 12 byte header)
        # starts K bytes before the end of the file.
        cut = size - int(needs[2]) - int(needs[1]) in (8, 12)
    else:
        cut = any(marker in text for marker in _CUT_SHORT_MARKERS)
    if cut:
        return f"truncated (the file ends inside an element): {text}"
    return f"corrupt: {text}"


def _collect(res: ScanResult, buf, ts: str) -> None:
    data, base = buf, res.dataset_offset
    if ts == DEFLATED_LE:
        # Deflated data sets are inflated in memory (bounded by inflate_limit);
        # they are small in practice and are copied whole, so pixel offsets
        # are not needed.
        data, base = inflate_dataset(buf, base), 0
    enc = Encoding.for_syntax(ts)
    walker = Walker(data, enc)
    wanted = _interned_tags()
    looked_at = _looked_at_tags()
    pixel_offset = None
    has_pixels = encapsulated = stray_meta = False
    count = 0
    for el in walker.elements(base):
        if not count and enc.explicit and el.vr not in dcmio.VALID_VRS:
            raise StructureError("not explicit VR")
        count += 1
        if not _TOP_LEVEL_TAGS_START <= el.tag < _ITEM_TAGS_START:   # rare: one test per element
            stray_meta = _odd_top_level_tag(res, el, stray_meta)
        kind = looked_at.get(el.tag)
        if kind is None:
            continue
        if kind is _KEY:
            tag = wanted[el.tag]
            if el.vr == b"SQ" or el.length == dcmio.UNDEFINED:
                res.sequences[tag] = _encoded_sequence(res.path, data, el, enc)
            else:
                res.values[tag] = bytes(data[el.value_offset:el.end])
        elif kind is _LOSSY:
            res.lossy_compression = decode_text(bytes(data[el.value_offset:el.end]))
        else:   # Pixel Data, Float or Double Float Pixel Data
            has_pixels = True
            if el.length == dcmio.UNDEFINED:
                encapsulated = True
                _check_fragments(walker, el)
            if ts != DEFLATED_LE:
                pixel_offset, res.pixel_end = el.header_offset, el.end
    if not count:
        raise StructureError("no data set element: the file ends with its File Meta")
    if encapsulated and ts in dcmio.NATIVE_SYNTAXES:
        raise _NoFittingSyntax(ts)
    if not has_pixels and record_type_for(decode_text(res.values.get(SOP_CLASS_UID, b""))) == "IMAGE":
        # Every element is complete (the walk ended exactly at the end of
        # the file), so this is a header-only instance, not a cut one: it is
        # packed as the sender has it, with a warning (spec/fileset.md).
        res.notes.append(HEADER_ONLY_NOTE)
    res.has_pixels, res.element_count = has_pixels, count
    res.pixel_offset = pixel_offset


LOSSY_IMAGE_COMPRESSION = 0x00282110
# Transfer Syntaxes whose Pixel Data is lossy (PS3.5 Table A-1 and PS3.6
# Table A-1, retired JPEG processes included), and those that may be either:
# JPEG 2000 (Part 1 and 2) and HTJ2K, lossless only when (0028,2110) says "00".
_LOSSY_SYNTAXES = frozenset(
    {f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 52, 53, 54, 55, 56, 58, 59, 60, 61, 62, 63, 64,
                                          81, 100, 101, 102, 103, 104, 105, 106, 107, 108,
                                          111, 112)})
_MAYBE_LOSSY_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93",
                                   "1.2.840.10008.1.2.4.203"})


def in_lossy_syntax(scan: ScanResult) -> bool:
    """True when the Pixel Data is stored in a lossy Transfer Syntax."""
    if scan.transfer_syntax in _LOSSY_SYNTAXES:
        return True
    return scan.transfer_syntax in _MAYBE_LOSSY_SYNTAXES and scan.lossy_compression != "00"


def is_lossy(scan: ScanResult) -> bool:
    """True when the instance's pixels went through lossy compression, by
    its Transfer Syntax or by its own Lossy Image Compression flag (which an
    uncompressed copy of a lossy image keeps, PS3.3 C.7.6.1.1.5)."""
    return scan.lossy_compression == "01" or in_lossy_syntax(scan)


HEADER_ONLY_NOTE = ("image instance without Pixel Data, every element complete (header only, or "
                    "cut exactly before its Pixel Data): packed as the sender has it; validators "
                    "such as dciodvfy report the missing Pixel Data")


class _BrokenInItsEncoding(StructureError):
    """A defect found after the data set walked in an encoding (a stray item,
    an odd fragment): the file is broken, not read in the wrong encoding."""


class _NoFittingSyntax(StructureError):
    """Encapsulated Pixel Data in a data set encoded in a native syntax: no
    Transfer Syntax describes the file, so it cannot be written correctly."""

    def __init__(self, ts: str):
        super().__init__(ts)
        self.ts = ts


def _check_fragments(walker: Walker, el: dcmio.Element) -> None:
    """PS3.5 A.4: every fragment of encapsulated Pixel Data has an even
    length.  An odd one (the walker accepts it) makes DCMTK lose its place,
    and the Basic Offset Table cannot point into the fragments correctly."""
    for item, start, end in walker.items(el.value_offset, el.end):
        if (end - start) % 2:
            raise _BrokenInItsEncoding(f"Pixel Data fragment at byte {item} has odd length {end - start} "
                                 f"(PS3.5 A.4 requires even lengths)")


# Deflated Explicit VR Little Endian (PS3.5 A.5): the inflated data set is held
# in memory to be walked, so its size is capped before it is inflated whole:
# at most DEFLATED_MAX_BYTES, and at most DEFLATED_MAX_RATIO times the
# compressed size beyond the first DEFLATED_RATIO_FLOOR bytes (a deflate bomb
# of zeros inflates ~1000x; real deflated objects, mostly SR and small
# images, a few times).  Everything we hand to pydicom later (de-identification
# reads a deflated file whole and holds about 7x its inflated size) has passed
# this cap, which keeps that under the 200 MB hostile-input bound.
DEFLATED_MAX_BYTES = 16 << 20
DEFLATED_MAX_RATIO = 200
DEFLATED_RATIO_FLOOR = 1 << 20
_INFLATE_INPUT_CHUNK = 1 << 16


def inflate_limit(compressed: int) -> int:
    """The most bytes a deflated data set of ``compressed`` bytes may inflate to."""
    return min(DEFLATED_MAX_BYTES, max(DEFLATED_RATIO_FLOOR, DEFLATED_MAX_RATIO * compressed))


def inflate_dataset(buf, start: int) -> bytearray:
    """Inflate the raw deflate stream at ``buf[start:]`` in bounded chunks.

    Raises LimitExceededError as soon as the output would pass
    ``inflate_limit``, and StructureError for a stream that is cut short.
    """
    compressed = len(buf) - start
    limit = inflate_limit(compressed)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    # One growing buffer (large reallocations move pages, they do not copy):
    # about the inflated size, not twice it as chunks joined at the end.
    out = bytearray()
    pos = start
    while not inflater.eof:
        if inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        elif pos < len(buf):
            data = bytes(buf[pos:pos + _INFLATE_INPUT_CHUNK])
            pos += len(data)
        else:
            raise StructureError("deflated data set is cut short")
        # max_length one past the limit: reaching it proves the limit is passed
        # without ever holding more than limit + 1 bytes.
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise LimitExceededError(
                f"deflated data set inflates to more than {limit:,} bytes from {compressed:,} "
                f"(dicompack's limit: {DEFLATED_MAX_BYTES:,} bytes, and {DEFLATED_MAX_RATIO}x the "
                f"compressed size beyond {DEFLATED_RATIO_FLOOR:,})")
    return out


# What _collect does with a top-level tag: a record key, the lossy flag, or pixels.
_KEY, _LOSSY, _PIXELS = "key", "lossy", "pixels"
_TOP_LEVEL_TAGS_START = 0x00030000   # below: File Meta (0002) or command (0000) groups
_ITEM_TAGS_START = 0xFFFE0000        # items and delimiters


@lru_cache(maxsize=1)
def _looked_at_tags() -> dict[int, str]:
    kinds = {tag: _KEY for tag in wanted_tags()}
    kinds[LOSSY_IMAGE_COMPRESSION] = _LOSSY
    kinds.update({tag: _PIXELS for tag in dcmio.PIXEL_DATA_TAGS})
    return kinds


def _odd_top_level_tag(res: ScanResult, el: dcmio.Element, stray_meta: bool) -> bool:
    """Judge a top-level tag outside the data set's range; True once the
    data set was found to repeat File Meta elements."""
    if el.tag >= _ITEM_TAGS_START:
        # The walker yields what it finds; an item or delimiter at the top
        # level means the sequence before it declared a wrong length.
        raise _BrokenInItsEncoding(f"item tag ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) outside any "
                             f"sequence at byte {el.header_offset} (the length of the "
                             f"sequence before it is wrong)")
    if el.tag >> 16 == 0x0002 and not stray_meta:
        res.notes.append("the data set repeats File Meta elements (group 0002; PS3.10 7.1 keeps "
                         "them out of it): packed as is")
    return stray_meta or el.tag >> 16 == 0x0002


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

    try:
        ds = dcmread(path, force=True, stop_before_pixels=True, specific_tags=[tag])
    except RecursionError:
        # Not expected (the walker capped the nesting first): still a typed outcome.
        raise LimitExceededError("sequences nested too deeply for the DICOM reader") from None
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
            from dicompack.errors import InvalidInputError
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
    from dicompack.parallel import worker_pool
    with worker_pool(jobs) as pool:
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


