"""The DICOMDIR (PS3.3 Annex F Basic Directory IOD): its encoder (writer),
its decoder (reader, with the packed keys of read records) and the reading
of lower-level directory files some vendors split the index into (index)."""
from __future__ import annotations

from dicompack.fileset.dicomdir.index import (
    DIRECTORY_FILE_NAME,
    MAX_DIRECTORY_FILE_NESTING,
    MAX_DIRECTORY_FILES,
    read_index,
    references_directory_file,
)
from dicompack.fileset.dicomdir.packed import MAX_DICOMDIR_KEY_BYTES, MAX_RECORD_ELEMENTS, PackedElements
from dicompack.fileset.dicomdir.reader import (
    MAX_DICOMDIR_RECORDS,
    MAX_LISTED_LINK_FINDINGS,
    MAX_RECORD_DEPTH,
    MIN_RECORD_BYTES,
    DicomDir,
    parse_dicomdir_bytes,
    read_dicomdir,
)
from dicompack.fileset.dicomdir.writer import fileset_instance_uid, write_dicomdir, write_dicomdir_file

__all__ = [
    "DIRECTORY_FILE_NAME",
    "MAX_DICOMDIR_KEY_BYTES",
    "MAX_DICOMDIR_RECORDS",
    "MAX_DIRECTORY_FILES",
    "MAX_DIRECTORY_FILE_NESTING",
    "MAX_LISTED_LINK_FINDINGS",
    "MAX_RECORD_DEPTH",
    "MAX_RECORD_ELEMENTS",
    "MIN_RECORD_BYTES",
    "DicomDir",
    "PackedElements",
    "fileset_instance_uid",
    "parse_dicomdir_bytes",
    "read_dicomdir",
    "read_index",
    "references_directory_file",
    "write_dicomdir",
    "write_dicomdir_file",
]
