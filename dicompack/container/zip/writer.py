"""ZipWriter: entries are compressed ahead on a thread pool (deflate.py),
piece by piece, so memory is bounded whatever their size; CRC-32 and
SHA-256 are computed on the way.  On a
seekable output the local headers are patched afterwards (best for old
readers); on a non-seekable one (pipe, HTTP response) data descriptors are
used.  ZIP64 records appear only where sizes, offsets or the entry count
need them."""
from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import BinaryIO

from dicompack.container.zip.deflate import DEFAULT_LEVEL, Deflater, Digest
from dicompack.container.zip.format import (
    CENTRAL_HEADER,
    CENTRAL_SIG,
    DESCRIPTOR_SIG,
    EOCD64_RECORD,
    EOCD64_SIG,
    EOCD_RECORD,
    EOCD_SIG,
    FLAG_DESCRIPTOR,
    FLAG_UTF8,
    LOCAL_HEADER,
    LOCAL_SIG,
    LOCATOR_RECORD,
    LOCATOR_SIG,
    METHOD_IDS,
    U16_MAX,
    U32_MAX,
    EntryInfo,
    needs_zip64_local,
)
from dicompack.container.zip.names import check_entry_name
from dicompack.enums import ZipMethod
from dicompack.errors import PackageInvalidError, StorageError, UsageError


def _dos_time(ts: tuple) -> tuple[int, int]:
    year, month, day, hour, minute, second = ts
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


@dataclass(frozen=True)
class _Open:
    """An entry whose local header is written and whose data is coming."""
    name: str
    method: str
    encoded: bytes
    flags: int
    offset: int
    version: int
    extra: bool


