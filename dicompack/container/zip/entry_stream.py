"""Streaming decompression of one entry: never reads past its compressed
bytes, checks size and compression ratio as output is produced (a zip bomb
is stopped after a few MB), CRC-32 and size at the end."""
from __future__ import annotations

import io
import zlib
from typing import IO, cast

import zstandard

from dicompack.container.zip.format import ZipEntry
from dicompack.container.zip.limits import ZipLimits
from dicompack.enums import ZipMethod
from dicompack.errors import DicompackError, PackageInvalidError, UnsafeArchiveError

CHUNK = 1 << 20    # most output one decompression step may produce
READ = 1 << 16     # compressed bytes read at a time


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


class EntryStream(io.RawIOBase):
    """Decompresses one entry lazily, at most CHUNK bytes a step; checks
    the size and ratio as output is produced (so a bomb is stopped after a
    few MB, not after it filled memory), CRC and size at the end."""

    def __init__(self, f, start: int, entry: ZipEntry, limits: ZipLimits):
        self._entry, self._limits = entry, limits
        self._src = _Slice(f, start, entry.compressed_size, entry.name)
        self._crc, self._out = 0, 0
        self._buf = memoryview(b"")
        self._done = False
        if entry.method == ZipMethod.DEFLATE:
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
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
        self._crc = zlib.crc32(data, self._crc)
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

