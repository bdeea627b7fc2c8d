"""DICOMDIR for a conformant tree: dcmtk's dcmmkdir vs `dicompack dicomdir`,
and `dicompack pack` of the same instances from a messy tree.

    python benchmarks/dicomdir.py [N ...]     (default 10000)
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path

from tests.support import synthetic


def bench(n: int, work: Path) -> list[tuple]:
    tree = work / f"tree{n}"
    synthetic.make_conformant_tree(tree, n)
    rows = []
    secs, rss = run_measured(["dcmmkdir", "--recurse", "--invent", "+id", str(tree), "--output-file",
                              str(tree / "DICOMDIR")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows.append((n, "dcmmkdir --recurse --invent", f"{secs:.2f}", f"{n / secs:.0f}", f"{rss:.0f}", "1.00"))
    base = n / secs
    (tree / "DICOMDIR").unlink()
    secs, rss = run_measured(dicompack_cmd("dicomdir", str(tree), "-q"), stdout=subprocess.DEVNULL)
    rows.append((n, "dicompack dicomdir", f"{secs:.2f}", f"{n / secs:.0f}", f"{rss:.0f}", f"{n / secs / base:.2f}"))
    messy = work / f"messy{n}"
    synthetic.make_messy_tree(messy, n)
    out = work / f"out{n}"
    secs, rss = run_measured(dicompack_cmd("pack", str(messy), "-o", str(out), "-q"), stdout=subprocess.DEVNULL)
    rows.append((n, "dicompack pack (scan+copy+DICOMDIR)", f"{secs:.2f}", f"{n / secs:.0f}", f"{rss:.0f}", "-"))
    shutil.rmtree(tree), shutil.rmtree(messy), shutil.rmtree(out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[10000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rows += bench(n, Path(tmp))
    print(table(rows, ("files", "tool", "seconds", "files/s", "peak RSS MB", "vs dcmmkdir")))


if __name__ == "__main__":
    main()
