"""Run the real command line as a user would, optionally measuring the
child's peak RSS (hostile inputs must stay under a documented bound)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

# Linux carries a forked child's pre-exec peak (the parent's size) into
# wait4()'s figure: a tiny trampoline forks the real command so the figure
# is that command's own.
_TRAMPOLINE = ("import os, subprocess, sys\n"
               "p = subprocess.Popen(sys.argv[2:])\n"
               "_, status, usage = os.wait4(p.pid, 0)\n"
               "os.write(int(sys.argv[1]), str(usage.ru_maxrss).encode())\n"
               "sys.exit(os.waitstatus_to_exitcode(status))\n")

# Peak RSS any dicompack command may reach on hostile input (spec/threat-model.md).
HOSTILE_RSS_LIMIT_MB = 200


@dataclass
class Measured:
    returncode: int
    stdout: bytes
    stderr: bytes
    peak_rss_mb: float


def run_cli_measured(*args, input: bytes | None = None, timeout: float = 120, env=None) -> Measured:
    """``python -m dicompack.cli ARGS`` with its peak RSS in MB."""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _TRAMPOLINE, str(write_fd), sys.executable, "-m", "dicompack.cli",
             *map(str, args)],
            capture_output=True, input=input, timeout=timeout, env=env, pass_fds=(write_fd,))
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        rss_kb = int(f.read() or 0)
    return Measured(proc.returncode, proc.stdout, proc.stderr, rss_kb / 1024)
