"""JPEG 2000 lossless: `dicompack pack --j2k lossless` (both cores, round-trip
verification on) vs `gdcmconv --j2k` looped over the same files.

    python benchmarks/j2k.py [--mb 256]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from _common import dicompack_cmd, run_measured, table
from dicompack import synthetic

SLICE_MB = 512 * 512 * 2 / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=256)
    args = parser.parse_args()
    n = max(1, int(args.mb / SLICE_MB))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "src"
        for i in range(n):
            ds = synthetic.make_instance(study_uid="1.2.826.0.1.3680043.9.1", series_uid="1.2.826.0.1.3680043.9.1.1",
                                         sop_uid=f"1.2.826.0.1.3680043.9.1.1.{i + 1}", rows=512, columns=512,
                                         instance_number=i + 1, seed=i)
            synthetic.write_file(ds, src / f"CT{i:05d}.dcm")
        mb = sum(p.stat().st_size for p in src.iterdir()) / (1 << 20)
        out = work / "gdcm"
        out.mkdir()
        started = time.perf_counter()
        for p in sorted(src.iterdir()):
            subprocess.run(["gdcmconv", "--j2k", str(p), str(out / p.name)], check=True)
        g_s = time.perf_counter() - started
        g_size = sum(p.stat().st_size for p in out.iterdir()) / (1 << 20)
        o_s, o_rss = run_measured(dicompack_cmd("pack", str(src), "-o", str(work / "ours"), "--j2k", "lossless", "-q"),
                                  stdout=subprocess.DEVNULL)
        o_size = sum(p.stat().st_size for p in (work / "ours").rglob("IM*")) / (1 << 20)
        rows = [("gdcmconv --j2k (per file)", f"{g_s:.2f}", f"{mb / g_s:.1f}", f"{mb / g_size:.2f}", "-", "1.00"),
                ("dicompack pack --j2k lossless", f"{o_s:.2f}", f"{mb / o_s:.1f}", f"{mb / o_size:.2f}",
                 f"{o_rss:.0f}", f"{g_s / o_s:.2f}")]
        print(f"{n} CT slices 512x512x16 bit, {mb:.0f} MB")
        print(table(rows, ("tool", "seconds", "MB/s", "compression ratio", "peak RSS MB", "speed vs gdcmconv")))
        print(f"size ours / gdcmconv: {o_size / g_size:.3f}")


if __name__ == "__main__":
    main()
