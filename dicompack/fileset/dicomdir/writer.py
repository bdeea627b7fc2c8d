"""DICOMDIR (PS3.3 Annex F Basic Directory IOD) encoder.

The encoder streams: a first pass computes every record's size and so its
byte offset (offsets count from the first byte of the preamble, PS3.10), the
second pass encodes again with the real offsets and writes.  Memory is the
record tree itself; nothing else grows with the number of records.
"""
from __future__ import annotations

import hashlib
import os
import struct
from typing import BinaryIO

from dicompack.dcmio import encode_element, encode_item, encode_meta, encode_ul, encode_us
from dicompack.fileset.dicomdir.tags import (
    CONSISTENCY,
    DESCRIPTOR_CHARSET,
    DESCRIPTOR_FILE_ID,
    FILE_ID,
    FILESET_ID,
    FIRST_ROOT,
    IN_USE,
    LAST_ROOT,
    LOWER,
    NEXT,
    RECORD_TYPE,
    REF_CLASS,
    REF_INSTANCE,
    REF_TS,
)
from dicompack.fileset.records import Record
from dicompack.standard import EXPLICIT_VR_LITTLE_ENDIAN, MEDIA_STORAGE_DIRECTORY_STORAGE, uid_from_digest


def fileset_instance_uid(fileset_id: str, roots: list[Record]) -> str:
    """A deterministic SOP Instance UID: same File-set, same DICOMDIR bytes."""
    h = hashlib.sha256(b"dicompack-dicomdir\x00" + fileset_id.encode())
    for rec in _depth_first(roots):
        h.update(rec.sop_instance.encode() + b"\x00" + "\\".join(rec.file_id or ()).encode() + b"\x01")
    return uid_from_digest(h.digest(), nbytes=15)   # as every release derived it (see uid_from_digest)


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
    meta = encode_meta(MEDIA_STORAGE_DIRECTORY_STORAGE, fileset_instance_uid(fileset_id, roots),
                       EXPLICIT_VR_LITTLE_ENDIAN)
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
        out.write(encode_item(_record_body(rec, next_offset, lower)))
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
