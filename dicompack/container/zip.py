"""ZIP container: a streaming writer and a hardened reader/extractor.

Writer: entries are compressed chunk by chunk, so memory is flat whatever
their size; CRC-32 and SHA-256 are computed on the way.  On a seekable
output the local headers are patched afterwards (best for old readers); on
a non-seekable one (pipe, HTTP response) data descriptors are used.  ZIP64
records appear only where sizes, offsets or the entry count need them.

Reader: every name is validated before anything is extracted (zip-slip,
symlinks, duplicates, case clashes, encryption), sizes are limited, and the
compression ratio is watched while decompressing, so a zip bomb is stopped
before it fills the disk.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import PackageInvalidError, UnsafeArchiveError, UsageError
from ..output import temp_prefix

METHOD_IDS = {"store": 0, "deflate": 8, "zstd": 93}
METHOD_NAMES = {v: k for k, v in METHOD_IDS.items()}
LOCAL_SIG, CENTRAL_SIG, DESCRIPTOR_SIG = 0x04034B50, 0x02014B50, 0x08074B50
EOCD_SIG, EOCD64_SIG, LOCATOR_SIG = 0x06054B50, 0x06064B50, 0x07064B50
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_UTF8 = 0x1, 0x8, 0x800
U32_MAX, U16_MAX = 0xFFFFFFFF, 0xFFFF
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<IHHHHIIH")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR = struct.Struct("<IIQI")


@dataclass(frozen=True)
class EntryInfo:
    name: str
    size: int
    compressed_size: int
    crc32: int
    sha256: str
    method: str


def _dos_time(ts: tuple) -> tuple[int, int]:
    year, month, day, hour, minute, second = ts
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


def _compressor(method: str):
    if method == "deflate":
        return zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    if method == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=3).compressobj()
    if method == "store":
        return None
    raise UsageError(f"unknown ZIP method {method!r}")


def check_entry_name(name: str) -> None:
    """Refuse names that would be unsafe or non-portable to extract."""
    reason = unsafe_name_reason(name)
    if reason:
        raise UnsafeArchiveError(reason, where=name)


_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_name_reason(name: str) -> str | None:
    if not name:
        return "empty entry name"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "control character in entry name"
    if "\\" in name:
        return "backslash in entry name (path separator of another system)"
    if name.startswith("/"):
        return "absolute path in entry name"
    if _DRIVE.match(name):
        return "drive letter in entry name"
    if any(part == ".." for part in name.split("/")):
        return "'..' in entry name would escape the target folder"
    return None


class ZipWriter:
    """Streams entries into a ZIP on ``dest``."""

    def __init__(self, dest: BinaryIO, *, timestamp=(1980, 1, 1, 0, 0, 0), chunk_size: int = 1 << 20):
        self._out = dest
        self._seekable = _is_seekable(dest)
        self._pos = dest.tell() if self._seekable else 0
        self._time, self._date = _dos_time(timestamp)
        self._chunk = chunk_size
        self._central: list[bytes] = []
        self._names: set[str] = set()
        self._closed = False

    def __enter__(self) -> "ZipWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._pos += len(data)

    def add_bytes(self, name: str, data: bytes, *, method: str = "deflate") -> EntryInfo:
        return self.add_stream(name, io.BytesIO(data), method=method, size_hint=len(data))

    def add_file(self, name: str, path, *, method: str = "deflate") -> EntryInfo:
        with open(path, "rb") as f:
            return self.add_stream(name, f, method=method, size_hint=os.fstat(f.fileno()).st_size)

    def add_stream(self, name: str, src: BinaryIO, *, method: str = "deflate",
                   size_hint: int | None = None) -> EntryInfo:
        check_entry_name(name)
        if name in self._names:
            raise UsageError("duplicate entry name", where=name)
        self._names.add(name)
        encoded = name.encode("utf-8")
        flags = FLAG_UTF8 if not name.isascii() else 0
        if not self._seekable:
            flags |= FLAG_DESCRIPTOR
        # Reserve a ZIP64 extra field when the entry may not fit 32 bits.
        big = size_hint is None or size_hint >= U32_MAX - (1 << 20)
        offset = self._pos
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if big and self._seekable else b""
        version = 45 if extra or self._pos >= U32_MAX else 20
        comp = _compressor(method)
        self._write(_LOCAL.pack(LOCAL_SIG, version, flags, METHOD_IDS[method], self._time, self._date,
                                0, U32_MAX if extra else 0, U32_MAX if extra else 0,
                                len(encoded), len(extra)) + encoded + extra)
        crc, size, csize, sha = self._copy_data(src, comp)
        info = EntryInfo(name, size, csize, crc, sha.hexdigest(), method)
        zip64 = size >= U32_MAX or csize >= U32_MAX
        if flags & FLAG_DESCRIPTOR:
            fmt = "<IIQQ" if zip64 else "<IIII"
            self._write(struct.pack(fmt, DESCRIPTOR_SIG, crc, csize, size))
        else:
            self._patch_local(offset, len(encoded), crc, csize, size, bool(extra))
        self._central.append(self._central_record(info, flags, offset, encoded, version))
        return info

    def _copy_data(self, src: BinaryIO, comp):
        crc, size, csize, sha = 0, 0, 0, hashlib.sha256()
        while True:
            chunk = src.read(self._chunk)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            sha.update(chunk)
            size += len(chunk)
            out = comp.compress(chunk) if comp else chunk
            if out:
                csize += len(out)
                self._write(out)
        if comp:
            tail = comp.flush()
            csize += len(tail)
            self._write(tail)
        return crc, size, csize, sha

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
        return _CENTRAL.pack(CENTRAL_SIG, 0x0300 | 45, version, flags, METHOD_IDS[info.method], self._time,
                             self._date, info.crc32, csize, size, len(encoded), len(extra), 0, 0, 0,
                             (stat.S_IFREG | 0o644) << 16, off) + encoded + extra

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        start = self._pos
        for record in self._central:
            self._write(record)
        size, count = self._pos - start, len(self._central)
        if count >= U16_MAX or start >= U32_MAX or size >= U32_MAX:
            eocd64 = self._pos
            self._write(_EOCD64.pack(EOCD64_SIG, 44, 0x0300 | 45, 45, 0, 0, count, count, size, start))
            self._write(_LOCATOR.pack(LOCATOR_SIG, 0, eocd64, 1))
            self._write(_EOCD.pack(EOCD_SIG, 0, 0, min(count, U16_MAX), min(count, U16_MAX),
                                   min(size, U32_MAX), min(start, U32_MAX), 0))
        else:
            self._write(_EOCD.pack(EOCD_SIG, 0, 0, count, count, size, start, 0))
        self._out.flush()


def _is_seekable(f) -> bool:
    try:
        return f.seekable()
    except (AttributeError, ValueError, OSError):
        return False


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 500_000
    max_entry_size: int = 64 << 30
    max_total_size: int = 256 << 30
    max_ratio: float = 200.0          # uncompressed / compressed, checked past 1 MiB of output


@dataclass(frozen=True)
class ZipEntry:
    name: str
    method: str
    compressed_size: int
    size: int
    crc32: int
    header_offset: int
    is_dir: bool
    flags: int
    external_attr: int


class ZipReader:
    """Reads a ZIP from a path or a seekable binary file."""

    def __init__(self, src, *, limits: ZipLimits = ZipLimits()):
        self.limits = limits
        self._owned = not hasattr(src, "read")
        self._f = open(src, "rb") if self._owned else src
        self._f.seek(0, os.SEEK_END)
        self._size = self._f.tell()
        self._entries: list[ZipEntry] | None = None
        try:
            self._raw = self._read_central_directory()
        except (struct.error, ValueError, OverflowError) as exc:
            raise PackageInvalidError(f"ZIP central directory is damaged: {exc}", where="ZIP") from None

    def close(self) -> None:
        if self._owned:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_at(self, pos: int, n: int) -> bytes:
        if pos < 0 or pos + n > self._size:
            raise PackageInvalidError(f"ZIP structure points outside the file (byte {pos})", where="ZIP")
        self._f.seek(pos)
        return self._f.read(n)

    def _read_central_directory(self) -> list[ZipEntry]:
        tail_len = min(self._size, 22 + 65535)
        tail = self._read_at(self._size - tail_len, tail_len)
        at = tail.rfind(struct.pack("<I", EOCD_SIG))
        if at < 0:
            raise PackageInvalidError("not a ZIP file (no end of central directory record)", where="ZIP")
        eocd_pos = self._size - tail_len + at
        _, disk, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack(tail[at:at + 22])
        if disk != 0:
            raise PackageInvalidError("multi-disk ZIP archives are not supported", where="ZIP")
        if eocd_pos >= 20:
            locator = self._read_at(eocd_pos - 20, 20)
            sig, _, eocd64_pos, _ = _LOCATOR.unpack(locator)
            if sig == LOCATOR_SIG:
                rec = _EOCD64.unpack(self._read_at(eocd64_pos, 56))
                if rec[0] != EOCD64_SIG:
                    raise PackageInvalidError("ZIP64 end record missing", where="ZIP")
                count, cd_size, cd_offset = rec[7], rec[8], rec[9]
        if count > self.limits.max_entries:
            raise UnsafeArchiveError(f"{count} entries exceed the limit of {self.limits.max_entries}", where="ZIP")
        data = self._read_at(cd_offset, cd_size)
        entries, pos = [], 0
        for _ in range(count):
            fields = _CENTRAL.unpack_from(data, pos)
            if fields[0] != CENTRAL_SIG:
                raise PackageInvalidError("ZIP central directory entry is damaged", where="ZIP")
            flags, method, crc = fields[3], fields[4], fields[7]
            csize, size, nlen, xlen, clen = fields[8], fields[9], fields[10], fields[11], fields[12]
            external, offset = fields[15], fields[16]
            raw_name = data[pos + 46:pos + 46 + nlen]
            extra = data[pos + 46 + nlen:pos + 46 + nlen + xlen]
            size, csize, offset = _zip64_values(extra, size, csize, offset)
            name = raw_name.decode("utf-8" if flags & FLAG_UTF8 else "cp437")
            entries.append(ZipEntry(name, METHOD_NAMES.get(method, f"method {method}"), csize, size, crc,
                                    offset, name.endswith("/"), flags, external))
            pos += 46 + nlen + xlen + clen
        return entries

    def entries(self) -> list[ZipEntry]:
        """All entries, each validated; raises UnsafeArchiveError on the first bad one."""
        if self._entries is None:
            seen: dict[str, str] = {}
            total = 0
            for e in self._raw:
                self._validate(e, seen)
                total += e.size
                if total > self.limits.max_total_size:
                    raise UnsafeArchiveError(f"total size exceeds {self.limits.max_total_size} bytes", where=e.name)
            self._entries = list(self._raw)
        return self._entries

    def _validate(self, e: ZipEntry, seen: dict[str, str]) -> None:
        check_entry_name(e.name)
        if e.flags & FLAG_ENCRYPTED:
            raise UnsafeArchiveError("encrypted entry (ZIP encryption is not used by DICOM media)", where=e.name)
        if stat.S_ISLNK(e.external_attr >> 16):
            raise UnsafeArchiveError("symbolic link entry", where=e.name)
        key = e.name.rstrip("/")
        other = seen.get(key.lower())
        if other == key:
            raise UnsafeArchiveError("duplicate entry name", where=e.name)
        if other is not None:
            # Case-insensitive file systems (Windows, macOS) would merge the two.
            raise UnsafeArchiveError(f"name differs only in case from {other!r}", where=e.name)
        seen[key.lower()] = key
        if e.method not in METHOD_IDS:
            raise PackageInvalidError(f"unsupported compression ({e.method})", where=e.name)
        if e.size > self.limits.max_entry_size:
            raise UnsafeArchiveError(f"declared size {e.size} exceeds the limit", where=e.name)

    def _data_offset(self, e: ZipEntry) -> int:
        header = self._read_at(e.header_offset, 30)
        fields = _LOCAL.unpack(header)
        if fields[0] != LOCAL_SIG:
            raise PackageInvalidError("local header missing", where=e.name)
        nlen, xlen = fields[9], fields[10]
        raw = self._read_at(e.header_offset + 30, nlen)
        if raw.decode("utf-8" if fields[2] & FLAG_UTF8 else "cp437", "replace") != e.name:
            raise UnsafeArchiveError("local header name differs from the central directory", where=e.name)
        return e.header_offset + 30 + nlen + xlen

    def open(self, e: ZipEntry) -> BinaryIO:
        """A streaming reader of the entry's content, checked at its end."""
        start = self._data_offset(e)
        if start + e.compressed_size > self._size:
            raise PackageInvalidError("entry data runs past the end of the ZIP", where=e.name)
        return io.BufferedReader(_EntryStream(self._f, start, e, self.limits), 1 << 20)

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
                    while f.read(1 << 20):
                        pass
            except PackageInvalidError as exc:
                problems.append((e.name, exc.message))
        return problems


