"""Atomic outputs: everything is written into a temporary sibling of the
destination and renamed into place only when complete, so an interrupted or
failed run leaves nothing at the destination."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from dicompack.errors import OutputExistsError, UsageError

TMP_MARK = ".dicompack-tmp-"
_STALE = re.compile(re.escape(TMP_MARK) + r"(\d+)-")


def temp_prefix(name: str) -> str:
    """Prefix of a temporary sibling of ``name``; it carries our PID so that
    a later run can tell leftovers of a killed run (kill -9) from live ones."""
    return f".{name}{TMP_MARK}{os.getpid()}-"


def sweep_stale(parent: Path) -> list[str]:
    """Remove temporaries in ``parent`` left by runs that no longer exist."""
    removed: list[str] = []
    for name, _pid in _dead_runs(parent):
        path = Path(parent) / name
        try:
            # Only our own: in a shared folder (/tmp) another user's
            # leftovers are theirs to sweep, even when we run as root.
            if hasattr(os, "geteuid") and os.lstat(path).st_uid != os.geteuid():
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(name)
    return removed


def sweep_temp() -> list[str]:
    """Sweep the system temporary folder, where spools of decrypted packages
    live: what a run killed by SIGKILL left there goes with the next run —
    and, through the markers it left there (``marked_folder``), what it was
    staging beside a destination anywhere else."""
    try:
        where = Path(tempfile.gettempdir())
    except OSError:       # no usable temporary folder: nothing of ours there either
        return []
    removed = _sweep_marked(where)
    return removed + sweep_stale(where)


# A staging folder beside a destination (decrypted plaintext) is known to
# later runs only through its parent, which they may never write to again.
# So it is announced first in the system temporary folder by a marker file
# named like every temporary of ours (our PID in it) that holds its path.
_MARKER = "dicompack-staged"
_MARKER_LIMIT = 4096                      # a path, not a file to read whole


def _is_system_temp(parent: Path) -> bool:
    try:
        return os.path.samefile(parent, tempfile.gettempdir())
    except OSError:
        return False


@contextmanager
def marked_folder(kind: str, parent: Path):
    """A private (0700) folder ``parent/.KIND.dicompack-tmp-PID-…``, removed
    on every exit path; outside the system temporary folder a marker there
    names it, so that the next run of any command (``sweep_temp``) removes it
    if this process is killed (SIGKILL) before it could."""
    parent = Path(parent)
    folder = parent.absolute() / (temp_prefix(kind) + secrets.token_hex(8))
    marker = None
    if not _is_system_temp(parent):
        marker = _write_marker(folder)
    try:
        os.mkdir(folder, 0o700)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if marker is not None:
            marker.unlink(missing_ok=True)


def _write_marker(folder: Path) -> Path | None:
    """Written before the folder exists: a kill between the two leaves a
    marker naming nothing, never a folder no marker names."""
    try:
        where = Path(tempfile.gettempdir())
    except OSError:
        return None
    marker = where / (temp_prefix(_MARKER) + secrets.token_hex(8))
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.fsencode(folder))
    except OSError:       # no writable temporary folder: staging still works, as before markers
        with suppress(OSError):
            marker.unlink()
        return None
    return marker


def _sweep_marked(where: Path) -> list[str]:
    """Remove the folders that markers of dead runs of ours name — only if
    the folder still carries our mark and that very PID in its name, is ours
    and is a real folder (a marker cannot be turned against anything else)."""
    removed: list[str] = []
    for name, pid in _dead_runs(where):
        if not name.startswith(f".{_MARKER}{TMP_MARK}"):
            continue
        marker = where / name
        try:
            st = os.lstat(marker)
            if not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
                continue
            with open(marker, "rb") as f:
                folder = Path(os.fsdecode(f.read(_MARKER_LIMIT)))
            if _removable(folder, pid):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(str(folder))
            marker.unlink(missing_ok=True)
        except (OSError, ValueError):
            continue
    return removed


def _dead_runs(folder: Path) -> Iterator[tuple[str, str]]:
    """(name, PID) of every entry of ``folder`` named by a run of ours whose
    process no longer exists (nothing when the folder cannot be listed)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _STALE.search(name)
        if m and not _alive(int(m.group(1))):
            yield name, m.group(1)


def _removable(folder: Path, pid: str) -> bool:
    if not folder.is_absolute() or f"{TMP_MARK}{pid}-" not in folder.name:
        return False
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and (not hasattr(os, "geteuid") or st.st_uid == os.geteuid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True     # another user's process, or not a PID at all: not ours to judge
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
    with marked_folder(f"dicompack-{kind}", where) as folder:
        yield folder


@contextmanager
def atomic_directory(dest: Path, *, force: bool = False):
    """Yield a temporary directory that becomes ``dest`` on success."""
    dest = Path(dest)
    check_destination(dest, force=force)
    # Marked: a File-set being written (a restore's plaintext) must not
    # outlive a SIGKILL either.  Removed on failure; renamed away on success.
    with marked_folder(dest.name, dest.parent) as tmp:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # made private
        _replace(tmp, dest)


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
    """The process umask, read without changing it.  ``os.umask`` can only
    set the mask: setting it to 0 and back would, for that instant, make
    whatever another thread of a portal creates world-writable."""
    try:
        with open("/proc/self/status", "rb") as f:     # Linux 4.7+
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _probe_umask()


def _probe_umask() -> int:
    """Elsewhere: ask for a 0777 folder and see what the kernel made of it."""
    probe = Path(tempfile.gettempdir()) / (temp_prefix("umask") + secrets.token_hex(8))
    try:
        os.mkdir(probe, 0o777)
    except OSError:
        return 0o022
    try:
        return 0o777 & ~os.stat(probe).st_mode
    finally:
        os.rmdir(probe)


def _replace(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``.  Any failure is reported against
    ``dest``, the name the user gave: never our private temporary's."""
    try:
        _swap_into_place(tmp, dest)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from None


# Called the moment an output is renamed into place.  Only a program that
# owns its process sets it (the CLI: a signal after this point must not
# report the run as cancelled); the library itself never does.
on_commit: Callable[[], None] | None = None


def _commit(rename, *args) -> None:
    """``rename(*args)`` and ``on_commit()`` as one step for a signal
    handler: SIGINT/SIGTERM are held (in this thread only, for an instant)
    so that one can land before the rename or after the commit is known,
    never between."""
    hook = on_commit
    if hook is None or not hasattr(signal, "pthread_sigmask") \
            or threading.current_thread() is not threading.main_thread():
        rename(*args)
        if hook is not None:
            hook()
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        rename(*args)
        hook()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _swap_into_place(tmp: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
        dest.rmdir()
    elif (dest.exists() or dest.is_symlink()) and (tmp.is_dir() or dest.is_dir()):
        # --force over a non-empty folder, or a folder over a file or link
        # (os.replace cannot): swap, then delete the old one.
        old = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name + ".old"), dir=dest.parent))
        try:
            os.rename(dest, old / "x")
            _commit(os.rename, tmp, dest)
        except BaseException:
            # Failed or interrupted (SIGTERM) between the two renames:
            # the old one goes back, so the destination is never lost.
            if (old / "x").exists() or (old / "x").is_symlink():
                if not dest.exists() and not dest.is_symlink():
                    os.rename(old / "x", dest)
            with suppress(OSError):
                old.rmdir()
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    _commit(os.replace, tmp, dest)
