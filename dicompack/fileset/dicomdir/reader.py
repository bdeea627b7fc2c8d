"""DICOMDIR (PS3.3 Annex F Basic Directory IOD) decoder.

The decoder reads DICOMDIRs written by any tool (defined or undefined
lengths), keeps the byte offset of every item, and reports offset problems as
findings instead of failing, so ``check`` can point at each one.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field

from dicompack.dcmio import (
    EXPLICIT_LITTLE,
    IMPLICIT_LITTLE,
    LONG_VRS,
    UNDEFINED,
    VALID_VRS,
    Encoding,
    StructureError,
    Walker,
    decode_text,
    encode_element,
    encode_item,
)
from dicompack.enums import Severity
from dicompack.errors import PackageInvalidError
from dicompack.fileset.dicomdir.packed import MAX_DICOMDIR_KEY_BYTES, _ElementPacker, _KeyBudget
from dicompack.fileset.dicomdir.tags import (
    CONSISTENCY,
    DESCRIPTOR_FILE_ID,
    FILE_ID,
    FILESET_ID,
    FIRST_ROOT,
    IN_USE,
    LOWER,
    NEXT,
    RECORD_SEQUENCE,
    RECORD_TYPE,
    REF_CLASS,
    REF_INSTANCE,
    REF_TS,
    STRUCTURAL,
)
from dicompack.fileset.records import Record
from dicompack.report import Finding
from dicompack.standard import EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN


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
    EXPLICIT_VR_LITTLE_ENDIAN: EXPLICIT_LITTLE,
    IMPLICIT_VR_LITTLE_ENDIAN: IMPLICIT_LITTLE,
    EXPLICIT_VR_BIG_ENDIAN: Encoding(True, False),
}
_SYNTAX_NAMES = {IMPLICIT_VR_LITTLE_ENDIAN: "Implicit VR Little Endian",
                 EXPLICIT_VR_BIG_ENDIAN: "Explicit VR Big Endian"}
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
        encoding = _READABLE_SYNTAXES.get(ts or EXPLICIT_VR_LITTLE_ENDIAN)
        if encoding is None:
            raise PackageInvalidError(f"DICOMDIR Transfer Syntax is {ts}, PS3.10 requires "
                                      "Explicit VR Little Endian", where=where)
        if ts and ts != EXPLICIT_VR_LITTLE_ENDIAN:
            found.append(Finding(Severity.ERROR, "DICOMDIR", f"Transfer Syntax is {_SYNTAX_NAMES[ts]} ({ts}); "
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
        found.append(Finding(Severity.ERROR, f"record at byte {pos}",
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
    # Read records hold their keys packed (a read-only Mapping); Record.elements
    # is typed for the dict of records built from scans.
    rec.elements = packed.done()  # type: ignore[assignment]
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
        problems.append(Finding(Severity.ERROR, f"record at byte {item_pos} ({rec.type})",
                                "Type 1 " + ", ".join(missing) + " missing"))
    return rec


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
            items.append(encode_item(b"".join(_as_explicit_le(walker, sub, depth + 1)
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
                    Severity.ERROR, f"record at byte {rec.offset} ({rec.type})",
                    f"records nested deeper than {MAX_RECORD_DEPTH} levels (dicompack's limit); "
                    "the levels below are not checked"))
            pending.append((rec.lower_offset, f"lower level of record at byte {rec.offset} ({rec.type})",
                            below, depth + 1))
    for rec in dd.records:
        if rec.offset not in seen and rec.in_use:
            found.append(Finding(Severity.ERROR, f"record at byte {rec.offset} ({rec.type})",
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
            self.findings.append(Finding(Severity.ERROR, where, f"{self.dropped:,} more record problems "
                                                         f"not listed (at most {self.cap:,} are)"))


def _chain(found: _CappedFindings, by_offset: dict[int, Record], seen: set[int], offset: int,
           where: str) -> list[Record]:
    """The records of one level, following Next offsets from ``offset``."""
    level: list[Record] = []
    while offset:
        rec = by_offset.get(offset)
        if rec is None:
            found.append(Finding(Severity.ERROR, where, f"offset {offset} does not land on a directory record"))
            break
        if offset in seen:
            found.append(Finding(Severity.ERROR, where, f"offset {offset} loops back to an earlier record"))
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
