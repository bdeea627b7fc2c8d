"""JPEG 2000 lossless: `dicompack pack --j2k lossless` (both cores, round-trip
verification on) vs `gdcmconv --j2k` looped over the same files, with
`opj_compress` (openjpeg's own tool, default lossless settings) on the same
frames as the reference for the compression ratio.

    python benchmarks/j2k.py [--mb 1024]

Goals (issue 7): >= 1.8x gdcmconv's MB/s, compressed size within 5% of
opj_compress's, peak RSS <= 500 MB.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path

from tests.support import synthetic

SLICE_MB = 512 * 512 * 2 / (1 << 20)


def make_slices(src: Path, raw: Path, n: int) -> None:
    """n CT slices 512x512, 12 bits stored; each frame also as a 16-bit PGM for opj_compress."""
    for i in range(n):
        ds = synthetic.make_instance(study_uid="1.2.826.0.1.3680043.9.1", series_uid="1.2.826.0.1.3680043.9.1.1",
                                     sop_uid=f"1.2.826.0.1.3680043.9.1.1.{i + 1}", rows=512, columns=512,
                                     instance_number=i + 1, seed=i)
        synthetic.write_file(ds, src / f"CT{i:05d}.dcm")
        (raw / f"CT{i:05d}.pgm").write_bytes(b"P5\n512 512\n4095\n" + ds.pixel_array.astype(">u2").tobytes())


def timed_loop(cmds: list[list[str]]) -> float:
    started = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def size_mb(paths) -> float:
    return sum(p.stat().st_size for p in paths) / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024)
    args = parser.parse_args()
    n = max(1, int(args.mb / SLICE_MB))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src, raw, gdcm, opj = (work / d for d in ("src", "raw", "gdcm", "opj"))
        for d in (src, raw, gdcm, opj):
            d.mkdir()
        make_slices(src, raw, n)
        pixel_mb = n * SLICE_MB
        g_s = timed_loop([["gdcmconv", "--j2k", str(p), str(gdcm / p.name)] for p in sorted(src.iterdir())])
        j_s = timed_loop([["opj_compress", "-i", str(p), "-o", str(opj / (p.stem + ".j2k"))]
                          for p in sorted(raw.iterdir())])
        o_s, o_rss = run_measured(dicompack_cmd("pack", str(src), "-o", str(work / "ours"), "--j2k", "lossless", "-q"),
                                  stdout=subprocess.DEVNULL)
        # Compressed pixel data only for opj_compress (bare codestreams); whole files for the DICOM tools.
        g_mb, j_mb = size_mb(gdcm.iterdir()), size_mb(opj.iterdir())
        o_mb = size_mb((work / "ours").rglob("IM*"))
        header_mb = size_mb(src.iterdir()) - pixel_mb
        rows = [("gdcmconv --j2k (per file)", f"{g_s:.1f}", f"{pixel_mb / g_s:.1f}",
                 f"{pixel_mb / (g_mb - header_mb):.3f}", "-", "1.00"),
                ("opj_compress (per frame, lossless)", f"{j_s:.1f}", f"{pixel_mb / j_s:.1f}", f"{pixel_mb / j_mb:.3f}",
                 "-", f"{g_s / j_s:.2f}"),
                ("dicompack pack --j2k lossless (verified)", f"{o_s:.1f}", f"{pixel_mb / o_s:.1f}",
                 f"{pixel_mb / (o_mb - header_mb):.3f}", f"{o_rss:.0f}", f"{g_s / o_s:.2f}")]
        print(f"{n} CT slices 512x512, 16 bits allocated, 12 stored: {pixel_mb:.0f} MB of pixel data; 2 cores")
        print(table(rows, ("tool", "seconds", "MB/s", "compression ratio", "peak RSS MB", "speed vs gdcmconv")))
        print(f"compressed size ours / opj_compress: {(o_mb - header_mb) / j_mb:.3f} (goal <= 1.05); "
              f"ours / gdcmconv: {(o_mb - header_mb) / (g_mb - header_mb):.3f}")


if __name__ == "__main__":
    main()
