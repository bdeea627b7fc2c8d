"""extract_atomically: a whole ZIP into a private staging folder, renamed
to its target only once every entry is written and checked."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dicompack.container.zip.entry_stream import CHUNK
from dicompack.container.zip.format import ZipEntry
from dicompack.container.zip.reader import ZipReader
from dicompack.errors import StorageError, UnsafeArchiveError, UsageError

# The staging folder's name: dicompack.output.sweep_stale removes the
# leftovers of killed runs by this pattern (".<name>.dicompack-tmp-<pid>-"),
# so it must stay what dicompack.output.temp_prefix makes (a test keeps the
# two equal).  The container does not import the application's helpers.
STAGING_MARK = ".dicompack-tmp-"


def staging_prefix(name: str) -> str:
    """Prefix of the staging folder of target ``name``; it carries our PID so
    that a later run can tell leftovers of a killed run from live ones."""
    return f".{name}{STAGING_MARK}{os.getpid()}-"


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
    tmp = Path(tempfile.mkdtemp(prefix=staging_prefix(target.name), dir=target.parent))
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
            while chunk := src.read(CHUNK):
                sha.update(chunk)
                out.write(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        return sha.hexdigest()
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        # Only a file system folding names in a way NameIndex did not foresee gets here.
        raise UnsafeArchiveError("entry collides with another entry on this file system", where=e.name) from None
    except OSError as exc:
        raise StorageError(f"cannot extract: {exc.strerror or exc}", where=e.name) from None
