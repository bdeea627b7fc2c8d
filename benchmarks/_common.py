"""Shared helpers for the side-by-side benchmarks."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# The synthetic-data generator lives with the tests (tests/support/synthetic.py),
# not in the installed package.  `python benchmarks/x.py` puts only benchmarks/
# on sys.path, so every script imports this module first, which makes the
# repository root importable for `from tests.support import synthetic`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Linux keeps a process's peak RSS across exec, so a child forked from a big
# parent reports the parent's size; a tiny trampoline forks the real command
# and reports wait4()'s figure for it alone.
TRAMPOLINE = ("import os, subprocess, sys\n"
              "p = subprocess.Popen(sys.argv[1:])\n"
              "_, status, usage = os.wait4(p.pid, 0)\n"
              "print(usage.ru_maxrss, file=sys.stderr)\n"
              "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_measured(cmd: list[str], **kwargs) -> tuple[float, float]:
    """Run ``cmd``; return (seconds, peak RSS in MB of that command, with its
    descendants' peak when larger)."""
    kwargs.pop("stderr", None)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", TRAMPOLINE, *cmd], stderr=subprocess.PIPE, **kwargs)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return seconds, int(proc.stderr.decode().strip().splitlines()[-1]) / 1024


def dicompack_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dicompack.cli", *args]


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*map(str, r)) for r in rows])
