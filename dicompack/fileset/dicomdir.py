"""DICOMDIR (PS3.3 Annex F Basic Directory IOD) encoder and decoder.

The encoder streams: a first pass computes every record's size and so its
byte offset (offsets count from the first byte of the preamble, PS3.10), the
second pass encodes again with the real offsets and writes.  Memory is the
record tree itself; nothing else grows with the number of records.

The decoder reads DICOMDIRs written by any tool (defined or undefined
lengths), keeps the byte offset of every item, and reports offset problems as
findings instead of failing, so ``check`` can point at each one.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dicompack._version import __version__
from dicompack.dcmio import (
    EXPLICIT_BE,
    EXPLICIT_LE,
    EXPLICIT_LITTLE,
    IMPLICIT_LE,
    IMPLICIT_LITTLE,
    LONG_VRS,
    UNDEFINED,
    VALID_VRS,
    Encoding,
    StructureError,
    Walker,
    decode_text,
    encode_element,
    encode_ul,
    encode_us,
)
from dicompack.errors import PackageInvalidError
from dicompack.fileset.records import Record

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# A UUID-derived UID (PS3.5 B.2), fixed for this implementation.
IMPLEMENTATION_CLASS_UID = "2.25.192075148665916019980262044239060793664"
IMPLEMENTATION_VERSION = ("DICOMPACK_" + __version__.replace(".", ""))[:16]

FILESET_ID = 0x00041130
DESCRIPTOR_FILE_ID = 0x00041141
DESCRIPTOR_CHARSET = 0x00041142
FIRST_ROOT, LAST_ROOT = 0x00041200, 0x00041202
CONSISTENCY = 0x00041212
RECORD_SEQUENCE = 0x00041220
NEXT, IN_USE, LOWER, RECORD_TYPE = 0x00041400, 0x00041410, 0x00041420, 0x00041430
FILE_ID, REF_CLASS, REF_INSTANCE, REF_TS = 0x00041500, 0x00041510, 0x00041511, 0x00041512
# Retired MRDR offset: meaningless once records move, so never carried over.
MRDR = 0x00041504
STRUCTURAL = frozenset({NEXT, IN_USE, LOWER, RECORD_TYPE, FILE_ID, REF_CLASS,
                        REF_INSTANCE, REF_TS, MRDR})


# ---------------------------------------------------------------- writing

def encode_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, 'DICM' and File Meta Information (PS3.10 7.1)."""
    body = b"".join([
        encode_element(0x00020001, b"OB", b"\x00\x01"),
        encode_element(0x00020002, b"UI", sop_class.encode()),
        encode_element(0x00020003, b"UI", sop_instance.encode()),
        encode_element(0x00020010, b"UI", transfer_syntax.encode()),
        encode_element(0x00020012, b"UI", IMPLEMENTATION_CLASS_UID.encode()),
        encode_element(0x00020013, b"SH", IMPLEMENTATION_VERSION.encode()),
    ])
    return b"\x00" * 128 + b"DICM" + encode_ul(0x00020000, len(body)) + body


def fileset_instance_uid(fileset_id: str, roots: list[Record]) -> str:
    """A deterministic SOP Instance UID: same File-set, same DICOMDIR bytes."""
    h = hashlib.sha256(b"dicompack-dicomdir\x00" + fileset_id.encode())
    for rec in _depth_first(roots):
        h.update(rec.sop_instance.encode() + b"\x00" + "\\".join(rec.file_id or ()).encode() + b"\x01")
    return "2.25." + str(int.from_bytes(h.digest()[:15], "big"))


def _record_body(rec: Record, next_offset: int, lower_offset: int) -> bytes:
    parts = [(NEXT, encode_ul(NEXT, next_offset)),
             (IN_USE, encode_us(IN_USE, 0xFFFF if rec.in_use else 0)),
             (LOWER, encode_ul(LOWER, lower_offset)),
             (RECORD_TYPE, encode_element(RECORD_TYPE, b"CS", rec.type.encode()))]
    if rec.file_id:
        parts += [(FILE_ID, encode_element(FILE_ID, b"CS", "\\".join(rec.file_id).encode())),
                  (REF_CLASS, encode_element(REF_CLASS, b"UI", rec.sop_class.encode())),
                  (REF_INSTANCE, encode_element(REF_INSTANCE, b"UI", rec.sop_instance.encode())),
                  (REF_TS, encode_element(REF_TS, b"UI", rec.transfer_syntax.encode()))]
    parts += list(rec.elements.items())
    parts.sort(key=lambda p: p[0])
    return b"".join(p[1] for p in parts)


