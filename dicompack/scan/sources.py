"""The input files: found under the given files and folders, scanned in
parallel when there are enough of them."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dicompack.errors import InvalidInputError
from dicompack.parallel import worker_pool
from dicompack.scan.classify import scan_file
from dicompack.scan.result import ScanResult


def iter_source_files(sources: Iterable[str | os.PathLike]) -> list[str]:
    """Every regular file under the given files/folders, in sorted order."""
    found: list[str] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found.extend(os.path.join(root, name) for name in sorted(files))
        elif p.is_file():
            found.append(str(p))
        else:
            raise InvalidInputError("no such file or folder", where=str(src))
    return sorted(dict.fromkeys(found))


def scan_files(paths: list[str], *, jobs: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[ScanResult]:
    """Scan many files, in parallel when there are enough of them."""
    jobs = jobs or os.cpu_count() or 1
    results: list[ScanResult] = []
    shared: dict[bytes, bytes] = {}
    if jobs == 1 or len(paths) < 1000:
        for p in paths:
            results.append(_share_values(scan_file(p), shared))
            if progress:
                progress(len(results), len(paths))
        return results
    with worker_pool(jobs) as pool:
        for res in pool.map(scan_file, paths, chunksize=64):
            results.append(_share_values(res, shared))
            if progress and len(results) % 64 == 0:
                progress(len(results), len(paths))
    if progress:
        progress(len(results), len(paths))
    return results


def _share_values(res: ScanResult, shared: dict[bytes, bytes]) -> ScanResult:
    """Instances of one series repeat the same patient/study/series values;
    keeping one bytes object per distinct value keeps 100,000 scans small."""
    values = res.values
    for tag, value in values.items():
        values[tag] = shared.setdefault(value, value)
    return res
