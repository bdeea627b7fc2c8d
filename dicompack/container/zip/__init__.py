"""ZIP container: a streaming writer and a hardened reader/extractor.

Where things are:
  format.py        record layouts, signatures, method ids, EntryInfo / ZipEntry
  limits.py        ZipLimits, every bound the reader enforces
  names.py         which entry names may be extracted (unsafe_name_reason) and
                   which clash on a file system (NameIndex)
  deflate.py       fast deflate (libdeflate / ISA-L / zlib), Deflater: entries
                   compressed ahead on a thread pool, bounded, deterministic
  writer.py        ZipWriter (streaming, ZIP64 only where needed)
  spool.py         precompressed entries for --split (EntrySpool, precompressed_zip_size)
  reader.py        ZipReader: central directory, per-entry checks, layout tiling
  entry_stream.py  decompression of one entry with the size/ratio/CRC checks
  extract.py       extract_atomically

Every error raised to a caller is a DicompackError (PackageInvalidError,
UnsafeArchiveError, StorageError, UsageError).
"""
from dicompack.container.zip.deflate import DEFAULT_LEVEL as DEFAULT_ZIP_LEVEL
from dicompack.container.zip.deflate import MAX_LEVEL as MAX_ZIP_LEVEL
from dicompack.container.zip.deflate import MIN_LEVEL as MIN_ZIP_LEVEL
from dicompack.container.zip.deflate import backends as deflate_backends
from dicompack.container.zip.extract import extract_atomically
from dicompack.container.zip.format import METHOD_IDS, EntryInfo, ZipEntry
from dicompack.container.zip.limits import MANIFEST_NAME, ZipLimits
from dicompack.container.zip.names import check_entry_name, collision_key, unsafe_name_reason
from dicompack.container.zip.reader import ZipReader
from dicompack.container.zip.spool import EntrySpool, SpooledEntry, compress_bytes, precompressed_zip_size
from dicompack.container.zip.writer import ZipWriter

__all__ = [
    "DEFAULT_ZIP_LEVEL",
    "MAX_ZIP_LEVEL",
    "MIN_ZIP_LEVEL",
    "METHOD_IDS",
    "EntryInfo",
    "EntrySpool",
    "SpooledEntry",
    "ZipEntry",
    "MANIFEST_NAME", "ZipLimits",
    "ZipReader",
    "ZipWriter",
    "check_entry_name",
    "collision_key",
    "compress_bytes",
    "deflate_backends",
    "extract_atomically",
    "precompressed_zip_size",
    "unsafe_name_reason",
]
