"""ZIP packages: `dicompack pack -o x.zip` vs `dcmmkdir` + `zip -r` on the
same tree; `dicompack unpack` (verify + restore) vs `unzip`.

    python benchmarks/zip.py [N]     (default 10000 instances)
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path

from tests.support import synthetic

QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=10000)
    parser.add_argument("--rows", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tree = work / "tree"
        synthetic.make_conformant_tree(tree, args.n, rows=args.rows, columns=args.rows)
        mb = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / 1e6
        rows = []

        def ref_pack():
            subprocess.run(["dcmmkdir", "--recurse", "--invent", "+id", str(tree), "--output-file",
                            str(tree / "DICOMDIR")], check=True, **QUIET)
            subprocess.run(["zip", "-q", "-r", str(work / "ref.zip"), "."], cwd=tree, check=True)
        t = time.perf_counter()
        ref_pack()
        ref_s = time.perf_counter() - t
        rows.append(("pack", "dcmmkdir + zip -r", f"{ref_s:.2f}", f"{args.n / ref_s:.0f}", "-", "1.00"))
        (tree / "DICOMDIR").unlink()
        ours_s, ours_rss = run_measured(dicompack_cmd("pack", str(tree), "-o", str(work / "ours.zip"), "-q"), **QUIET)
        rows.append(("pack", "dicompack pack -o .zip", f"{ours_s:.2f}", f"{args.n / ours_s:.0f}",
                     f"{ours_rss:.0f}", f"{ref_s / ours_s:.2f}"))
        unz_s, unz_rss = run_measured(["unzip", "-q", str(work / "ours.zip"), "-d", str(work / "u1")], **QUIET)
        rows.append(("unpack", "unzip", f"{unz_s:.2f}", f"{args.n / unz_s:.0f}", f"{unz_rss:.0f}", "1.00"))
        up_s, up_rss = run_measured(dicompack_cmd("unpack", str(work / "ours.zip"), "-o", str(work / "u2"), "-q"),
                                    **QUIET)
        rows.append(("unpack", "dicompack unpack (verify+restore)", f"{up_s:.2f}", f"{args.n / up_s:.0f}",
                     f"{up_rss:.0f}", f"{unz_s / up_s:.2f}"))
        print(f"{args.n} instances, {mb:.0f} MB")
        print(table(rows, ("task", "tool", "seconds", "files/s", "peak RSS MB", "speed vs reference")))


if __name__ == "__main__":
    main()
