"""The transform stage's worker processes: every instance through
``transform_instance``, in a process pool, with progress in source bytes."""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from dicompack.errors import DicompackError
from dicompack.parallel import process_pool, shared_counter, stop
from dicompack.scan import ScanResult
from dicompack.transform.instance import Outcome, TransformSpec, report_bytes_to, transform_batch, transform_instance

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

# What a stage reports progress with: (stage, files done, files, bytes done, bytes).
ProgressFn = Callable[[str, int, int, int, int], None]


def _count_into(counter: Synchronized[int]) -> None:
    """Pool initializer: report progress into a shared counter, and keep
    library warnings out of the user's terminal (see ``quiet_libraries``)."""
    quiet_libraries()

    def add(n: int) -> None:
        with counter.get_lock():
            counter.value += n
    report_bytes_to(add)


class Workers:
    """The stage's process pool, or this process when one job is asked for.
    ``transform`` reports progress as source bytes, which a worker adds
    frame by frame, so a single multi-GB instance moves the bar too."""

    POLL_SECONDS = 0.25

    def __init__(self, jobs: int, count: int):
        self.jobs, self.count = jobs, count
        self.pool: ProcessPoolExecutor | None = None
        self.counter: Synchronized[int] | None = None

    def __enter__(self) -> Workers:
        if self.jobs > 1:
            self.counter = shared_counter()
            self.pool = process_pool(max(1, min(self.jobs, self.count)), initializer=_count_into,
                                     initargs=(self.counter,))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self.pool is None:
            return
        if exc_type is None:
            self.pool.shutdown(wait=True)
        else:
            # Failed, cancelled or terminated: end the workers now, before
            # the caller removes the staging folder they write into.
            stop(self.pool)

    def _chunk(self, n: int) -> int:
        # Batches amortise the per-task round trip (10% on small instances);
        # small enough that every worker stays busy to the end.
        return max(1, min(16, n // (self.jobs * 16)))

    def map(self, fn: Callable[..., Any], items: list[Any], *same: Any) -> list[Any]:
        """``fn(item, *same)`` for every item, in order."""
        if self.pool is None:
            return [fn(item, *same) for item in items]
        return list(self.pool.map(fn, items, *([arg] * len(items) for arg in same),
                                  chunksize=self._chunk(len(items))))

    def transform(self, scans: list[ScanResult], stage_dir: str, spec: TransformSpec,
                  progress: ProgressFn, *, tolerate: tuple[type[DicompackError], ...] = ()) -> list[Outcome]:
        """Every instance through ``transform_instance``.  The first error is
        raised, except those of a ``tolerate`` type: their outcomes come back
        with the error set, so the caller can name every one."""
        total = sum(s.size for s in scans)

        def checked(out: Outcome) -> Outcome:
            if out.error is not None and not isinstance(out.error, tolerate):
                raise out.error
            return out
        if self.pool is None or self.counter is None:
            outcomes, done = [], 0
            for scan in scans:
                outcomes.append(checked(transform_instance(scan, stage_dir, spec)))
                done += scan.size
                progress("compress", len(outcomes), len(scans), done, total)
            return outcomes
        chunk = self._chunk(len(scans))
        batches = [scans[i:i + chunk] for i in range(0, len(scans), chunk)]
        results: list[list[Outcome]] = [[] for _ in batches]
        pending = {self.pool.submit(transform_batch, batch, stage_dir, spec): i for i, batch in enumerate(batches)}
        done_files = 0
        while pending:
            finished, _ = wait(pending, timeout=self.POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                results[i] = [checked(out) for out in future.result()]
                done_files += len(results[i])
            progress("compress", done_files, len(scans), min(self.counter.value, total), total)
        return [out for batch in results for out in batch]


def quiet_libraries() -> None:
    """Worker processes only (they are ours; a library call in a caller's
    thread must not change the process-wide filters): pydicom's value
    checks and the codecs warn about the input on stderr, and a worker
    started by forkserver or spawn does not inherit the CLI's filter.  What
    matters about an instance reaches the report as a note or an error."""
    if sys.warnoptions:          # -W / PYTHONWARNINGS: a developer asked to see them
        return
    warnings.filterwarnings("ignore", category=UserWarning)      # pydicom's warn_and_log, GetPassWarning
    for library in ("pydicom", "openjpeg", "numpy", "pylibjpeg", "libjpeg", "jpeg_ls"):
        warnings.filterwarnings("ignore", module=rf"{library}(\.|$)")
