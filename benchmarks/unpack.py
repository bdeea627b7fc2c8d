"""ZIP unpack with full verification vs `unzip`, side by side in one run,
on the same ZIP made by `dicompack pack -o X.zip` (deflate): N MB of
uncompressed 512x512 CT, then many small files.  Prints times, the speed
ratio (unzip seconds / ours: above 1 is faster than unzip) and peak RSS.

    python benchmarks/unpack.py [--mb 256] [--small 10000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path

from tests.support import synthetic

QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
CT_FILE_MB = 512 * 512 * 2 / 1e6     # about, per instance (plus its header)


def _compare(work: Path, label: str, tree: Path, repeat: int) -> list[tuple]:
    mb = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / 1e6
    package = work / f"{label}.zip"
    subprocess.run(dicompack_cmd("pack", str(tree), "-o", str(package), "-q"), check=True, **QUIET)
    ours, theirs = [], []
    for _ in range(repeat):      # in turn, so that drift in the machine's speed hits both
        theirs.append(run_measured(["unzip", "-q", "-o", str(package), "-d", str(work / f"{label}-unzip")],
                                   **QUIET))
        ours.append(run_measured(dicompack_cmd("unpack", str(package), "-o", str(work / f"{label}-ours"),
                                               "--force", "-q"), **QUIET))
    ref_s = statistics.median(s for s, _ in theirs)
    our_s = statistics.median(s for s, _ in ours)
    return [(label, "unzip -q -o", f"{mb:.0f}", f"{ref_s:.2f}", f"{mb / ref_s:.0f}",
             f"{max(r for _, r in theirs):.0f}", "1.00"),
            (label, "dicompack unpack (verify+restore)", f"{mb:.0f}", f"{our_s:.2f}", f"{mb / our_s:.0f}",
             f"{max(r for _, r in ours):.0f}", f"{ref_s / our_s:.2f}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=256, help="MB of uncompressed 512x512 CT (default 256)")
    parser.add_argument("--small", type=int, default=10_000, help="small files (16x16 CT; default 10000; 0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, median quoted (default 3)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.mb:
            synthetic.make_conformant_tree(work / "ct", max(1, round(args.mb / CT_FILE_MB)), rows=512, columns=512)
            rows += _compare(work, "ct", work / "ct", args.repeat)
        if args.small:
            synthetic.make_conformant_tree(work / "small", args.small)
            rows += _compare(work, f"{args.small}-small", work / "small", args.repeat)
    print(table(rows, ("data", "tool", "MB", "seconds (median)", "MB/s", "peak RSS MB", "speed vs unzip")))


if __name__ == "__main__":
    main()