class ZipWriter:
    """Streams entries into a ZIP on ``dest``, in the order given.

    Entries are compressed ahead by ``deflate.Deflater`` on ``workers``
    threads (default: every core) at ``level`` (1-12, libdeflate's scale);
    ``add_streams`` keeps the pool busy across entries, ``add_stream`` adds
    one.  The bytes written do not depend on ``workers``."""

    def __init__(self, dest: BinaryIO, *, timestamp=(1980, 1, 1, 0, 0, 0), chunk_size: int = 1 << 20,
                 level: int = DEFAULT_LEVEL, workers: int | None = None, window: int | None = None):
        self._deflater = Deflater(level=level, workers=workers, window=window)
        self._out = dest
        self._seekable = _is_seekable(dest)
        self._pos = dest.tell() if self._seekable else 0
        self._time, self._date = _dos_time(timestamp)
        self._chunk = chunk_size
        self._central: list[bytes] = []
        self._names: set[str] = set()
        self._closed = False

    def __enter__(self) -> ZipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        self._deflater.close()

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._pos += len(data)

    def add_bytes(self, name: str, data: bytes, *, method: str = ZipMethod.DEFLATE) -> EntryInfo:
        return self.add_stream(name, io.BytesIO(data), method=method, size_hint=len(data))

    def add_file(self, name: str, path, *, method: str = ZipMethod.DEFLATE) -> EntryInfo:
        with open(path, "rb") as f:
            return self.add_stream(name, f, method=method, size_hint=os.fstat(f.fileno()).st_size)

    def _claim(self, name: str) -> tuple[bytes, int]:
        """Validate a new entry's name, once per archive: its UTF-8 bytes
        and the general-purpose flag that says they are UTF-8."""
        check_entry_name(name)
        if name in self._names:
            raise UsageError("duplicate entry name", where=name)
        self._names.add(name)
        return name.encode("utf-8"), FLAG_UTF8 if not name.isascii() else 0

    def add_stream(self, name: str, src: BinaryIO, *, method: str = ZipMethod.DEFLATE,
                   size_hint: int | None = None) -> EntryInfo:
        """One entry from ``src`` (read to its end, not closed)."""
        return next(iter(self.add_streams([(name, lambda: nullcontext(src), method)], size_hint=size_hint)))

    def add_streams(self, items: Iterable[tuple[str, Callable, str]], *,
                    size_hint: int | None = None) -> Iterator[EntryInfo]:
        """Entries ``(name, open, method)`` in order: ``open()`` gives a
        context manager of the entry's stream, opened when its turn to be
        read comes and closed at its end.  Yields each entry's info once it
        is written; the next entries are read and compressed meanwhile."""
        entry: _Open | None = None
        keyed = (((name, method), open_src, method) for name, open_src, method in items)
        pieces = self._deflater.pieces(keyed)
        try:
            for piece in pieces:
                if entry is None:
                    # A whole entry (one piece) has its size known: no ZIP64 field unless needed.
                    name, method = piece.key
                    entry = self._begin(name, method, piece.done.size if piece.done else size_hint)
                self._write(piece.data)
                if piece.done is not None:
                    yield self._end(entry, piece.done)
                    entry = None
        finally:
            pieces.close()     # stops reading ahead; closes the entry being read

    def _begin(self, name: str, method: str, size_hint: int | None) -> _Open:
        encoded, flags = self._claim(name)
        if not self._seekable:
            flags |= FLAG_DESCRIPTOR
        # Reserve a ZIP64 extra field when the entry may not fit 32 bits.
        big = size_hint is None or size_hint >= U32_MAX - (1 << 20)
        offset = self._pos
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if big and self._seekable else b""
        version = 45 if extra or self._pos >= U32_MAX else 20
        self._write(LOCAL_HEADER.pack(LOCAL_SIG, version, flags, METHOD_IDS[method], self._time, self._date,
                                0, U32_MAX if extra else 0, U32_MAX if extra else 0,
                                len(encoded), len(extra)) + encoded + extra)
        return _Open(name, method, encoded, flags, offset, version, bool(extra))

    def _end(self, entry: _Open, done: Digest) -> EntryInfo:
        crc, size, csize = done.crc32, done.size, done.compressed_size
        info = EntryInfo(entry.name, size, csize, crc, done.sha256, entry.method)
        zip64 = size >= U32_MAX or csize >= U32_MAX
        if entry.flags & FLAG_DESCRIPTOR:
            fmt = "<IIQQ" if zip64 else "<IIII"
            self._write(struct.pack(fmt, DESCRIPTOR_SIG, crc, csize, size))
        else:
            self._patch_local(entry.offset, len(entry.encoded), crc, csize, size, entry.extra)
        self._central.append(self._central_record(info, entry.flags, entry.offset, entry.encoded, entry.version))
        return info

    def add_precompressed(self, info: EntryInfo, chunks: Iterable[bytes]) -> EntryInfo:
        """Add an entry compressed earlier (``EntrySpool``): ``chunks`` are
        its ``info.compressed_size`` compressed bytes.  CRC and sizes are
        known, so the local header carries them even on a pipe (no data
        descriptor) and the bytes written are exactly
        ``entry_bytes(info, offset)`` — what ``precompressed_zip_size`` adds up."""
        name = info.name
        encoded, flags = self._claim(name)
        offset = self._pos
        zip64 = needs_zip64_local(info)
        extra = struct.pack("<HHQQ", 1, 16, info.size, info.compressed_size) if zip64 else b""
        version = 45 if extra or offset >= U32_MAX else 20
        self._write(LOCAL_HEADER.pack(LOCAL_SIG, version, flags, METHOD_IDS[info.method], self._time, self._date,
                                info.crc32, U32_MAX if zip64 else info.compressed_size,
                                U32_MAX if zip64 else info.size, len(encoded), len(extra)) + encoded + extra)
        copied = 0
        for chunk in chunks:
            copied += len(chunk)
            self._write(chunk)
        if copied != info.compressed_size:    # the spool changed under us: never a silently wrong ZIP
            raise StorageError(f"spooled entry has {copied} bytes, {info.compressed_size} expected", where=name)
        self._central.append(self._central_record(info, flags, offset, encoded, version))
        return info

    def _patch_local(self, offset: int, name_len: int, crc: int, csize: int, size: int,
                     has_extra: bool) -> None:
        if (size >= U32_MAX or csize >= U32_MAX) and not has_extra:
            raise PackageInvalidError("entry grew past 4 GiB without a ZIP64 field")
        here = self._out.tell()
        self._out.seek(offset + 14)
        if has_extra:
            self._out.write(struct.pack("<III", crc, U32_MAX, U32_MAX))
            self._out.seek(offset + 30 + name_len + 4)
            self._out.write(struct.pack("<QQ", size, csize))
        else:
            self._out.write(struct.pack("<III", crc, csize, size))
        self._out.seek(here)

    def _central_record(self, info: EntryInfo, flags: int, offset: int, encoded: bytes, version: int) -> bytes:
        extra_values = []
        size, csize, off = info.size, info.compressed_size, offset
        if size >= U32_MAX:
            extra_values.append(size)
            size = U32_MAX
        if csize >= U32_MAX:
            extra_values.append(csize)
            csize = U32_MAX
        if off >= U32_MAX:
            extra_values.append(off)
            off = U32_MAX
        extra = (struct.pack("<HH", 1, 8 * len(extra_values)) + struct.pack(f"<{len(extra_values)}Q", *extra_values)
                 if extra_values else b"")
        if extra:
            version = 45
        return CENTRAL_HEADER.pack(CENTRAL_SIG, 0x0300 | 45, version, flags, METHOD_IDS[info.method], self._time,
                             self._date, info.crc32, csize, size, len(encoded), len(extra), 0, 0, 0,
                             (stat.S_IFREG | 0o644) << 16, off) + encoded + extra

    def close(self) -> None:
        self._deflater.close()
        if self._closed:
            return
        self._closed = True
        start = self._pos
        for record in self._central:
            self._write(record)
        size, count = self._pos - start, len(self._central)
        if count >= U16_MAX or start >= U32_MAX or size >= U32_MAX:
            eocd64 = self._pos
            self._write(EOCD64_RECORD.pack(EOCD64_SIG, 44, 0x0300 | 45, 45, 0, 0, count, count, size, start))
            self._write(LOCATOR_RECORD.pack(LOCATOR_SIG, 0, eocd64, 1))
            self._write(EOCD_RECORD.pack(EOCD_SIG, 0, 0, min(count, U16_MAX), min(count, U16_MAX),
                                   min(size, U32_MAX), min(start, U32_MAX), 0))
        else:
            self._write(EOCD_RECORD.pack(EOCD_SIG, 0, 0, count, count, size, start, 0))
        self._out.flush()


def _is_seekable(f) -> bool:
    try:
        return f.seekable()
    except (AttributeError, ValueError, OSError):
        return False
