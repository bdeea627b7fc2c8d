"""Scale: 100,000 small instances pack within the documented memory bound
(README: peak RSS <= 100 MB + 4 KB per instance)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from dicompack import synthetic

N = 100_000


def test_100k_instances_within_memory_bound(tmp_path):
    src = tmp_path / "src"
    synthetic.make_conformant_tree(src, N, rows=8, columns=8, patients=50)
    out = tmp_path / "big.zip"
    proc = subprocess.Popen([sys.executable, "-m", "dicompack.cli", "pack", str(src), "-o", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
    peak_mb = usage.ru_maxrss / 1024
    assert peak_mb <= 100 + 4 * N / 1024, f"peak RSS {peak_mb:.0f} MB"
    with zipfile.ZipFile(out) as zf:
        assert len(zf.infolist()) == N + 2      # + DICOMDIR + manifest
