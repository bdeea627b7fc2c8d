"""Atomic outputs: everything is written into a temporary sibling of the
destination and renamed into place only when complete, so an interrupted or
failed run leaves nothing at the destination."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError, UsageError

TMP_MARK = ".dicompack-tmp-"
_STALE = re.compile(re.escape(TMP_MARK) + r"(\d+)-")


def temp_prefix(name: str) -> str:
    """Prefix of a temporary sibling of ``name``; it carries our PID so that
    a later run can tell leftovers of a killed run (kill -9) from live ones."""
    return f".{name}{TMP_MARK}{os.getpid()}-"


def sweep_stale(parent: Path) -> list[str]:
    """Remove temporaries in ``parent`` left by runs that no longer exist."""
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        m = _STALE.search(name)
        if not m or _alive(int(m.group(1))):
            continue
        path = Path(parent) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_destination(dest: Path, *, force: bool) -> None:
    """Refuse a destination we would clobber, before any work is done;
    sweep away what killed earlier runs left beside it."""
    sweep_stale(dest.parent if dest.parent.is_dir() else Path("."))
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
def private_tempdir(kind: str, parent: Path | str | None = None):
    """A private (0700) working folder for spools and staging, removed on
    every exit path.  Its name carries our PID (``temp_prefix``), so a run
    killed with SIGKILL leaves something the next run recognises and sweeps:
    plaintext of a decrypted package must not outlive the process that made it."""
    where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep_stale(where)
    folder = Path(tempfile.mkdtemp(prefix=temp_prefix(f"dicompack-{kind}"), dir=where))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def atomic_directory(dest: Path, *, force: bool = False):
    """Yield a temporary directory that becomes ``dest`` on success."""
    dest = Path(dest)
    check_destination(dest, force=force)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), dir=dest.parent))
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
    fd, name = tempfile.mkstemp(prefix=temp_prefix(dest.name), dir=dest.parent)
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
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name + ".old"), dir=dest.parent))
            os.rename(dest, old / "x")
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
            return
        dest.rmdir()
    os.replace(tmp, dest)
