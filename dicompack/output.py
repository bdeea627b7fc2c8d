"""Atomic outputs: everything is written into a temporary sibling of the
destination and renamed into place only when complete, so an interrupted or
failed run leaves nothing at the destination."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError, UsageError

TMP_MARK = ".dicompack-tmp-"


def check_destination(dest: Path, *, force: bool) -> None:
    """Refuse a destination we would clobber, before any work is done."""
    if not dest.exists() and not dest.is_symlink():
        if not dest.parent.is_dir():
            raise UsageError("parent folder does not exist", where=str(dest))
        return
    if dest.is_dir() and not dest.is_symlink():
        if any(dest.iterdir()) and not force:
            raise OutputExistsError("destination is not empty (use --force to replace it)",
                                    where=str(dest))
    elif not force:
        raise OutputExistsError("destination exists (use --force to replace it)", where=str(dest))


@contextmanager
def atomic_directory(dest: Path, *, force: bool = False):
    """Yield a temporary directory that becomes ``dest`` on success."""
    dest = Path(dest)
    check_destination(dest, force=force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}{TMP_MARK}", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it private
        _replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(dest: Path, *, force: bool = False):
    """Yield an open binary file that becomes ``dest`` on success."""
    dest = Path(dest)
    check_destination(dest, force=force)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}{TMP_MARK}", dir=dest.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        _replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(tmp: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink():
        if any(dest.iterdir()):
            # --force on a non-empty folder: swap, then delete the old one.
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rename(dest, old / "x")
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
            return
        dest.rmdir()
    os.replace(tmp, dest)
