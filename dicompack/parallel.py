"""One place that decides how worker processes are started."""
from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor


def _context():
    """'fork' is cheapest and safe while we are the only thread (the CLI);
    a multi-threaded parent (a web server calling the library) gets
    'forkserver', because forking it could deadlock on a held lock."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def process_pool(jobs: int | None = None, *, initializer=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A process pool that is safe to create from any thread."""
    return ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1, mp_context=_context(),
                               initializer=initializer, initargs=initargs)


def shared_counter():
    """An integer the workers of a pool (given as an initializer argument) can add to."""
    return _context().Value("q", 0)
