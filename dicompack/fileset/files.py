"""The files of a File-set on disk: an input instance copied (or moved)
to its File ID, with the preamble and File Meta PS3.10 demands, and the
digest that tells identical files apart."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from dicompack.dcmio import encode_meta
from dicompack.fileset.records import Record
from dicompack.scan import ScanResult

# The 128-byte preamble of a Part 10 file (PS3.10 7.1), written as zeros.
ZERO_PREAMBLE = b"\x00" * 128


def copy_instance(scan: ScanResult, dest: Path) -> int:
    """Copy one input file to ``dest``: unchanged, with its preamble zeroed,
    or with the File Meta and (zero) preamble the standard demands.  The
    source is never modified; only an unchanged file may be moved or copied
    whole.  Returns bytes written."""
    if scan.needs_rewrite:
        head, offset = encode_meta(scan.sop_class, scan.sop_instance, scan.transfer_syntax), scan.dataset_offset
    elif scan.clear_preamble:
        head, offset = ZERO_PREAMBLE, len(ZERO_PREAMBLE)
    else:
        if scan.owned and _moved(scan.path, dest):
            return scan.size
        shutil.copyfile(scan.path, dest)
        return scan.size
    with open(scan.path, "rb") as src, open(dest, "wb") as out:
        out.write(head)
        src.seek(offset)
        shutil.copyfileobj(src, out, 1 << 20)
        return out.tell()


def _moved(path: str, dest: Path) -> bool:
    """Rename a file this run staged into place (creating and writing a file
    costs far more than a rename); False across file systems."""
    try:
        os.replace(path, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        return False
    return True


def leaf_path(root: Path, leaf: Record) -> Path:
    """Where the file of ``leaf`` is below the File-set root: its File ID as a path."""
    if leaf.file_id is None:
        raise ValueError(f"{leaf.type} record at byte {leaf.offset} references no file")
    return root.joinpath(*leaf.file_id)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
