"""ZipReader: every name is validated before anything is extracted
(zip-slip, symlinks, duplicates, case clashes, encryption), sizes are
limited, and the local records must tile the archive exactly as the central
directory says.  Decompression and its ratio watch are in entry_stream.py."""
from __future__ import annotations

import bisect
import io
import os
import stat
import struct
import threading
from array import array
from collections.abc import Iterator
from typing import BinaryIO

from dicompack.container.zip.entry_stream import CHUNK, READ, EntryStream
from dicompack.container.zip.format import (
    CENTRAL_HEADER,
    CENTRAL_SIG,
    DESCRIPTOR_SIG,
    EOCD64_RECORD,
    EOCD64_SIG,
    EOCD_RECORD,
    EOCD_SIG,
    FLAG_DESCRIPTOR,
    FLAG_ENCRYPTED,
    LOCAL_HEADER,
    LOCAL_SIG,
    LOCATOR_RECORD,
    LOCATOR_SIG,
    METHOD_IDS,
    METHOD_NAMES,
    ZipEntry,
    decoded_name,
    zip64_values,
)
from dicompack.container.zip.limits import MANIFEST_NAME, ZipLimits
from dicompack.container.zip.names import NameIndex, check_entry_name, collision_key
from dicompack.errors import PackageInvalidError, UnsafeArchiveError


