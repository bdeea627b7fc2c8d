"""Precompressed entries, for --split: entries compressed once into a
spool, volumes assembled from their compressed bytes, every volume's size
known to the byte before it is written."""
from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, BinaryIO

from dicompack.container.zip.deflate import DEFAULT_LEVEL, Deflater, compress_whole
from dicompack.container.zip.format import (
    CENTRAL_HEADER,
    EOCD64_RECORD,
    EOCD_RECORD,
    LOCAL_HEADER,
    LOCATOR_RECORD,
    U16_MAX,
    U32_MAX,
    EntryInfo,
    needs_zip64_local,
)
from dicompack.errors import StorageError

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
    """One private file holding compressed entries back to back, compressed
    ahead on ``workers`` threads at ``level`` (``deflate.Deflater``)."""

    def __init__(self, path, *, chunk_size: int = 1 << 20, level: int = DEFAULT_LEVEL, workers: int | None = None):
        self._deflater = Deflater(level=level, workers=workers)
        self._f = open(path, "w+b")
        self._chunk = chunk_size

    def __enter__(self) -> EntrySpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._deflater.close()
        self._f.close()

    def add_stream(self, src: BinaryIO, *, method: str) -> SpooledEntry:
        """One entry from ``src`` (read to its end, not closed)."""
        return next(self.add_streams([(None, lambda: nullcontext(src), method)]))[1]

    def add_streams(self, items: Iterable[tuple[Any, Callable, str]]) -> Iterator[tuple[Any, SpooledEntry]]:
        """Entries ``(key, open, method)`` in order (``open()`` as for
        ``ZipWriter.add_streams``); yields ``(key, entry)`` as each is spooled."""
        keyed = (((key, method), open_src, method) for key, open_src, method in items)
        offset = self._f.seek(0, os.SEEK_END)
        pieces = self._deflater.pieces(keyed)
        try:
            for piece in pieces:
                self._f.write(piece.data)
                if piece.done is not None:
                    (key, method), done = piece.key, piece.done
                    info = EntryInfo("", done.size, done.compressed_size, done.crc32, done.sha256, method)
                    yield key, SpooledEntry(info, offset)
                    offset += done.compressed_size
        finally:
            pieces.close()

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


def compress_bytes(name: str, data: bytes, method: str, level: int = DEFAULT_LEVEL) -> tuple[EntryInfo, bytes]:
    """An in-memory entry (DICOMDIR, manifest) compressed for add_precompressed."""
    packed = bytes(compress_whole(data, method, level))
    return EntryInfo(name, len(data), len(packed), zlib.crc32(data), hashlib.sha256(data).hexdigest(), method), packed



def precompressed_zip_size(entries: list[EntryInfo]) -> int:
    """Exact bytes ZipWriter writes on a fresh output for ``entries`` added
    with add_precompressed, in this order, then closed."""
    offset, central = 0, 0
    for info in entries:
        name_len = len(info.name.encode("utf-8"))
        wide = sum(v >= U32_MAX for v in (info.size, info.compressed_size, offset))
        central += CENTRAL_HEADER.size + name_len + (4 + 8 * wide if wide else 0)
        offset += LOCAL_HEADER.size + name_len + (20 if needs_zip64_local(info) else 0) + info.compressed_size
    start = offset
    end = EOCD_RECORD.size
    if len(entries) >= U16_MAX or start >= U32_MAX or central >= U32_MAX:
        end += EOCD64_RECORD.size + LOCATOR_RECORD.size
    return start + central + end

