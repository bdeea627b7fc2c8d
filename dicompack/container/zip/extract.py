"""extract_atomically: a whole ZIP into a private staging folder, renamed
to its target only once every entry is written and checked.

Entries are extracted by a few threads (inflate, CRC-32 and SHA-256 release
the GIL): the main thread makes the folders in the entries' order and hands
each file entry to a worker that creates and fills it (small entries it
extracts itself).  At most 2 entries per worker are in flight, each holding
at most one CHUNK of output.  When entry k fails, entries after it are
cancelled, those before it finished, and the error of the first failing
entry is raised.  If two files clash (a file system folding names in a way
NameIndex did not foresee), all is redone in one thread: the result is
always the one-thread result."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

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
                       on_bytes: Callable[[int], None] | None = None,
                       workers: int | None = None) -> dict[str, str]:
    """Extract every entry into a temporary sibling of ``target``, then rename
    it to ``target``.  On any failure nothing exists at ``target``.

    Returns the SHA-256 (hex) of every file extracted, computed on the way,
    so integrity checks need not read the files again.  ``workers``: threads
    filling files (default: one per CPU, at most MAX_WORKERS; 1 extracts in
    this thread only)."""
    target = Path(target)
    entries = reader.entries()   # all names and the layout checked before anything is written
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError("extraction target exists and is not empty", where=str(target))
    tmp = Path(tempfile.mkdtemp(prefix=staging_prefix(target.name), dir=target.parent))
    try:
        digests = _Extraction(reader, entries, os.path.realpath(tmp), on_bytes).run(
            workers if workers is not None else min(MAX_WORKERS, os.cpu_count() or 1))
        os.chmod(tmp, 0o755)
        if target.is_dir():
            target.rmdir()
        os.rename(tmp, target)
        return digests
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Entries compressed smaller than this are extracted by the thread handing
# out the others: for them the hand-over costs more than it saves.
INLINE_MAX = 64 << 10
# Default threads: one per CPU, at most this many (each holds ~1.5 MB at most).
MAX_WORKERS = 8


class _Cancelled(Exception):
    """An earlier entry failed: this one's work is moot."""


class _Extraction:
    def __init__(self, reader: ZipReader, entries: list[ZipEntry], base: str,
                 on_bytes: Callable[[int], None] | None):
        self._reader, self._entries, self._base = reader, entries, base
        self._made: set[str] = set()
        self._digests: list[str | None] = [None] * len(entries)
        self._errors: dict[int, BaseException] = {}
        self._first_error = len(entries)      # index of the first failing entry so far
        self._lock = threading.Lock()
        self._on_bytes = on_bytes
        self._clashed = False       # a file could not be created where the name said

    def run(self, workers: int) -> dict[str, str]:
        if workers > 1:
            self._run_parallel(workers)
            if self._clashed:
                # Which of two clashing entries fails depends on which thread
                # came first: redo it all in one thread for the one-thread error.
                self._restart()
                workers = 1
        if workers <= 1:
            for i in range(len(self._entries)):
                if self._folder(i):
                    self._fill(i)
        if self._errors:
            raise self._errors[min(self._errors)]
        return {e.name: d for e, d in zip(self._entries, self._digests) if d is not None}

    def _restart(self) -> None:
        for name in os.listdir(self._base):
            path = os.path.join(self._base, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        self._made.clear()
        self._clashed = False
        self._errors.clear()
        self._first_error = len(self._entries)
        self._digests = [None] * len(self._entries)

    def _run_parallel(self, workers: int) -> None:
        slots = threading.BoundedSemaphore(2 * workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="unzip") as pool:
            try:
                for i in range(len(self._entries)):
                    if self._first_error <= i:
                        break
                    try:
                        if not self._folder(i):
                            continue
                        if self._entries[i].compressed_size < INLINE_MAX:
                            self._fill(i)     # cheaper here than handing it over
                            continue
                    except _Cancelled:
                        break
                    except Exception as exc:
                        self._fail(i, exc)
                        break
                    slots.acquire()
                    try:
                        pool.submit(self._job, i, slots)
                    except BaseException:
                        slots.release()
                        raise
            except BaseException as exc:
                # Interrupted (KeyboardInterrupt...): cancel every worker, raise after they stopped.
                self._fail(-1, exc)
                raise

    def _job(self, i: int, slots: threading.BoundedSemaphore) -> None:
        try:
            self._fill(i)
        except _Cancelled:
            pass
        except BaseException as exc:
            self._fail(i, exc)
        finally:
            slots.release()

    def _fail(self, i: int, exc: BaseException) -> None:
        with self._lock:
            self._errors[i] = exc
            self._first_error = min(self._first_error, i)

    @contextmanager
    def _named_errors(self, e: ZipEntry) -> Iterator[None]:
        """OS errors of one entry as typed errors naming the entry."""
        try:
            yield
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            # Only a file system folding names in a way NameIndex did not foresee gets here.
            self._clashed = True
            raise UnsafeArchiveError("entry collides with another entry on this file system",
                                     where=e.name) from None
        except OSError as exc:
            raise StorageError(f"cannot extract: {exc.strerror or exc}", where=e.name) from None

    def _dest(self, e: ZipEntry) -> str:
        dest = os.path.normpath(os.path.join(self._base, *e.name.rstrip("/").split("/")))
        # Names were validated; this guards the guard (we create no symlinks).
        if not dest.startswith(self._base + os.sep):
            raise UnsafeArchiveError("entry would be written outside the target folder", where=e.name)
        return dest

    def _folder(self, i: int) -> bool:
        """Make the entry's folders (in entry order, in one thread); whether
        it is a file, to be filled."""
        e = self._entries[i]
        dest = self._dest(e)
        folder = dest if e.is_dir else os.path.dirname(dest)
        if folder not in self._made:
            with self._named_errors(e):
                os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        return not e.is_dir

    def _fill(self, i: int) -> None:
        """Create the entry's file and write its checked content, hashing it
        on the way.  OS errors name the entry, never the private staging path."""
        e = self._entries[i]
        sha = hashlib.sha256()
        with self._named_errors(e):
            out = open(self._dest(e), "xb")
        with self._named_errors(e), out:
            for chunk in self._reader.content(e):
                if self._first_error < i:
                    raise _Cancelled
                sha.update(chunk)
                out.write(chunk)
                if self._on_bytes:
                    with self._lock:
                        self._on_bytes(len(chunk))
        self._digests[i] = sha.hexdigest()