def _zip64_values(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if size == U32_MAX and values:
                size = values.pop(0)
            if csize == U32_MAX and values:
                csize = values.pop(0)
            if offset == U32_MAX and values:
                offset = values.pop(0)
            break
        pos += 4 + length
    return size, csize, offset


class _EntryStream(io.RawIOBase):
    """Decompresses one entry lazily; checks ratio while reading, CRC and size at the end."""

    def __init__(self, f, start: int, entry: ZipEntry, limits: ZipLimits):
        self._f, self._pos, self._left = f, start, entry.compressed_size
        self._entry, self._limits = entry, limits
        self._crc, self._out, self._in = 0, 0, 0
        self._buf = b""
        self._done = False
        if entry.method == "deflate":
            self._dec = zlib.decompressobj(-zlib.MAX_WBITS)
        elif entry.method == "zstd":
            import zstandard
            self._dec = zstandard.ZstdDecompressor().decompressobj()
        else:
            self._dec = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf and not self._done:
            self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def _fill(self) -> None:
        name = self._entry.name
        if self._left == 0:
            self._finish()
            return
        self._f.seek(self._pos)
        raw = self._f.read(min(self._left, 1 << 18))
        if not raw:
            raise PackageInvalidError("entry data cut short", where=name)
        self._pos += len(raw)
        self._left -= len(raw)
        self._in += len(raw)
        try:
            data = self._dec.decompress(raw) if self._dec else raw
        except (zlib.error, Exception) as exc:
            if isinstance(exc, (PackageInvalidError, UnsafeArchiveError)):
                raise
            raise PackageInvalidError(f"compressed data is damaged ({exc})", where=name) from None
        self._account(data)
        self._buf = data

    def _account(self, data: bytes) -> None:
        name = self._entry.name
        self._out += len(data)
        self._crc = zlib.crc32(data, self._crc)
        if self._out > self._entry.size:
            raise PackageInvalidError("entry is larger than its declared size", where=name)
        if self._out > (1 << 20) and self._out > self._limits.max_ratio * max(self._in, 1):
            raise UnsafeArchiveError(f"compression ratio above {self._limits.max_ratio:.0f}:1 (zip bomb?)",
                                     where=name)

    def _finish(self) -> None:
        name = self._entry.name
        if self._dec is not None and self._entry.method == "deflate":
            tail = self._dec.flush()
            if tail:
                self._account(tail)
                self._buf = tail
            if not self._dec.eof:
                raise PackageInvalidError("compressed data is truncated", where=name)
        self._done = True
        if self._out != self._entry.size:
            raise PackageInvalidError(f"entry has {self._out} bytes, {self._entry.size} declared", where=name)
        if self._crc != self._entry.crc32:
            raise PackageInvalidError("CRC-32 mismatch (entry damaged)", where=name)


# ---------------------------------------------------------------- extraction

def extract_atomically(reader: ZipReader, target: Path, *,
                       on_bytes: Callable[[int], None] | None = None) -> dict[str, str]:
    """Extract every entry into a temporary sibling of ``target``, then rename
    it to ``target``.  On any failure nothing exists at ``target``.

    Returns the SHA-256 (hex) of every file extracted, computed on the way,
    so integrity checks need not read the files again."""
    target = Path(target)
    entries = reader.entries()   # all names validated before anything is written
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError("extraction target exists and is not empty", where=str(target))
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    digests: dict[str, str] = {}
    made: set[str] = set()
    base = os.path.realpath(tmp)
    try:
        for e in entries:
            dest = os.path.normpath(os.path.join(base, *e.name.rstrip("/").split("/")))
            # Names were validated; this guards the guard (we create no symlinks).
            if not dest.startswith(base + os.sep):
                raise UnsafeArchiveError("entry would be written outside the target folder", where=e.name)
            folder = dest if e.is_dir else os.path.dirname(dest)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            if e.is_dir:
                continue
            sha = hashlib.sha256()
            with reader.open(e) as src, open(dest, "xb") as out:
                while chunk := src.read(1 << 20):
                    sha.update(chunk)
                    out.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            digests[e.name] = sha.hexdigest()
        os.chmod(tmp, 0o755)
        if target.is_dir():
            target.rmdir()
        os.rename(tmp, target)
        return digests
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
