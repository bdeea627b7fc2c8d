"""Streaming decompression of one entry: never reads past its compressed
bytes, checks size and compression ratio as output is produced (a zip bomb
is stopped after a few MB), CRC-32 and size at the end.

Deflate is inflated by ISA-L (``isal``, about twice zlib's speed) when its
wheel is installed, else by zlib; both stream with a bounded output step, so
every check below is the same for either.  (libdeflate inflates a whole
buffer only, and measured no faster than ISA-L's streaming here.)"""
from __future__ import annotations

import io
import threading
import zlib
from collections.abc import Iterator
from typing import IO, Any, cast

import zstandard

from dicompack.container.zip.format import ZipEntry
from dicompack.container.zip.limits import ZipLimits
from dicompack.enums import ZipMethod
from dicompack.errors import DicompackError, PackageInvalidError, UnsafeArchiveError

CHUNK = 1 << 20    # most output one decompression step may produce
READ = 1 << 16     # compressed bytes read at a time


def _load_inflate() -> Any:
    try:
        from isal import isal_zlib  # optional wheel: ISA-L, the same interface as zlib, ~2x faster
    except ImportError:
        return zlib
    return isal_zlib


# decompressobj(-15) and crc32 of ISA-L, else of zlib (tests swap it for zlib).
INFLATE: Any = _load_inflate()


class _Slice:
    """The compressed bytes of one entry and nothing beyond them: a
    decompressor can never read into the next entry.  ``lock`` guards the
    shared file's seek + read when entries are extracted by several threads."""

    def __init__(self, f, start: int, length: int, name: str, lock: threading.Lock | None = None):
        self._f, self._pos, self.left, self._name = f, start, length, name
        self._lock = lock
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n == 0:
            return b""
        if self._lock is None:
            self._f.seek(self._pos)
            data = self._f.read(n)
        else:
            with self._lock:
                self._f.seek(self._pos)
                data = self._f.read(n)
        if not data:
            raise PackageInvalidError("entry data cut short", where=self._name)
        self._pos += len(data)
        self.left -= len(data)
        self.consumed += len(data)
        return data


class EntryStream(io.RawIOBase):
    """Decompresses one entry lazily, at most CHUNK bytes a step; checks
    the size and ratio as output is produced (so a bomb is stopped after a
    few MB, not after it filled memory), CRC and size at the end."""

    def __init__(self, f, start: int, entry: ZipEntry, limits: ZipLimits, lock: threading.Lock | None = None):
        self._entry, self._limits = entry, limits
        self._src = _Slice(f, start, entry.compressed_size, entry.name, lock)
        self._crc, self._out = 0, 0
        self._buf = memoryview(b"")
        self._done = False
        self._inflate = INFLATE
        if entry.method == ZipMethod.DEFLATE:
            self._zlib = self._inflate.decompressobj(-zlib.MAX_WBITS)
            self._next = self._next_deflated
        elif entry.method == ZipMethod.ZSTD:
            # zstandard only calls read() on its source; its stubs ask for IO[bytes].
            source = cast("IO[bytes]", self._src)
            self._zstd = zstandard.ZstdDecompressor(max_window_size=limits.max_zstd_window).stream_reader(
                source, read_size=READ, read_across_frames=True, closefd=False)
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

    def chunks(self) -> Iterator[bytes]:
        """The content, a checked step (at most CHUNK bytes) at a time,
        without the copy readinto makes; the end checks run after the last.
        Not to be mixed with read()."""
        while not self._done:
            data = self._checked_step()
            if data:
                yield data

    def _step(self) -> None:
        data = self._checked_step()
        if data:
            self._buf = memoryview(data)

    def _checked_step(self) -> bytes:
        """The next output, size and ratio checked; b"" once the end checks passed."""
        try:
            data = self._next()
        except DicompackError:
            raise
        except Exception as exc:   # zlib.error, isal_zlib.error, zstandard.ZstdError: damaged or hostile data
            raise PackageInvalidError(f"compressed data is damaged ({exc})", where=self._entry.name) from None
        if data:
            self._account(data)
        else:
            self._finish()
        return data

    def _next_stored(self) -> bytes:
        return self._src.read(CHUNK)

    def _next_deflated(self) -> bytes:
        dec = self._zlib
        while not dec.eof:
            data_in = dec.unconsumed_tail or self._src.read(READ)
            if not data_in:
                # All input given: what zlib still holds is at most one
                # pending match (258 bytes), so an unbounded flush is safe.
                return dec.flush()
            out = dec.decompress(data_in, CHUNK)
            if out:
                return out
        if dec.unused_data or self._src.left:
            raise PackageInvalidError("bytes after the end of the compressed data", where=self._entry.name)
        return b""

    def _next_zstd(self) -> bytes:
        return self._zstd.read(CHUNK)

    def _consumed(self) -> int:
        if self._entry.method == ZipMethod.DEFLATE:
            return self._src.consumed - len(self._zlib.unconsumed_tail)
        return self._src.consumed

    def _account(self, data: bytes) -> None:
        name = self._entry.name
        self._out += len(data)
        self._crc = self._inflate.crc32(data, self._crc)
        if self._out > self._entry.size:
            raise PackageInvalidError("entry is larger than its declared size", where=name)
        if self._out > self._limits.ratio_grace and self._out > self._limits.max_ratio * max(self._consumed(), 1):
            raise UnsafeArchiveError(f"compression ratio above {self._limits.max_ratio:.0f}:1 (zip bomb?)",
                                     where=name)

    def _finish(self) -> None:
        name = self._entry.name
        self._done = True
        if self._entry.method == ZipMethod.DEFLATE and not self._zlib.eof:
            raise PackageInvalidError("compressed data is truncated", where=name)
        if self._src.left:
            raise PackageInvalidError("bytes after the end of the compressed data", where=name)
        if self._out != self._entry.size:
            raise PackageInvalidError(f"entry has {self._out} bytes, {self._entry.size} declared", where=name)
        if self._crc != self._entry.crc32:
            raise PackageInvalidError("CRC-32 mismatch (entry damaged)", where=name)

