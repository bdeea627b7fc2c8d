"""Precompressed entries, for --split: entries compressed once into a
spool, volumes assembled from their compressed bytes, every volume's size
known to the byte before it is written."""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

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
from dicompack.container.zip.writer import compress_into, compressor
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
        crc, size, csize, sha256 = compress_into(src, compressor(method), self._f.write, self._chunk)
        return SpooledEntry(EntryInfo("", size, csize, crc, sha256, method), offset)

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
    crc, size, csize, sha256 = compress_into(io.BytesIO(data), compressor(method), out.write, 1 << 20)
    return EntryInfo(name, size, csize, crc, sha256, method), out.getvalue()



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

