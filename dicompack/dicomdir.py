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
from dataclasses import dataclass, field
from typing import BinaryIO

from . import __version__
from .dcmio import (EXPLICIT_LITTLE, UNDEFINED, StructureError, Walker,
                    decode_text, encode_element, encode_ul, encode_us)
from .errors import PackageInvalidError
from .records import Record

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


def read_dicomdir(path: str | os.PathLike) -> DicomDir:
    """Parse a DICOMDIR file.  Raises PackageInvalidError when it cannot be
    parsed at all; offset problems become findings."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 132:
                raise PackageInvalidError("DICOMDIR is too short to be a DICOM file", where=where)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, where)
    except OSError as exc:
        raise PackageInvalidError(f"cannot read DICOMDIR: {exc.strerror or exc}", where=where) from None


def parse_dicomdir_bytes(data: bytes, where: str = "DICOMDIR") -> DicomDir:
    if len(data) < 132:
        raise PackageInvalidError("DICOMDIR is too short to be a DICOM file", where=where)
    return _parse(data, where)


def _parse(buf, where: str) -> DicomDir:
    if buf[128:132] != b"DICM":
        raise PackageInvalidError("DICOMDIR has no DICM prefix", where=where)
    walker = Walker(buf, EXPLICIT_LITTLE)
    try:
        meta, top, records = {}, {}, []
        pos = 132
        for el in walker.elements(132, stop_tag=0x00030000):
            meta[el.tag] = bytes(buf[el.value_offset:el.end])
            pos = el.end
        ts = decode_text(meta.get(0x00020010, b""))
        if ts and ts != "1.2.840.10008.1.2.1":
            raise PackageInvalidError(f"DICOMDIR Transfer Syntax is {ts}, PS3.10 requires "
                                      "Explicit VR Little Endian", where=where)
        for el in walker.elements(pos):
            if el.tag == RECORD_SEQUENCE:
                end = el.end - 8 if el.length == UNDEFINED else el.end
                records = [_parse_record(buf, walker, item_pos, start, stop)
                           for item_pos, start, stop in walker.items(el.value_offset, end)]
            else:
                top[el.tag] = bytes(buf[el.value_offset:el.end])
    except (StructureError, struct.error) as exc:
        raise PackageInvalidError(f"DICOMDIR cannot be parsed: {exc}", where=where) from None
    dd = DicomDir(
        fileset_id=decode_text(top.get(FILESET_ID, b"")),
        roots=[], records=records,
        consistency_flag=_u16(top.get(CONSISTENCY)),
        descriptor=_split(top.get(DESCRIPTOR_FILE_ID)),
        transfer_syntax=ts, sop_class=decode_text(meta.get(0x00020002, b"")))
    if RECORD_SEQUENCE not in top and not records and FIRST_ROOT not in top:
        raise PackageInvalidError("not a DICOMDIR: no Directory Record Sequence", where=where)
    _link(dd, _u32(top.get(FIRST_ROOT)))
    return dd


def _parse_record(buf, walker: Walker, item_pos: int, start: int, stop: int) -> Record:
    rec = Record(type="")
    raw: dict[int, bytes] = {}
    for el in walker.elements(start, stop):
        if el.tag in STRUCTURAL:
            raw[el.tag] = bytes(buf[el.value_offset:el.end])
        else:
            rec.elements[el.tag] = bytes(buf[el.header_offset:el.end])
    rec.offset = item_pos
    rec.type = decode_text(raw.get(RECORD_TYPE, b""))
    rec.in_use = _u16(raw.get(IN_USE), 0xFFFF) != 0
    rec.file_id = _split(raw.get(FILE_ID))
    rec.sop_class = decode_text(raw.get(REF_CLASS, b""))
    rec.sop_instance = decode_text(raw.get(REF_INSTANCE, b""))
    rec.transfer_syntax = decode_text(raw.get(REF_TS, b""))
    rec.next_offset = _u32(raw.get(NEXT))
    rec.lower_offset = _u32(raw.get(LOWER))
    return rec


def _link(dd: DicomDir, first_root: int) -> None:
    """Follow offsets from the root; every hop must land on an item."""
    by_offset = {rec.offset: rec for rec in dd.records}
    seen: set[int] = set()

    def chain(offset: int, where: str) -> list[Record]:
        level: list[Record] = []
        while offset:
            rec = by_offset.get(offset)
            if rec is None:
                dd.findings.append(Finding("error", where, f"offset {offset} does not land on a directory record"))
                break
            if offset in seen:
                dd.findings.append(Finding("error", where, f"offset {offset} loops back to an earlier record"))
                break
            seen.add(offset)
            level.append(rec)
            where = f"record at byte {offset} ({rec.type})"
            offset = rec.next_offset
        for rec in level:
            rec.children = chain(rec.lower_offset, f"lower level of record at byte {rec.offset} ({rec.type})")
        return level

    dd.roots = chain(first_root, "File-set root (0004,1200)") if dd.records else []
    for rec in dd.records:
        if rec.offset not in seen and rec.in_use:
            dd.findings.append(Finding("error", f"record at byte {rec.offset} ({rec.type})",
                                       "is in use but no offset leads to it"))
    dd.roots = [r for r in dd.roots]


def _u16(raw: bytes | None, default: int = 0) -> int:
    return struct.unpack("<H", raw[:2])[0] if raw and len(raw) >= 2 else default


def _u32(raw: bytes | None) -> int:
    return struct.unpack("<I", raw[:4])[0] if raw and len(raw) >= 4 else 0


def _split(raw: bytes | None) -> tuple[str, ...] | None:
    if not raw or not raw.strip(b" \x00"):
        return None
    return tuple(part.strip() for part in raw.rstrip(b" \x00").decode("latin-1").split("\\"))
