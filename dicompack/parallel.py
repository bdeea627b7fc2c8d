"""One place that decides how worker processes are started."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor


def process_pool(jobs: int | None = None) -> ProcessPoolExecutor:
    """A process pool that is safe to create from any thread.

    'forkserver' avoids forking a multi-threaded parent (a web server calling
    the library), which can deadlock; the server process imports us once.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    return ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1, mp_context=ctx)