def _item(body: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def _depth_first(records: list[Record]):
    for rec in records:
        yield rec
        yield from _depth_first(rec.children)


def _header(fileset_id: str, first: int, last: int, descriptor: tuple[str, ...] | None,
            descriptor_charset: str | None, seq_length: int) -> bytes:
    parts = [encode_element(FILESET_ID, b"CS", fileset_id.encode())]
    if descriptor:
        parts.append(encode_element(DESCRIPTOR_FILE_ID, b"CS", "\\".join(descriptor).encode()))
        if descriptor_charset:
            parts.append(encode_element(DESCRIPTOR_CHARSET, b"CS", descriptor_charset.encode()))
    parts += [encode_ul(FIRST_ROOT, first), encode_ul(LAST_ROOT, last),
              encode_us(CONSISTENCY, 0),
              struct.pack("<HH", 0x0004, 0x1220) + b"SQ\x00\x00" + struct.pack("<I", seq_length)]
    return b"".join(parts)


def write_dicomdir(out: BinaryIO, roots: list[Record], *, fileset_id: str = "",
                   descriptor: tuple[str, ...] | None = None,
                   descriptor_charset: str | None = None) -> int:
    """Write a complete DICOMDIR to ``out``; return the number of records."""
    if len(fileset_id) > 16:
        raise ValueError("File-set ID is limited to 16 characters")
    ordered = list(_depth_first(roots))
    meta = encode_meta(DICOMDIR_SOP_CLASS, fileset_instance_uid(fileset_id, roots),
                       "1.2.840.10008.1.2.1")
    # Pass 1: sizes give offsets; the header has a fixed size whatever the values.
    pos = len(meta) + len(_header(fileset_id, 0, 0, descriptor, descriptor_charset, 0))
    start = pos
    for rec in ordered:
        rec.offset = pos
        pos += 8 + len(_record_body(rec, 0, 0))
    seq_length = pos - start
    first = roots[0].offset if roots else 0
    last = roots[-1].offset if roots else 0
    out.write(meta)
    out.write(_header(fileset_id, first, last, descriptor, descriptor_charset, seq_length))
    # Pass 2: encode with real offsets, in the same order.
    _write_level(out, roots)
    return len(ordered)


def _write_level(out: BinaryIO, level: list[Record]) -> None:
    for i, rec in enumerate(level):
        next_offset = level[i + 1].offset if i + 1 < len(level) else 0
        lower = rec.children[0].offset if rec.children else 0
        out.write(_item(_record_body(rec, next_offset, lower)))
        _write_level(out, rec.children)


def write_dicomdir_file(path: str | os.PathLike, roots: list[Record], **kwargs) -> int:
    """Write atomically: a temporary sibling renamed over ``path``."""
    tmp = f"{path}.dicompack-tmp"
    try:
        with open(tmp, "wb") as f:
            n = write_dicomdir(f, roots, **kwargs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return n
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------- reading

@dataclass
class Finding:
    severity: str   # 'error' | 'warning' | 'info'
    where: str
    what: str

    def to_dict(self) -> dict:
        return {"severity": self.severity, "where": self.where, "what": self.what}

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.what}"


@dataclass
class DicomDir:
    fileset_id: str
    roots: list[Record]
    records: list[Record]              # every item, in file order
    consistency_flag: int
    descriptor: tuple[str, ...] | None
    transfer_syntax: str
    sop_class: str
    findings: list[Finding] = field(default_factory=list)
    # Records that reference a lower-level directory file (see read_index),
    # and the File IDs of the directory files that were read.
    directory_refs: set = field(default_factory=set)
    directory_files: list[str] = field(default_factory=list)
    # (File ID, reason) of the referenced directory files that could not be read.
    unread_directory_files: list[tuple[str, str]] = field(default_factory=list)
    # Bytes the records' packed keys hold (counted against MAX_DICOMDIR_KEY_BYTES).
    key_bytes: int = 0

    def unreachable(self) -> list[Record]:
        """In-use records that no offset leads to (or that sit below the
        depth cap): a listing or an update built from ``roots`` misses them."""
        reached = set()
        for rec in _iter_tree(self.roots):
            reached.add(rec)
        return [r for r in self.records
                if r.in_use and r not in reached and r not in self.directory_refs]


def _iter_tree(roots: list[Record]):
    """Every linked record, depth first, without recursion."""
    pending = list(reversed(roots))
    while pending:
        rec = pending.pop()
        yield rec
        pending += reversed(rec.children)


def read_dicomdir(path: str | os.PathLike, *, budget: int | None = None, base_depth: int = 0,
                  key_budget: int | None = None) -> DicomDir:
    """Parse a DICOMDIR file.  Raises PackageInvalidError when it cannot be
    parsed at all; offset problems become findings.

    ``budget`` (records left), ``key_budget`` (key bytes left) and
    ``base_depth`` (the level the file's root records sit at) let read_index
    share the caps across directory files."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 132:
                raise PackageInvalidError("DICOMDIR is too short to be a DICOM file", where=where)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, where, budget=budget, base_depth=base_depth, key_budget=key_budget)
    except OSError as exc:
        raise PackageInvalidError(f"cannot read DICOMDIR: {exc.strerror or exc}", where=where) from None


def parse_dicomdir_bytes(data: bytes, where: str = "DICOMDIR") -> DicomDir:
    if len(data) < 132:
        raise PackageInvalidError("DICOMDIR is too short to be a DICOM file", where=where)
    return _parse(data, where)


# Limits of the reader (spec/threat-model.md).  A DICOMDIR comes from whoever
# made the File-set: its record count and tree depth are capped before any
# record is built or walked.
# Records: each costs about 0.2 KB once read (0.6 KB with what `ls` builds);
# twice the 100,000-instance File-sets we test.  Counted in a first pass that
# builds nothing, so a DICOMDIR over the cap costs no memory.
MAX_DICOMDIR_RECORDS = 200_000
# The smallest item that can hold a record's Type 1 structure: Offset of the
# Next (12 bytes) and of the Lower-Level (12) Directory Entity, and a Record
# Type of at least 2 characters (10); an 8-byte empty item is no record.
MIN_RECORD_BYTES = 34
# PATIENT/STUDY/SERIES/IMAGE is 4 levels; private records may nest a little
# deeper.  Records below this depth are reached (for the reachability check)
# but not linked, so every walk over a read record tree is bounded.
MAX_RECORD_DEPTH = 16
# Offset problems listed one by one; a DICOMDIR where every record is broken
# gets this many and one line counting the rest.
MAX_LISTED_LINK_FINDINGS = 1_000
# The only header and File Meta values the reader uses (nothing else is copied).
_META_TAGS = frozenset({0x00020002, 0x00020010})
_HEADER_TAGS = frozenset({FILESET_ID, DESCRIPTOR_FILE_ID, FIRST_ROOT, CONSISTENCY})
# Old CDs carry DICOMDIRs in the other two native syntaxes.  PS3.10 8.6 and
# the PS3.11 media profiles require Explicit VR Little Endian: the reader
# accepts them (FSR role), reports an error finding for `check`, and every
# record is held in Explicit VR LE, so `dicomdir --update` writes it so.
_READABLE_SYNTAXES = {
    EXPLICIT_LE: EXPLICIT_LITTLE,
    IMPLICIT_LE: IMPLICIT_LITTLE,
    EXPLICIT_BE: Encoding(True, False),
}
_SYNTAX_NAMES = {IMPLICIT_LE: "Implicit VR Little Endian", EXPLICIT_BE: "Explicit VR Big Endian"}
_STRUCTURE_NAMES = ((NEXT, "Offset of the Next Directory Record (0004,1400)"),
                    (IN_USE, "Record In-use Flag (0004,1410)"),
                    (LOWER, "Offset of Referenced Lower-Level Directory Entity (0004,1420)"),
                    (RECORD_TYPE, "Directory Record Type (0004,1430)"))


def _parse(buf, where: str, *, budget: int | None = None, base_depth: int = 0,
           key_budget: int | None = None) -> DicomDir:
    if buf[128:132] != b"DICM":
        raise PackageInvalidError("DICOMDIR has no DICM prefix", where=where)
    found: list[Finding] = []
    try:
        meta, top, records = {}, {}, []
        keys = _KeyBudget(where, MAX_DICOMDIR_KEY_BYTES if key_budget is None else key_budget)
        has_sequence = False
        pos = 132
        # File Meta Information is Explicit VR LE whatever the data set's syntax.
        for el in Walker(buf, EXPLICIT_LITTLE).elements(132, stop_tag=0x00030000):
            if el.tag in _META_TAGS:
                meta[el.tag] = bytes(buf[el.value_offset:el.end])
            pos = el.end
        ts = decode_text(meta.get(0x00020010, b""))
        encoding = _READABLE_SYNTAXES.get(ts or EXPLICIT_LE)
        if encoding is None:
            raise PackageInvalidError(f"DICOMDIR Transfer Syntax is {ts}, PS3.10 requires "
                                      "Explicit VR Little Endian", where=where)
        if ts and ts != EXPLICIT_LE:
            found.append(Finding("error", "DICOMDIR", f"Transfer Syntax is {_SYNTAX_NAMES[ts]} ({ts}); "
                                 "PS3.10 requires Explicit VR Little Endian for the DICOMDIR (`dicompack dicomdir "
                                 "--update` rewrites it)"))
        walker = Walker(buf, encoding)
        # descend=False: the record items are walked below, once.
        for el in walker.elements(pos, descend=False):
            if el.tag == RECORD_SEQUENCE:
                has_sequence = True
                end = el.end - 8 if el.length == UNDEFINED else el.end
                _count_records(walker, el.value_offset, end, where, budget)
                shared: dict[str, str] = {}
                problems = _CappedFindings(found, MAX_LISTED_LINK_FINDINGS)
                records = [_parse_record(buf, walker, item_pos, start, stop, shared, problems, keys)
                           for item_pos, start, stop in _record_items(walker, el.value_offset, end, found)]
                problems.close("DICOMDIR")
            elif el.tag in _HEADER_TAGS:
                top[el.tag] = _value_le(walker, el)
    except (StructureError, struct.error) as exc:
        raise PackageInvalidError(f"DICOMDIR cannot be parsed: {exc}", where=where) from None
    dd = DicomDir(
        fileset_id=decode_text(top.get(FILESET_ID, b"")),
        roots=[], records=records,
        consistency_flag=_u16(top.get(CONSISTENCY)),
        descriptor=_split(top.get(DESCRIPTOR_FILE_ID)),
        transfer_syntax=ts, sop_class=decode_text(meta.get(0x00020002, b"")),
        findings=found, key_bytes=keys.used)
    if not has_sequence and not records and FIRST_ROOT not in top:
        raise PackageInvalidError("not a DICOMDIR: no Directory Record Sequence", where=where)
    _link(dd, _u32(top.get(FIRST_ROOT)), base_depth)
    return dd


def _record_items(walker: Walker, start: int, end: int, found: list[Finding]):
    """The record items of the Directory Record Sequence.  A record whose
    declared length runs past the sequence is read up to its end (pydicom and
    dcmdump do the same) and reported; its content must still end exactly
    there, element by element."""
    def overrun(pos: int, length: int, left: int) -> None:
        found.append(Finding("error", f"record at byte {pos}",
                             f"declares {length} bytes, only {left} are left in the "
                             "Directory Record Sequence (read up to its end)"))
    return walker.items(start, end, on_overrun=overrun)


def _count_records(walker: Walker, start: int, end: int, where: str, budget: int | None = None) -> int:
    """Count the record items, refusing a flood before any record is built:
    items too small to be records, or more than MAX_DICOMDIR_RECORDS (or the
    ``budget`` left when several directory files share the cap)."""
    cap = MAX_DICOMDIR_RECORDS if budget is None else budget
    count = 0
    for item_pos, content_start, content_end in _record_items(walker, start, end, []):
        if content_end - content_start < MIN_RECORD_BYTES:
            raise PackageInvalidError(
                f"directory record at byte {item_pos} is too small ({content_end - content_start} bytes) "
                f"to hold the Type 1 record structure (at least {MIN_RECORD_BYTES} bytes)", where=where)
        count += 1
        if count > cap:
            raise PackageInvalidError(f"more than {MAX_DICOMDIR_RECORDS:,} directory records "
                                      "(dicompack's limit)", where=where)
    return count


def _parse_record(buf, walker: Walker, item_pos: int, start: int, stop: int,
                  shared: dict[str, str], problems: _CappedFindings, keys: _KeyBudget) -> Record:
    rec = Record(type="")
    raw: dict[int, bytes] = {}
    native = walker.enc == EXPLICIT_LITTLE
    packed = _ElementPacker(keys.where, item_pos)
    # depth=1: the record's own elements sit inside the record sequence.
    for el in walker.elements(start, stop, depth=1):
        if el.tag in STRUCTURAL:
            raw[el.tag] = _value_le(walker, el)
            continue
        # Charged before the bytes are copied: a huge value costs nothing.
        keys.charge(el.end - el.header_offset, item_pos)
        if native:
            packed.add(el.tag, buf[el.header_offset:el.end])
        else:
            encoded = _as_explicit_le(walker, el, 1)
            keys.charge(len(encoded) - (el.end - el.header_offset), item_pos)
            packed.add(el.tag, encoded)
    rec.elements = packed.done()
    rec.offset = item_pos
    # Record types, SOP Classes, Transfer Syntaxes and File ID components
    # repeat across records: one str object each keeps a big DICOMDIR small.
    rec.type = _one(shared, decode_text(raw.get(RECORD_TYPE, b"")))
    rec.in_use = _u16(raw.get(IN_USE), 0xFFFF) != 0
    file_id = _split(raw.get(FILE_ID))
    rec.file_id = tuple(_one(shared, part) for part in file_id) if file_id else file_id
    rec.sop_class = _one(shared, decode_text(raw.get(REF_CLASS, b"")))
    rec.sop_instance = decode_text(raw.get(REF_INSTANCE, b""))
    rec.transfer_syntax = _one(shared, decode_text(raw.get(REF_TS, b"")))
    rec.next_offset = _u32(raw.get(NEXT))
    rec.lower_offset = _u32(raw.get(LOWER))
    missing = [name for tag, name in _STRUCTURE_NAMES if tag not in raw]
    if missing:
        # Read as 0 / in use (as pydicom does), so the tree can still be walked.
        problems.append(Finding("error", f"record at byte {item_pos} ({rec.type})",
                                "Type 1 " + ", ".join(missing) + " missing"))
    return rec


# The keys of a record (its non-structural elements) as read from a DICOMDIR.
# A dict of one bytes object per element costs ~135 bytes per element: a
# DICOMDIR at the record cap whose records carry 30 empty elements each
# (60 MB, 1 MB deflated) took 861 MB.  Packed, an element costs its encoded
# bytes plus 8 (its tag and end offset), and what all records keep together
# is capped by MAX_DICOMDIR_KEY_BYTES.
MAX_DICOMDIR_KEY_BYTES = 16 * 1024 * 1024
# Real records carry a few to a few dozen keys; the cap bounds the one dict a
# record is collected in before it is packed.
MAX_RECORD_ELEMENTS = 1_000
_PACKED_INDEX_BYTES = 8     # its tag and end offset


class _KeyBudget:
    """Counts the bytes the packed keys of one DICOMDIR hold; refuses the
    DICOMDIR (a typed error) past MAX_DICOMDIR_KEY_BYTES."""

    def __init__(self, where: str, cap: int):
        self.where, self.cap, self.used = where, cap, 0

    def charge(self, encoded_bytes: int, item_pos: int) -> None:
        self.used += encoded_bytes + _PACKED_INDEX_BYTES
        if self.used > self.cap:
            raise PackageInvalidError(
                f"directory records hold more than {MAX_DICOMDIR_KEY_BYTES // (1024 * 1024)} MiB of keys "
                f"(dicompack's limit; reached in the record at byte {item_pos})", where=self.where)


class PackedElements(Mapping):
    """A read record's keys: tag -> the element encoded in Explicit VR LE
    (read-only).  One bytes object holds them all: the element count, the
    tags, the end offsets, then the elements back to back; one object per
    record keeps a DICOMDIR at the record cap small.

    Lookups search the packed tags in C (``bytes.find``), so checking a
    record's keys stays fast whatever the number of records."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes):
        self._data = data

    @classmethod
    def pack(cls, elements: dict[int, bytes]) -> PackedElements:
        ends, size = [], 0
        for encoded in elements.values():
            size += len(encoded)
            ends.append(size)
        n = len(ends)
        return cls(struct.pack(f"<{1 + 2 * n}I", n, *elements, *ends) + b"".join(elements.values()))

    def __len__(self) -> int:
        return struct.unpack_from("<I", self._data)[0] if self._data else 0

    def _index(self, tag) -> int:
        n = len(self)
        if not n or not isinstance(tag, int) or not 0 <= tag <= 0xFFFFFFFF:
            return -1
        key, tags_end = struct.pack("<I", tag), 4 + 4 * n
        pos = self._data.find(key, 4, tags_end)
        while pos != -1 and pos % 4:          # only whole tags count
            pos = self._data.find(key, pos + 1, tags_end)
        return -1 if pos == -1 else pos // 4 - 1

    def _element(self, i: int) -> bytes:
        n = len(self)
        ends_at, blob_at = 4 + 4 * n, 4 + 8 * n
        start = struct.unpack_from("<I", self._data, ends_at + 4 * (i - 1))[0] if i else 0
        end = struct.unpack_from("<I", self._data, ends_at + 4 * i)[0]
        return self._data[blob_at + start:blob_at + end]

    def __getitem__(self, tag) -> bytes:
        i = self._index(tag)
        if i < 0:
            raise KeyError(tag)
        return self._element(i)

    def __contains__(self, tag) -> bool:
        return self._index(tag) >= 0

    def __iter__(self):
        n = len(self)
        return iter(struct.unpack_from(f"<{n}I", self._data, 4)) if n else iter(())

    def items(self):
        return [(tag, self._element(i)) for i, tag in enumerate(self)]

    def __repr__(self) -> str:
        return f"PackedElements({dict(self.items())!r})"


_NO_ELEMENTS = PackedElements(b"")


class _ElementPacker:
    """Collects a record's elements (a tag seen twice keeps its last
    element, as a dict would) and packs them into one PackedElements.
    The dict lives for one record only; MAX_RECORD_ELEMENTS bounds it."""

    def __init__(self, where: str, item_pos: int):
        self.where, self.item_pos = where, item_pos
        self.elements: dict[int, bytes] = {}

    def add(self, tag: int, encoded: bytes) -> None:
        self.elements[tag] = encoded
        if len(self.elements) > MAX_RECORD_ELEMENTS:
            raise PackageInvalidError(
                f"directory record at byte {self.item_pos} has more than {MAX_RECORD_ELEMENTS:,} "
                "elements (dicompack's limit)", where=self.where)

    def done(self) -> PackedElements:
        return PackedElements.pack(self.elements) if self.elements else _NO_ELEMENTS


# Bytes per value of the VRs whose values are numbers, for Big Endian.
_SWAP_WIDTH = {b"US": 2, b"SS": 2, b"OW": 2, b"AT": 2, b"UL": 4, b"SL": 4, b"FL": 4,
               b"OF": 4, b"OL": 4, b"FD": 8, b"OD": 8, b"SV": 8, b"UV": 8, b"OV": 8}


def _value_le(walker: Walker, el) -> bytes:
    """An element's value, with numbers in little endian order."""
    value = bytes(walker.buf[el.value_offset:el.end])
    width = _SWAP_WIDTH.get(el.vr)
    if walker.enc.little or not width or len(value) % width:
        return value
    return b"".join(value[i:i + width][::-1] for i in range(0, len(value), width))


def _as_explicit_le(walker: Walker, el, depth: int) -> bytes:
    """An element of an Implicit VR LE or Explicit VR BE record, encoded in
    Explicit VR LE (how records are held and written).  Nested sequences are
    converted item by item; the walker has already capped their depth."""
    vr = el.vr if el.vr in VALID_VRS else b"UN"
    # Implicit VR: an unknown (private) tag of undefined length is a sequence.
    if vr == b"SQ" or (el.length == UNDEFINED and not walker.enc.explicit):
        end = el.end - 8 if el.length == UNDEFINED else el.end
        items = []
        for _, start, stop in walker.items(el.value_offset, end, depth=depth + 1):
            items.append(_item(b"".join(_as_explicit_le(walker, sub, depth + 1)
                                        for sub in walker.elements(start, stop, depth=depth + 1))))
        return encode_element(el.tag, b"SQ", b"".join(items))
    value = _value_le(walker, el)
    if len(value) > 0xFFFF and vr not in LONG_VRS:
        vr = b"UN"   # PS3.5 6.2.2: a value too long for its VR's 16-bit length
    return encode_element(el.tag, vr, value)


def _one(shared: dict[str, str], text: str) -> str:
    return shared.setdefault(text, text)


# Children of records below MAX_RECORD_DEPTH: reached, never linked.
_DETACHED = Record(type="")


def _link(dd: DicomDir, first_root: int, base_depth: int = 0) -> None:
    """Follow offsets from the root; every hop must land on an item.

    Iterative (a pending stack of levels, popped in the order a recursive
    walk would visit them), with loop detection (``seen``) and the depth cap:
    a hostile DICOMDIR can neither exhaust the Python stack nor loop."""
    by_offset = {rec.offset: rec for rec in dd.records}
    seen: set[int] = set()
    reported_depth = False
    found = _CappedFindings(dd.findings, MAX_LISTED_LINK_FINDINGS)
    # (first offset of a level, where it was pointed at from, owner, level depth)
    pending: list[tuple[int, str, Record | None, int]] = []
    if dd.records:
        # base_depth: a lower-level directory file's roots sit below the
        # record that references it; the depth cap counts from the File-set root.
        pending.append((first_root, "File-set root (0004,1200)", None, base_depth + 1))
    while pending:
        offset, where, owner, depth = pending.pop()
        level = _chain(found, by_offset, seen, offset, where)
        if owner is None:
            dd.roots = level
        elif owner is not _DETACHED:
            owner.children = level
        for rec in reversed(level):
            if not rec.lower_offset:
                continue
            below = rec if owner is not _DETACHED and depth < MAX_RECORD_DEPTH else _DETACHED
            if below is _DETACHED and owner is not _DETACHED and not reported_depth:
                reported_depth = True
                found.append(Finding(
                    "error", f"record at byte {rec.offset} ({rec.type})",
                    f"records nested deeper than {MAX_RECORD_DEPTH} levels (dicompack's limit); "
                    "the levels below are not checked"))
            pending.append((rec.lower_offset, f"lower level of record at byte {rec.offset} ({rec.type})",
                            below, depth + 1))
    for rec in dd.records:
        if rec.offset not in seen and rec.in_use:
            found.append(Finding("error", f"record at byte {rec.offset} ({rec.type})",
                                 "is in use but no offset leads to it"))
    found.close("DICOMDIR")


class _CappedFindings:
    """Appends to ``findings`` up to ``cap`` entries; counts the rest and
    closes with one finding that says how many were not listed."""

    def __init__(self, findings: list[Finding], cap: int):
        self.findings, self.cap, self.listed, self.dropped = findings, cap, 0, 0

    def append(self, finding: Finding) -> None:
        if self.listed < self.cap:
            self.findings.append(finding)
            self.listed += 1
        else:
            self.dropped += 1

    def close(self, where: str) -> None:
        if self.dropped:
            self.findings.append(Finding("error", where, f"{self.dropped:,} more record problems "
                                                         f"not listed (at most {self.cap:,} are)"))


def _chain(found: _CappedFindings, by_offset: dict[int, Record], seen: set[int], offset: int,
           where: str) -> list[Record]:
    """The records of one level, following Next offsets from ``offset``."""
    level: list[Record] = []
    while offset:
        rec = by_offset.get(offset)
        if rec is None:
            found.append(Finding("error", where, f"offset {offset} does not land on a directory record"))
            break
        if offset in seen:
            found.append(Finding("error", where, f"offset {offset} loops back to an earlier record"))
            break
        seen.add(offset)
        level.append(rec)
        where = f"record at byte {offset} ({rec.type})"
        offset = rec.next_offset
    return level


def _u16(raw: bytes | None, default: int = 0) -> int:
    return struct.unpack("<H", raw[:2])[0] if raw and len(raw) >= 2 else default


def _u32(raw: bytes | None) -> int:
    return struct.unpack("<I", raw[:4])[0] if raw and len(raw) >= 4 else 0


def _split(raw: bytes | None) -> tuple[str, ...] | None:
    if not raw or not raw.strip(b" \x00"):
        return None
    return tuple(part.strip() for part in raw.rstrip(b" \x00").decode("latin-1").split("\\"))


# ---------------------------------------------------------------- lower-level directory files

# Some vendors (Philips CDs among them) split the index: a record of the
# DICOMDIR references, through its Referenced File ID, another file in the
# DICOMDIR format (Media Storage Directory Storage, often named DIRFILE) whose
# root records are that record's lower level.  PS3.10 allows one DICOMDIR per
# File-set, so `check` reports each such reference as an error, while `ls`
# and `dicomdir --update` follow them (FSR role) and `--update` writes one
# conformant DICOMDIR.  Limits: directory files read, how deep they may
# reference further directory files, and the record cap shared by all files.
MAX_DIRECTORY_FILES = 1_000
MAX_DIRECTORY_FILE_NESTING = 4
DIRECTORY_FILE_NAME = "DIRFILE"


def references_directory_file(rec: Record) -> bool:
    """Whether a record points at a lower-level directory file."""
    if not rec.in_use or not rec.file_id:
        return False
    return rec.sop_class == DICOMDIR_SOP_CLASS or (
        not rec.sop_class and rec.file_id[-1].upper() == DIRECTORY_FILE_NAME)


def read_index(root: str | os.PathLike, dicomdir: str | os.PathLike | None = None) -> DicomDir:
    """The DICOMDIR of the File-set at ``root`` (or the file ``dicomdir``),
    with the lower-level directory files its records reference read in.

    Raises PackageInvalidError when the DICOMDIR itself cannot be parsed; a
    directory file that cannot be read or followed is an error finding."""
    root = Path(root)
    path = Path(dicomdir) if dicomdir is not None else root / "DICOMDIR"
    dd = read_dicomdir(path)
    if any(references_directory_file(rec) for rec in dd.records):
        _DirectoryFiles(dd, root, path).follow()
    return dd


class _DirectoryFiles:
    """Reads the directory files referenced from ``dd`` into its tree:
    breadth first, each file once, every path inside the File-set root."""

    def __init__(self, dd: DicomDir, root: Path, top: Path):
        self.dd, self.root = dd, root
        self.real_root = os.path.realpath(root)
        self.visited = {os.path.realpath(top)}
        self.budget = MAX_DICOMDIR_RECORDS - len(dd.records)
        self.key_budget = MAX_DICOMDIR_KEY_BYTES - dd.key_bytes
        self.attempts = 0
        # The findings of all directory files share one cap.
        self.found = _CappedFindings(dd.findings, MAX_LISTED_LINK_FINDINGS)

    def follow(self) -> None:
        # (a level, the depth of its records, directory-file nesting)
        pending: deque[tuple[list[Record], int, int]] = deque([(self.dd.roots, 1, 0)])
        while pending:
            level, depth, nesting = pending.popleft()
            for rec in level:
                own = rec.children
                if own and depth < MAX_RECORD_DEPTH:
                    pending.append((own, depth + 1, nesting))
                if references_directory_file(rec) and rec not in self.dd.directory_refs:
                    self.dd.directory_refs.add(rec)
                    roots = self._read(rec, depth, nesting + 1)
                    rec.children = own + roots
                    pending.append((roots, depth + 1, nesting + 1))
        self.found.close("lower-level directory files")
        self._splice_pointers()

    def _read(self, rec: Record, depth: int, nesting: int) -> list[Record]:
        label = "/".join(rec.file_id)
        where = f"record at byte {rec.offset} ({rec.type})"
        self.attempts += 1
        if self.attempts > MAX_DIRECTORY_FILES:
            # One finding for all references past the cap: findings stay bounded.
            if self.attempts == MAX_DIRECTORY_FILES + 1:
                problem = f"more than {MAX_DIRECTORY_FILES:,} directory file references (dicompack's limit)"
                self.dd.findings.append(Finding("error", where, f"{label} and later ones not read: {problem}"))
                self.dd.unread_directory_files.append((label, problem))
            return []
        # Listed whatever the findings cap: at most MAX_DIRECTORY_FILES of each.
        self.dd.findings.append(Finding(
            "error", where, f"references the lower-level directory file {label}: PS3.10 allows one "
                            "DICOMDIR per File-set (`dicompack dicomdir --update` merges it in)"))
        problem, path = self._locate(rec.file_id)
        if problem is None and nesting > MAX_DIRECTORY_FILE_NESTING:
            problem = f"directory files nested more than {MAX_DIRECTORY_FILE_NESTING} deep (dicompack's limit)"
        if problem is None and depth >= MAX_RECORD_DEPTH:
            problem = f"records nested deeper than {MAX_RECORD_DEPTH} levels (dicompack's limit)"
        if problem is None:
            try:
                sub = read_dicomdir(path, budget=self.budget, base_depth=depth, key_budget=self.key_budget)
            except PackageInvalidError as exc:
                problem = exc.message
        if problem is not None:
            self.dd.findings.append(Finding("error", label, f"lower-level directory file not read: {problem}"))
            self.dd.unread_directory_files.append((label, problem))
            return []
        self.budget -= len(sub.records)
        self.key_budget -= sub.key_bytes
        self.dd.directory_files.append(label)
        for f in sub.findings:
            self.found.append(Finding(f.severity, f"{label}: {f.where}", f.what))
        self._anchor_file_ids(sub, rec.file_id[:-1])
        self.dd.records += sub.records
        return sub.roots

    def _locate(self, file_id: tuple[str, ...]) -> tuple[str | None, str]:
        """The path of a referenced directory file, refusing anything that
        could leave the File-set root (.., separators, symlinks out)."""
        if any(part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part for part in file_id):
            return "its File ID is not a relative path inside the File-set", ""
        path = os.path.join(self.root, *file_id)
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.real_root]) != self.real_root:
            return "it lies outside the File-set", ""
        if real in self.visited:
            return "it was already read (a loop between directory files)", ""
        if not os.path.isfile(real):
            return "no such file", ""
        self.visited.add(real)
        return None, real

    def _anchor_file_ids(self, sub: DicomDir, folder: tuple[str, ...]) -> None:
        """PS3.10 File IDs count from the File-set root; some vendors write
        them relative to the directory file's folder.  Such an ID is
        rewritten to count from the root when only that reading names a file."""
        if not folder:
            return
        for rec in sub.records:
            if not rec.file_id or any(part in ("", ".", "..") for part in rec.file_id):
                continue
            if (not os.path.isfile(os.path.join(self.root, *rec.file_id))
                    and os.path.isfile(os.path.join(self.root, *folder, *rec.file_id))):
                rec.file_id = folder + rec.file_id

    def _splice_pointers(self) -> None:
        """A PRIVATE record that points at a directory file stands for the
        records that file holds: they take its place in its level."""
        pending = [self.dd.roots]
        while pending:
            level = pending.pop()
            queue, spliced = deque(level), []
            while queue:
                rec = queue.popleft()
                if rec in self.dd.directory_refs and rec.type == "PRIVATE":
                    queue.extendleft(reversed(rec.children))
                else:
                    spliced.append(rec)
            level[:] = spliced
            pending += [rec.children for rec in level if rec.children]
