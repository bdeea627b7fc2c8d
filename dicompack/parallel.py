"""One place that decides how worker processes are started and stopped."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

# How long the pool's manager thread gets to notice its workers were stopped.
STOP_GRACE_SECONDS = 5.0


def _context() -> BaseContext:
    """'fork' is cheapest and safe while we are the only thread (the CLI);
    a multi-threaded parent (a web server calling the library) gets
    'forkserver', because forking it could deadlock on a held lock."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when its parent dies, even by
    SIGKILL; otherwise it would wait for work forever (it holds the write
    end of its own task queue, so the queue never reports end of file)."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:      # the parent died before prctl took effect
        os._exit(1)


def _warnings_silenced() -> bool:
    """Has our caller (the CLI) silenced library warnings?  Its workers must
    be as quiet: forkserver and spawn workers do not inherit the filters.
    The first filter that matches any UserWarning from anywhere decides
    (libraries put narrow filters of their own in front at import time)."""
    for action, message, category, module, lineno in warnings.filters:
        if message is None and module is None and not lineno and issubclass(UserWarning, category):
            return action == "ignore"
    return False


def _worker_setup(initializer: Callable[..., object] | None, initargs: tuple[Any, ...], silence_warnings: bool) -> None:
    """Runs first in every worker.  Workers never decide to stop on their
    own: Ctrl-C and ``timeout``/systemd's SIGTERM reach the whole process
    group, and a worker that died first would surface in the parent as a
    broken pool instead of a clean cancellation.  The parent, which cleans
    up, stops them (``stop``).  This also drops the CLI's handler a forked
    worker inherits, which would turn SIGTERM into an exception the pool
    reports before carrying on with the next task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if silence_warnings:
        warnings.simplefilter("ignore")
    if initializer is not None:
        initializer(*initargs)


def process_pool(jobs: int | None = None, *, initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A process pool that is safe to create from any thread.  Prefer
    ``worker_pool``, which also stops the workers when the caller fails."""
    return ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1, mp_context=_context(),
                               initializer=_worker_setup,
                               initargs=(initializer, initargs, _warnings_silenced()))


@contextmanager
def worker_pool(jobs: int | None = None, *, initializer: Callable[..., object] | None = None,
                initargs: tuple[Any, ...] = ()) -> Iterator[ProcessPoolExecutor]:
    """``process_pool`` for a ``with`` block: on success the workers finish
    and exit; on any exception (an error, Ctrl-C, SIGTERM turned into an
    exception by the CLI) they are stopped at once, before the caller's own
    cleanup removes the folders they may be writing into."""
    pool = process_pool(jobs, initializer=initializer, initargs=initargs)
    try:
        yield pool
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=True)


def stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued work and end the running workers now: waiting for them
    (``shutdown(wait=True)``) could mean minutes of J2K encoding into a
    staging folder that is about to be removed.  SIGKILL: workers ignore
    SIGTERM (see ``_worker_setup``) and hold nothing worth saving."""
    # ProcessPoolExecutor offers no public way to end running workers before
    # Python 3.14 (kill_workers); the process table is read before shutdown
    # drops it.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join()
    # It notices the ended workers and exits.  A signal can land inside the
    # executor's start-up, between creating this thread and starting it:
    # joining it then would raise and mask the cancellation being handled.
    if manager is not None and manager.is_alive():
        manager.join(STOP_GRACE_SECONDS)


def shared_counter() -> Synchronized[int]:
    """An integer the workers of a pool (given as an initializer argument) can add to."""
    return _context().Value("q", 0)
