"""Shared helpers for the side-by-side benchmarks."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time


def run_measured(cmd: list[str], **kwargs) -> tuple[float, float]:
    """Run ``cmd``; return (seconds, peak RSS in MB of that child).

    Peak RSS is read with wait4() for this child alone, so the numbers of
    two tools run one after the other do not mix.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024


def dicompack_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dicompack.cli", *args]


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*map(str, r)) for r in rows])
