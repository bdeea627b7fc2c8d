"""Receive: what the caller handed us, as a path.  Streams are spooled to
a private file (ZIPs need seeking); a File-set may be given as its folder,
its DICOMDIR or a ZIP."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from dicompack.errors import UsageError
from dicompack.output import private_tempdir
from dicompack.packing.writers import is_stream
from dicompack.receiving.policy import SourceKind, sniff
from dicompack.receiving.zipcheck import staged_zip


@contextmanager
def fileset_root(path):
    """The root folder of a File-set given as a folder, its DICOMDIR, or a
    ZIP package (extracted into a private temporary folder meanwhile)."""
    path = Path(path)
    if path.is_file() and path.name.upper() == "DICOMDIR":
        yield path.parent
    elif path.is_dir():
        yield path
    elif path.is_file():
        if sniff(path) != SourceKind.ZIP:
            raise UsageError("not a File-set folder, DICOMDIR or ZIP", where=str(path))
        with staged_zip(path, Path(tempfile.gettempdir())) as (root, _result, _reader):
            yield root
    else:
        raise UsageError("no such file or folder", where=str(path))


def as_path(src, stack) -> Path:
    """A readable stream is spooled to a private temporary file (ZIPs need seeking)."""
    if not is_stream(src):
        path = Path(src)
        if not path.exists():
            raise UsageError("no such file or folder", where=str(src))
        return path
    spool = stack.enter_context(private_tempdir("spool")) / "package"
    with open(spool, "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)
    return spool


def label_of(src) -> str:
    return "<stream>" if is_stream(src) else str(src)
