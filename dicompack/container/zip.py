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

import bisect
import hashlib
import io
import os
import re
import shutil
import stat
import struct
import tempfile
import unicodedata
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dicompack.container.manifest import MANIFEST_NAME
from dicompack.errors import DicompackError, PackageInvalidError, StorageError, UnsafeArchiveError, UsageError
from dicompack.output import temp_prefix

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


def check_entry_name(name: str, limits: ZipLimits | None = None) -> None:
    """Refuse names that would be unsafe or non-portable to extract."""
    reason = unsafe_name_reason(name, limits)
    if reason:
        raise UnsafeArchiveError(reason, where=name)


_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters Windows refuses in file names (':' also opens NTFS alternate
# data streams: "IM1:hidden" would write a stream, not a file).
_WINDOWS_FORBIDDEN = frozenset(':<>"|?*')
# Windows device names: "CON", "aux.txt", "LPT1.dcm" open the device, not a
# file, whatever the extension (the superscript digits count since Windows 11).
_WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
                             | {f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"})


def unsafe_name_reason(name: str, limits: ZipLimits | None = None) -> str | None:
    """Why ``name`` must not be extracted, or None.  A name is refused rather
    than normalised: './A', 'a//b', 'A.' or 'A ' would otherwise land on the
    same file as 'A', 'a/b' on some system, behind the duplicate check."""
    limits = limits or ZipLimits()
    if not name:
        return "empty entry name"
    if len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        return f"entry name longer than {limits.max_name_bytes} bytes"
    if _CONTROL.search(name):
        return "control character in entry name"
    if "\\" in name:
        return "backslash in entry name (path separator of another system)"
    if name.startswith("/"):
        return "absolute path in entry name"
    if _DRIVE.match(name):
        return "drive letter in entry name"
    # A trailing '/' marks a folder entry; every other '/' separates components.
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if len(parts) > limits.max_path_depth:
        return f"entry name has more than {limits.max_path_depth} path components"
    for part in parts:
        reason = _unsafe_component_reason(part, limits)
        if reason:
            return reason
    return None


def _unsafe_component_reason(part: str, limits: ZipLimits) -> str | None:
    if part == "":
        return "empty path component ('//') in entry name"
    if part == "..":
        return "'..' in entry name would escape the target folder"
    if part == ".":
        return "'.' path component in entry name"
    if len(part.encode("utf-8", "surrogatepass")) > limits.max_component_bytes:
        return f"path component longer than {limits.max_component_bytes} bytes"
    if _WINDOWS_FORBIDDEN.intersection(part):
        return "character not allowed in Windows file names (':' would open an NTFS alternate data stream)"
    if part[-1] in ". ":
        # Windows drops trailing dots and spaces: 'A.' and 'A' are one file.
        return "path component ends with a dot or a space"
    if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return "reserved Windows device name in entry name"
    return None


def collision_key(name: str) -> str:
    """The name as case-insensitive, normalisation-insensitive file systems
    (Windows, macOS) see it: two entries with one key are one file there."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


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

    def __enter__(self) -> ZipWriter:
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
        return _compress_into(src, comp, self._write, self._chunk)

    def add_precompressed(self, info: EntryInfo, chunks: Iterable[bytes]) -> EntryInfo:
        """Add an entry compressed earlier (``EntrySpool``): ``chunks`` are
        its ``info.compressed_size`` compressed bytes.  CRC and sizes are
        known, so the local header carries them even on a pipe (no data
        descriptor) and the bytes written are exactly
        ``entry_bytes(info, offset)`` — what ``precompressed_zip_size`` adds up."""
        name = info.name
        check_entry_name(name)
        if name in self._names:
            raise UsageError("duplicate entry name", where=name)
        self._names.add(name)
        encoded = name.encode("utf-8")
        flags = FLAG_UTF8 if not name.isascii() else 0
        offset = self._pos
        zip64 = _needs_zip64_local(info)
        extra = struct.pack("<HHQQ", 1, 16, info.size, info.compressed_size) if zip64 else b""
        version = 45 if extra or offset >= U32_MAX else 20
        self._write(_LOCAL.pack(LOCAL_SIG, version, flags, METHOD_IDS[info.method], self._time, self._date,
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


def _compress_into(src: BinaryIO, comp, write: Callable[[bytes], object], chunk_size: int):
    """Read ``src`` to its end, compressing (``comp`` None: storing) into
    ``write``; CRC-32 and SHA-256 of the uncompressed bytes on the way."""
    crc, size, csize, sha = 0, 0, 0, hashlib.sha256()
    while True:
        chunk = src.read(chunk_size)
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        sha.update(chunk)
        size += len(chunk)
        out = comp.compress(chunk) if comp else chunk
        if out:
            csize += len(out)
            write(out)
    if comp:
        tail = comp.flush()
        csize += len(tail)
        write(tail)
    return crc, size, csize, sha


# ---------------------------------------------------------------- precompressed entries
#
# --split plans volumes from real compressed sizes: every entry is compressed
# once into a spool, each volume is then assembled by copying compressed
# bytes (ZipWriter.add_precompressed), and its size is known to the byte
# before it is written (precompressed_zip_size).

@dataclass(frozen=True)
class SpooledEntry:
    """An entry compressed into a spool file: its headers' values (the name
    is given when it is placed: one instance gets a File ID per volume) and
    where its compressed bytes are."""
    info: EntryInfo
    offset: int


class EntrySpool:
    """One private file holding compressed entries back to back."""

    def __init__(self, path, *, chunk_size: int = 1 << 20):
        self._f = open(path, "w+b")
        self._chunk = chunk_size

    def __enter__(self) -> EntrySpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def add_stream(self, src: BinaryIO, *, method: str) -> SpooledEntry:
        offset = self._f.seek(0, os.SEEK_END)
        crc, size, csize, sha = _compress_into(src, _compressor(method), self._f.write, self._chunk)
        return SpooledEntry(EntryInfo("", size, csize, crc, sha.hexdigest(), method), offset)

    def chunks(self, entry: SpooledEntry) -> Iterator[bytes]:
        """The compressed bytes of ``entry``, read with pread (the spool's
        file position is left alone)."""
        self._f.flush()
        fd, pos, left = self._f.fileno(), entry.offset, entry.info.compressed_size
        while left:
            chunk = os.pread(fd, min(left, self._chunk), pos)
            if not chunk:
                raise StorageError("spool file is shorter than its entries", where="spool")
            pos += len(chunk)
            left -= len(chunk)
            yield chunk


def compress_bytes(name: str, data: bytes, method: str) -> tuple[EntryInfo, bytes]:
    """An in-memory entry (DICOMDIR, manifest) compressed for add_precompressed."""
    out = io.BytesIO()
    crc, size, csize, sha = _compress_into(io.BytesIO(data), _compressor(method), out.write, 1 << 20)
    return EntryInfo(name, size, csize, crc, sha.hexdigest(), method), out.getvalue()


def _needs_zip64_local(info: EntryInfo) -> bool:
    return info.size >= U32_MAX or info.compressed_size >= U32_MAX


def precompressed_zip_size(entries: list[EntryInfo]) -> int:
    """Exact bytes ZipWriter writes on a fresh output for ``entries`` added
    with add_precompressed, in this order, then closed."""
    offset, central = 0, 0
    for info in entries:
        name_len = len(info.name.encode("utf-8"))
        wide = sum(v >= U32_MAX for v in (info.size, info.compressed_size, offset))
        central += _CENTRAL.size + name_len + (4 + 8 * wide if wide else 0)
        offset += _LOCAL.size + name_len + (20 if _needs_zip64_local(info) else 0) + info.compressed_size
    start = offset
    end = _EOCD.size
    if len(entries) >= U16_MAX or start >= U32_MAX or central >= U32_MAX:
        end += _EOCD64.size + _LOCATOR.size
    return start + central + end


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class ZipLimits:
    """Every limit the reader enforces, in one place (spec/threat-model.md).

    They bound disk, memory and CPU before anything in a ZIP is trusted; a
    ZIP crossing one is refused (UnsafeArchiveError, exit 5) naming the entry."""
    # Each entry is held (~0.3 KB) until the end: 250,000 keeps a ZIP of
    # empty entries under the 200 MB hostile-input bound (500,000 took
    # 338 MB).  A dicompack ZIP has at most ~157,000 (its manifest cap).
    max_entries: int = 250_000
    max_entry_size: int = 64 << 30          # declared uncompressed size of one entry
    max_total_size: int = 256 << 30         # sum of the declared sizes
    # Uncompressed / compressed: per entry as its output is produced (past
    # ratio_grace bytes of output), and for the declared sizes of the whole
    # archive against its size on disk (past ratio_grace_total bytes).
    max_ratio: float = 200.0
    ratio_grace: int = 1 << 20
    ratio_grace_total: int = 64 << 20
    # Names: UTF-8 bytes of a whole name, path components in it, UTF-8
    # bytes per component (NAME_MAX of common file systems).
    max_name_bytes: int = 1024
    max_path_depth: int = 32
    max_component_bytes: int = 255
    # All names together: each is held as a str; 1 KiB names on every entry
    # would otherwise cost 250 MB.  Ours: ~60 bytes an entry.
    max_names_bytes: int = 32 << 20
    # The manifest is parsed in memory: it may take 64 KiB plus
    # manifest_bytes_per_entry per ZIP entry (ours takes about 160 bytes an
    # entry), never more than max_manifest_size (ours for 150,000 entries;
    # use --split beyond), at least manifest_bytes_per_value bytes per JSON
    # value (ours about 21), and may nest no deeper than max_manifest_depth
    # (ours nests 3 deep).
    max_manifest_size: int = 24 << 20
    manifest_bytes_per_entry: int = 512
    manifest_bytes_per_value: int = 16
    # Estimated peak memory of parsing the manifest (its bytes, text and
    # Python objects, see manifest.parse_manifest): bounds what the size cap
    # alone does not (24 MiB of short strings took 260 MB).
    max_manifest_memory: int = 112 << 20
    max_manifest_depth: int = 8
    # A zstd frame may ask for a window of up to 2 GiB, which the decoder
    # would allocate; level 19 uses 8 MiB.
    max_zstd_window: int = 32 << 20

    def manifest_cap(self, entries: int) -> int:
        """Most bytes a manifest may have in a ZIP of ``entries`` entries."""
        return min(self.max_manifest_size, (64 << 10) + self.manifest_bytes_per_entry * entries)


# slots: a ZIP may list max_entries entries, each held until the end.  The
# raw name is not kept: decoding it is one-to-one (strict UTF-8, or cp437),
# so the local header's name is compared decoded (_decoded_name).
@dataclass(frozen=True, slots=True)
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


def _decoded_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437")


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
        self._f.seek(pos)
        return self._f.read(n)

    def _read_central_directory(self) -> list[ZipEntry]:
        tail_len = min(self._size, 22 + 65535)
        tail = self._read_at(self._size - tail_len, tail_len)
        at = tail.rfind(struct.pack("<I", EOCD_SIG))
        if at < 0:
            raise PackageInvalidError("not a ZIP file (no end of central directory record)", where="ZIP")
        eocd_pos = self._size - tail_len + at
        _, disk, _, _, count, cd_size, cd_offset, comment_len = _EOCD.unpack(tail[at:at + 22])
        if disk != 0:
            raise PackageInvalidError("multi-disk ZIP archives are not supported", where="ZIP")
        if eocd_pos + 22 + comment_len != self._size:
            raise UnsafeArchiveError("bytes after the end of the ZIP belong to no entry (appended data)", where="ZIP")
        cd_end = eocd_pos
        if eocd_pos >= 20:
            locator = self._read_at(eocd_pos - 20, 20)
            sig, _, eocd64_pos, _ = _LOCATOR.unpack(locator)
            if sig == LOCATOR_SIG:
                rec = _EOCD64.unpack(self._read_at(eocd64_pos, 56))
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
            fields = _CENTRAL.unpack(data.take(46))
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
            size, csize, offset = _zip64_values(extra, size, csize, offset)
            name = _decoded_name(raw_name, flags)
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
        names = _NameIndex()
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
        sig, _, flags, method, _, _, crc, csize, size, nlen, xlen = _LOCAL.unpack(self._read_at(e.header_offset, 30))
        if sig != LOCAL_SIG:
            raise PackageInvalidError("local header missing", where=e.name)
        rest = self._read_at(e.header_offset + 30, nlen + xlen)
        try:
            same_name = _decoded_name(rest[:nlen], e.flags) == e.name
        except UnicodeDecodeError:
            same_name = False
        if not same_name:
            raise UnsafeArchiveError("local header name differs from the central directory", where=e.name)
        if method != METHOD_IDS[e.method] or (flags ^ e.flags) & (FLAG_ENCRYPTED | FLAG_DESCRIPTOR):
            raise UnsafeArchiveError("local header method or flags differ from the central directory", where=e.name)
        size, csize, _ = _zip64_values(rest[nlen:], size, csize, 0)
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
        self.entries()      # never decompress anything before the whole archive is checked
        i = bisect.bisect_left(self._header_offsets, e.header_offset)
        if i == len(self._header_offsets) or self._header_offsets[i] != e.header_offset:
            raise PackageInvalidError("not an entry of this ZIP", where=e.name)
        start = self._data_offsets[i]
        return io.BufferedReader(_EntryStream(self._f, start, e, self.limits), _CHUNK)

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
                    while f.read(_CHUNK):
                        pass
            except PackageInvalidError as exc:
                problems.append((e.name, exc.message))
        return problems


class _NameIndex:
    """Refuses names one file system would merge into one file: duplicates,
    names differing only in case or Unicode normalisation (composed and
    decomposed 'é' are one file on macOS), and a file where another entry
    needs a folder."""

    def __init__(self) -> None:
        self._files: dict[str, str] = {}       # collision key -> name as spelled
        self._folders: dict[str, str] = {}
        self._folder_entries: set[str] = set()
        self._claimed: set[str] = set()         # folders already claimed, as spelled

    def add(self, e: ZipEntry) -> None:
        path = e.name.rstrip("/")
        parts = path.split("/")
        # Deepest parent first: once one is known, so are all above it.
        for depth in range(len(parts) - 1, 0, -1):
            folder = "/".join(parts[:depth])
            if folder in self._claimed:
                break
            self._claim_folder(collision_key(folder), folder, e.name)
            self._claimed.add(folder)
        key = collision_key(path)
        if e.is_dir:
            if key in self._folder_entries:
                raise UnsafeArchiveError("duplicate entry name", where=e.name)
            self._folder_entries.add(key)
            self._claim_folder(key, path, e.name)
            return
        if key in self._folders:
            raise UnsafeArchiveError(f"is a file where {self._folders[key]!r} is a folder of other entries",
                                     where=e.name)
        other = self._files.get(key)
        if other == path:
            raise UnsafeArchiveError("duplicate entry name", where=e.name)
        if other is not None:
            raise UnsafeArchiveError(f"name differs only in case or Unicode normalisation from {other!r}",
                                     where=e.name)
        self._files[key] = path

    def _claim_folder(self, key: str, path: str, name: str) -> None:
        other = self._files.get(key)
        if other is not None:
            raise UnsafeArchiveError(f"needs a folder where {other!r} is a file", where=name)
        other = self._folders.setdefault(key, path)
        if other != path:
            raise UnsafeArchiveError(f"folder {path!r} differs only in case or Unicode normalisation "
                                     f"from {other!r}", where=name)


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
            more = min(self.left - (len(self._buf) - self._pos), max(n, _READ * 16))
            self._buf = self._buf[self._pos:] + self._reader._read_at(self._next, more)
            self._next += more
            self._pos = 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        self.left -= n
        return out


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


_CHUNK = 1 << 20    # most output one decompression step may produce
_READ = 1 << 16     # compressed bytes read at a time


class _Slice:
    """The compressed bytes of one entry and nothing beyond them: a
    decompressor can never read into the next entry."""

    def __init__(self, f, start: int, length: int, name: str):
        self._f, self._pos, self.left, self._name = f, start, length, name
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n == 0:
            return b""
        self._f.seek(self._pos)
        data = self._f.read(n)
        if not data:
            raise PackageInvalidError("entry data cut short", where=self._name)
        self._pos += len(data)
        self.left -= len(data)
        self.consumed += len(data)
        return data


class _EntryStream(io.RawIOBase):
    """Decompresses one entry lazily, at most _CHUNK bytes a step; checks
    the size and ratio as output is produced (so a bomb is stopped after a
    few MB, not after it filled memory), CRC and size at the end."""

    def __init__(self, f, start: int, entry: ZipEntry, limits: ZipLimits):
        self._entry, self._limits = entry, limits
        self._src = _Slice(f, start, entry.compressed_size, entry.name)
        self._crc, self._out = 0, 0
        self._buf = memoryview(b"")
        self._done = False
        if entry.method == "deflate":
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._next = self._next_deflated
        elif entry.method == "zstd":
            import zstandard
            self._zstd = zstandard.ZstdDecompressor(max_window_size=limits.max_zstd_window).stream_reader(
                self._src, read_size=_READ, read_across_frames=True, closefd=False)
            self._next = self._next_zstd
        else:
            self._next = self._next_stored

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf and not self._done:
            self._step()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def _step(self) -> None:
        try:
            data = self._next()
        except DicompackError:
            raise
        except Exception as exc:   # zlib.error, zstandard.ZstdError: damaged or hostile data
            raise PackageInvalidError(f"compressed data is damaged ({exc})", where=self._entry.name) from None
        if data:
            self._account(data)
            self._buf = memoryview(data)
        else:
            self._finish()

    def _next_stored(self) -> bytes:
        return self._src.read(_CHUNK)

    def _next_deflated(self) -> bytes:
        dec = self._zlib
        while not dec.eof:
            data_in = dec.unconsumed_tail or self._src.read(_READ)
            if not data_in:
                # All input given: what zlib still holds is at most one
                # pending match (258 bytes), so an unbounded flush is safe.
                return dec.flush()
            out = dec.decompress(data_in, _CHUNK)
            if out:
                return out
        if dec.unused_data or self._src.left:
            raise PackageInvalidError("bytes after the end of the compressed data", where=self._entry.name)
        return b""

    def _next_zstd(self) -> bytes:
        return self._zstd.read(_CHUNK)

    def _consumed(self) -> int:
        if self._entry.method == "deflate":
            return self._src.consumed - len(self._zlib.unconsumed_tail)
        return self._src.consumed

    def _account(self, data: bytes) -> None:
        name = self._entry.name
        self._out += len(data)
        self._crc = zlib.crc32(data, self._crc)
        if self._out > self._entry.size:
            raise PackageInvalidError("entry is larger than its declared size", where=name)
        if self._out > self._limits.ratio_grace and self._out > self._limits.max_ratio * max(self._consumed(), 1):
            raise UnsafeArchiveError(f"compression ratio above {self._limits.max_ratio:.0f}:1 (zip bomb?)",
                                     where=name)

    def _finish(self) -> None:
        name = self._entry.name
        self._done = True
        if self._entry.method == "deflate" and not self._zlib.eof:
            raise PackageInvalidError("compressed data is truncated", where=name)
        if self._src.left:
            raise PackageInvalidError("bytes after the end of the compressed data", where=name)
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
    entries = reader.entries()   # all names and the layout checked before anything is written
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError("extraction target exists and is not empty", where=str(target))
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    digests: dict[str, str] = {}
    made: set[str] = set()
    base = os.path.realpath(tmp)
    try:
        for e in entries:
            digest = _extract_entry(reader, e, base, made, on_bytes)
            if digest is not None:
                digests[e.name] = digest
        os.chmod(tmp, 0o755)
        if target.is_dir():
            target.rmdir()
        os.rename(tmp, target)
        return digests
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extract_entry(reader: ZipReader, e: ZipEntry, base: str, made: set[str],
                   on_bytes: Callable[[int], None] | None) -> str | None:
    """Write one entry under ``base``; its SHA-256, None for a folder.  OS
    errors name the entry, never the private staging path."""
    dest = os.path.normpath(os.path.join(base, *e.name.rstrip("/").split("/")))
    # Names were validated; this guards the guard (we create no symlinks).
    if not dest.startswith(base + os.sep):
        raise UnsafeArchiveError("entry would be written outside the target folder", where=e.name)
    folder = dest if e.is_dir else os.path.dirname(dest)
    try:
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        if e.is_dir:
            return None
        sha = hashlib.sha256()
        with reader.open(e) as src, open(dest, "xb") as out:
            while chunk := src.read(_CHUNK):
                sha.update(chunk)
                out.write(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        return sha.hexdigest()
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        # Only a file system folding names in a way _NameIndex did not foresee gets here.
        raise UnsafeArchiveError("entry collides with another entry on this file system", where=e.name) from None
    except OSError as exc:
        raise StorageError(f"cannot extract: {exc.strerror or exc}", where=e.name) from None