class ZipReader:
    """Reads a ZIP from a path or a seekable binary file.

    ``entries()`` checks everything that can be checked without
    decompressing, before any entry is opened: names, sizes, ratios, and that
    the local records tile the archive exactly as the central directory says."""

    def __init__(self, src, *, limits: ZipLimits = ZipLimits()):
        self.limits = limits
        self._owned = not hasattr(src, "read")
        self._f = open(src, "rb") if self._owned else src
        self._f.seek(0, os.SEEK_END)
        self._size = self._f.tell()
        self._entries: list[ZipEntry] | None = None
        self._cd_offset = 0
        # The entries' header offsets in ascending order and, at the same
        # index, their first data byte (set by _check_layout): 16 bytes an
        # entry where a dict took ~100.
        self._header_offsets = array("Q")
        self._data_offsets = array("Q")
        # Entries may be extracted by several threads: each seek + read of
        # the one file object is done under this lock.
        self._lock = threading.Lock()
        try:
            self._raw = self._read_central_directory()
        except (struct.error, ValueError, OverflowError) as exc:
            self.close()
            raise PackageInvalidError(f"ZIP central directory is damaged: {exc}", where="ZIP") from None
        except BaseException:
            # A malformed ZIP must not leak the file we opened.
            self.close()
            raise

    def close(self) -> None:
        if self._owned:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_at(self, pos: int, n: int) -> bytes:
        if pos < 0 or n < 0 or pos + n > self._size:
            raise PackageInvalidError(f"ZIP structure points outside the file (byte {pos})", where="ZIP")
        with self._lock:
            self._f.seek(pos)
            return self._f.read(n)

    def _read_central_directory(self) -> list[ZipEntry]:
        tail_len = min(self._size, 22 + 65535)
        tail = self._read_at(self._size - tail_len, tail_len)
        at = tail.rfind(struct.pack("<I", EOCD_SIG))
        if at < 0:
            raise PackageInvalidError("not a ZIP file (no end of central directory record)", where="ZIP")
        eocd_pos = self._size - tail_len + at
        _, disk, _, _, count, cd_size, cd_offset, comment_len = EOCD_RECORD.unpack(tail[at:at + 22])
        if disk != 0:
            raise PackageInvalidError("multi-disk ZIP archives are not supported", where="ZIP")
        if eocd_pos + 22 + comment_len != self._size:
            raise UnsafeArchiveError("bytes after the end of the ZIP belong to no entry (appended data)", where="ZIP")
        cd_end = eocd_pos
        if eocd_pos >= 20:
            locator = self._read_at(eocd_pos - 20, 20)
            sig, _, eocd64_pos, _ = LOCATOR_RECORD.unpack(locator)
            if sig == LOCATOR_SIG:
                rec = EOCD64_RECORD.unpack(self._read_at(eocd64_pos, 56))
                if rec[0] != EOCD64_SIG or eocd64_pos + 12 + rec[1] != eocd_pos - 20:
                    raise PackageInvalidError("ZIP64 end record missing or damaged", where="ZIP")
                count, cd_size, cd_offset = rec[7], rec[8], rec[9]
                cd_end = eocd64_pos
        if count > self.limits.max_entries:
            raise UnsafeArchiveError(f"{count} entries exceed the limit of {self.limits.max_entries}", where="ZIP")
        if cd_offset + cd_size != cd_end:
            raise UnsafeArchiveError("bytes between the central directory and its end record belong to no entry",
                                     where="ZIP")
        self._cd_offset = cd_offset
        # Read a chunk at a time: the central directory is not held whole
        # next to the entries made from it.
        data = _Chunks(self, cd_offset, cd_size)
        entries, name_bytes = [], 0
        for _ in range(count):
            fields = CENTRAL_HEADER.unpack(data.take(46))
            if fields[0] != CENTRAL_SIG:
                raise PackageInvalidError("ZIP central directory entry is damaged", where="ZIP")
            flags, method, crc = fields[3], fields[4], fields[7]
            csize, size, nlen, xlen, clen = fields[8], fields[9], fields[10], fields[11], fields[12]
            external, offset = fields[15], fields[16]
            name_bytes += nlen
            if name_bytes > self.limits.max_names_bytes:
                raise UnsafeArchiveError(f"entry names take more than {self.limits.max_names_bytes} bytes",
                                         where="ZIP")
            raw_name, extra = data.take(nlen), data.take(xlen)
            data.take(clen)
            size, csize, offset = zip64_values(extra, size, csize, offset)
            name = decoded_name(raw_name, flags)
            entries.append(ZipEntry(name, METHOD_NAMES.get(method, f"method {method}"), csize, size, crc,
                                    offset, name.endswith("/"), flags, external))
        if data.left:
            raise PackageInvalidError("ZIP central directory size does not match its entries", where="ZIP")
        return entries

    def entries(self) -> list[ZipEntry]:
        """All entries, each validated; raises UnsafeArchiveError on the first bad one."""
        if self._entries is None:
            total = self._validate_entries()
            try:
                self._check_layout()
            except (struct.error, ValueError, OverflowError) as exc:
                raise PackageInvalidError(f"ZIP local records are damaged: {exc}", where="ZIP") from None
            # After the layout check, so that overlapping entries are named as such.
            if total > self.limits.ratio_grace_total and total > self.limits.max_ratio * self._size:
                raise UnsafeArchiveError(f"entries declare {total} bytes from a {self._size}-byte ZIP: compression "
                                         f"ratio above {self.limits.max_ratio:.0f}:1 (zip bomb?)", where="ZIP")
            self._entries = self._raw
        return self._entries

    def _validate_entries(self) -> int:
        """Per-entry checks; the sum of the declared sizes."""
        names = NameIndex()
        manifest_key = collision_key(MANIFEST_NAME)
        manifest_cap = self.limits.manifest_cap(len(self._raw))
        total = 0
        for e in self._raw:
            self._validate(e)
            names.add(e)
            if e.size > manifest_cap and collision_key(e.name) == manifest_key:
                # Parsed in memory: a few MB of whitespace must not cost GBs.
                raise UnsafeArchiveError(f"manifest of {e.size} bytes exceeds the limit of {manifest_cap} bytes "
                                         f"for {len(self._raw)} entries", where=e.name)
            total += e.size
            if total > self.limits.max_total_size:
                raise UnsafeArchiveError(f"total size exceeds {self.limits.max_total_size} bytes", where=e.name)
        return total

    def _validate(self, e: ZipEntry) -> None:
        check_entry_name(e.name, self.limits)
        if e.flags & FLAG_ENCRYPTED:
            raise UnsafeArchiveError("encrypted entry (ZIP encryption is not used by DICOM media)", where=e.name)
        if stat.S_ISLNK(e.external_attr >> 16):
            raise UnsafeArchiveError("symbolic link entry", where=e.name)
        if e.method not in METHOD_IDS:
            raise PackageInvalidError(f"unsupported compression ({e.method})", where=e.name)
        if e.size > self.limits.max_entry_size:
            raise UnsafeArchiveError(f"declared size {e.size} exceeds the limit", where=e.name)

    def _check_layout(self) -> None:
        """The local records must tile the archive: from byte 0, each entry's
        header, name, extra field, data and data descriptor end exactly where
        the next listed entry begins, and the last where the central directory
        begins.  This refuses overlapping entries (one payload extracted many
        times: a zip bomb) and bytes no listed entry covers (entries that a
        streaming reader, ``unzip`` reading a pipe or Windows, would extract
        but that we would neither see nor check)."""
        ordered = sorted(self._raw, key=lambda e: e.header_offset)
        expected = 0
        for i, e in enumerate(ordered):
            if e.header_offset < expected:
                raise UnsafeArchiveError("entry overlaps the previous one (overlapping entries: zip bomb?)",
                                         where=e.name)
            if e.header_offset > expected:
                raise UnsafeArchiveError(f"{e.header_offset - expected} bytes before this entry belong to no "
                                         "listed entry (hidden entry?)", where=e.name)
            following = ordered[i + 1] if i + 1 < len(ordered) else None
            boundary = following.header_offset if following else self._cd_offset
            start = self._check_local_header(e)
            end = start + e.compressed_size
            if end > boundary:
                other = f"entry {following.name!r}" if following else "the central directory"
                raise UnsafeArchiveError(f"entry data overlaps {other} (overlapping entries: zip bomb?)",
                                         where=e.name)
            if e.flags & FLAG_DESCRIPTOR:
                end += self._check_descriptor(e, end, boundary)
            self._header_offsets.append(e.header_offset)
            self._data_offsets.append(start)
            expected = end
        if expected != self._cd_offset:
            raise UnsafeArchiveError(f"{self._cd_offset - expected} bytes before the central directory belong to "
                                     "no listed entry (hidden entry?)", where=ordered[-1].name if ordered else "ZIP")

    def _check_local_header(self, e: ZipEntry) -> int:
        """Check the local header agrees with the central directory (a
        streaming reader trusts the local one); return the data offset."""
        header = LOCAL_HEADER.unpack(self._read_at(e.header_offset, 30))
        sig, _, flags, method, _, _, crc, csize, size, nlen, xlen = header
        if sig != LOCAL_SIG:
            raise PackageInvalidError("local header missing", where=e.name)
        rest = self._read_at(e.header_offset + 30, nlen + xlen)
        try:
            same_name = decoded_name(rest[:nlen], e.flags) == e.name
        except UnicodeDecodeError:
            same_name = False
        if not same_name:
            raise UnsafeArchiveError("local header name differs from the central directory", where=e.name)
        if method != METHOD_IDS[e.method] or (flags ^ e.flags) & (FLAG_ENCRYPTED | FLAG_DESCRIPTOR):
            raise UnsafeArchiveError("local header method or flags differ from the central directory", where=e.name)
        size, csize, _ = zip64_values(rest[nlen:], size, csize, 0)
        declared = (e.crc32, e.compressed_size, e.size)
        # With a data descriptor the local values may be left zero.
        if any(got != want and not (flags & FLAG_DESCRIPTOR and got == 0)
               for got, want in zip((crc, csize, size), declared)):
            raise UnsafeArchiveError("local header sizes or CRC differ from the central directory", where=e.name)
        return e.header_offset + 30 + nlen + xlen

    def _check_descriptor(self, e: ZipEntry, at: int, boundary: int) -> int:
        """Length of the data descriptor at ``at``, which must fill the bytes
        up to ``boundary``: 12 or 20 bytes (32/64-bit sizes), +4 with its
        optional signature."""
        length = boundary - at
        if length not in (12, 16, 20, 24):
            raise UnsafeArchiveError(f"{length} bytes after the entry data are no data descriptor "
                                     "(hidden entry?)", where=e.name)
        raw = self._read_at(at, length)
        if length in (16, 24):
            if raw[:4] != struct.pack("<I", DESCRIPTOR_SIG):
                raise UnsafeArchiveError("data descriptor is damaged", where=e.name)
            raw = raw[4:]
        values = struct.unpack("<III" if len(raw) == 12 else "<IQQ", raw)
        if values != (e.crc32, e.compressed_size, e.size):
            raise UnsafeArchiveError("data descriptor differs from the central directory", where=e.name)
        return length

    def open(self, e: ZipEntry) -> BinaryIO:
        """A streaming reader of the entry's content, checked at its end."""
        return io.BufferedReader(self._stream(e), CHUNK)

    def content(self, e: ZipEntry) -> Iterator[bytes]:
        """The entry's content in checked pieces of at most CHUNK bytes
        (no copy); the CRC and size are checked after the last.  Several
        entries may be read at once from different threads."""
        return self._stream(e).chunks()

    def _stream(self, e: ZipEntry) -> EntryStream:
        self.entries()      # never decompress anything before the whole archive is checked
        i = bisect.bisect_left(self._header_offsets, e.header_offset)
        if i == len(self._header_offsets) or self._header_offsets[i] != e.header_offset:
            raise PackageInvalidError("not an entry of this ZIP", where=e.name)
        return EntryStream(self._f, self._data_offsets[i], e, self.limits, self._lock)

    def read(self, name: str) -> bytes:
        entry = next((e for e in self.entries() if e.name == name), None)
        if entry is None:
            raise PackageInvalidError("no such entry", where=name)
        with self.open(entry) as f:
            return f.read()

    def test(self) -> list[tuple[str, str]]:
        problems = []
        for e in self.entries():
            try:
                with self.open(e) as f:
                    while f.read(CHUNK):
                        pass
            except PackageInvalidError as exc:
                problems.append((e.name, exc.message))
        return problems



class _Chunks:
    """Consecutive reads of ``size`` bytes from ``start``, fetched a chunk at
    a time; reading past the end is a damaged central directory."""

    def __init__(self, reader: ZipReader, start: int, size: int):
        self._reader, self._next, self.left = reader, start, size
        self._buf, self._pos = b"", 0

    def take(self, n: int) -> bytes:
        if n > self.left:
            raise PackageInvalidError("ZIP central directory size does not match its entries", where="ZIP")
        if self._pos + n > len(self._buf):
            more = min(self.left - (len(self._buf) - self._pos), max(n, READ * 16))
            self._buf = self._buf[self._pos:] + self._reader._read_at(self._next, more)
            self._next += more
            self._pos = 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        self.left -= n
        return out
