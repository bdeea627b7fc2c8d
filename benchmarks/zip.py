"""ZIP packages on N MB of uncompressed 512x512 CT, side by side in one run:
`dicompack pack -o x.zip` (default options) vs `zip -r` (deflate -6) on the
same tree; `dicompack unpack` (verify + restore) vs `unzip`.  Prints times,
speed ratios, sizes and peak RSS.

    python benchmarks/zip.py [--mb 64] [--zip-level N]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path

from tests.support import synthetic

QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
CT_FILE_MB = 512 * 512 * 2 / 1e6     # about, per instance (plus its header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=64, help="MB of uncompressed CT (default 64)")
    parser.add_argument("--zip-level", default=None, help="passed to dicompack pack (default: its default)")
    args = parser.parse_args()
    n = max(1, round(args.mb / CT_FILE_MB))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tree = work / "tree"
        synthetic.make_conformant_tree(tree, n, rows=512, columns=512)
        mb = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / 1e6
        rows = []
        ref_s, ref_rss = run_measured(["zip", "-q", "-r", str(work / "ref.zip"), "."], cwd=tree)
        ref_size = (work / "ref.zip").stat().st_size
        rows.append(("pack", "zip -r (deflate -6)", f"{ref_s:.2f}", f"{mb / ref_s:.0f}", f"{ref_rss:.0f}",
                     f"{ref_size / 1e6:.1f}", "1.00", "1.000"))
        extra = ["--zip-level", args.zip_level] if args.zip_level else []
        ours_s, ours_rss = run_measured(dicompack_cmd("pack", str(tree), "-o", str(work / "ours.zip"), "-q",
                                                      *extra), **QUIET)
        ours_size = (work / "ours.zip").stat().st_size
        rows.append(("pack", "dicompack pack -o .zip", f"{ours_s:.2f}", f"{mb / ours_s:.0f}", f"{ours_rss:.0f}",
                     f"{ours_size / 1e6:.1f}", f"{ref_s / ours_s:.2f}", f"{ours_size / ref_size:.3f}"))
        unz_s, unz_rss = run_measured(["unzip", "-q", str(work / "ours.zip"), "-d", str(work / "u1")], **QUIET)
        rows.append(("unpack", "unzip", f"{unz_s:.2f}", f"{mb / unz_s:.0f}", f"{unz_rss:.0f}", "-", "1.00", "-"))
        up_s, up_rss = run_measured(dicompack_cmd("unpack", str(work / "ours.zip"), "-o", str(work / "u2"), "-q"),
                                    **QUIET)
        rows.append(("unpack", "dicompack unpack (verify+restore)", f"{up_s:.2f}", f"{mb / up_s:.0f}",
                     f"{up_rss:.0f}", "-", f"{unz_s / up_s:.2f}", "-"))
        print(f"{n} instances of 512x512 CT, {mb:.0f} MB uncompressed")
        print(table(rows, ("task", "tool", "seconds", "MB/s", "peak RSS MB", "size MB", "speed vs reference",
                           "size vs reference")))


if __name__ == "__main__":
    main()
