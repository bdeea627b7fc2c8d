"""End to end: de-identify + JPEG 2000 lossless + File-set + sign + encrypt,
then verify + unpack.  dicompack in one command each way, against the best
pipeline of existing tools on the same data:
dicognito -> gdcmconv --j2k -> dcmmkdir -> zip -> openssl cms -sign | -encrypt,
and openssl cms -decrypt | -verify -> unzip.

    python benchmarks/end_to_end.py [--mb 256]      (dicognito: pip install dicognito)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path
from cms import KEYGEN

from tests.support import synthetic

QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def make_corpus(root: Path, mb: int) -> int:
    n = max(4, int(mb / 0.5))
    for i in range(n):
        patient, study = i % 4, i % 8
        ds = synthetic.make_instance(patient_id=f"PAT{patient}", patient_name=f"Patient^{patient}",
                                     study_uid=f"1.2.826.0.1.3680043.8.{study}",
                                     series_uid=f"1.2.826.0.1.3680043.8.{study}.1",
                                     sop_uid=f"1.2.826.0.1.3680043.8.{study}.1.{i}", rows=512, columns=512,
                                     instance_number=i + 1, seed=i)
        synthetic.write_file(ds, root / f"scan {patient}" / f"img_{i:05d}.dcm")
    return n


def pipeline(src: Path, work: Path) -> float:
    started = time.perf_counter()
    anon = work / "anon"
    subprocess.run([sys.executable, "-m", "dicognito", str(src), "--output-dir", str(anon)], check=True, **QUIET)
    tree = work / "tree"
    files = sorted(p for p in anon.rglob("*") if p.is_file())
    for n, p in enumerate(files):
        dest = tree / f"SE{n // 1000:06d}" / f"IM{n:06d}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gdcmconv", "--j2k", str(p), str(dest)], check=True, **QUIET)
    subprocess.run(["dcmmkdir", "-Pd2", "--recurse", "--invent", "+id", str(tree),
                    "--output-file", str(tree / "DICOMDIR")], check=True, **QUIET)
    subprocess.run(["zip", "-q", "-0", "-r", str(work / "ref.zip"), "."], cwd=tree, check=True)
    subprocess.run(f"cd {work} && openssl cms -sign -stream -binary -nodetach -outform DER -signer signer.pem "
                   f"-inkey signer.key -in ref.zip | openssl cms -encrypt -stream -binary -aes256 -inform DER "
                   f"-outform DER -out ref.p7m recip.pem", shell=True, check=True, **QUIET)
    return time.perf_counter() - started


def pipeline_receive(work: Path) -> float:
    started = time.perf_counter()
    subprocess.run(f"cd {work} && openssl cms -decrypt -binary -inform DER -in ref.p7m -recip recip.pem "
                   f"-inkey recip.key | openssl cms -verify -binary -inform DER -CAfile ca.pem -out ref2.zip "
                   f"&& unzip -q ref2.zip -d ref-out", shell=True, check=True, **QUIET)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-c", KEYGEN, str(work)], check=True)
        src = work / "src"
        n = make_corpus(src, args.mb)
        (work / "key").write_bytes(b"end-to-end-benchmark-key-000000")
        ref_pack = pipeline(src, work)
        ours_pack, rss_pack = run_measured(dicompack_cmd(
            "pack", str(src), "-o", str(work / "ours.p7m"), "--deidentify", "--deid-key-file", str(work / "key"),
            "--j2k", "lossless", "--recipient", str(work / "recip.pem"), "--sign-key", str(work / "signer.key"),
            "--sign-cert", str(work / "signer.pem"), "-q"), **QUIET)
        ref_recv = pipeline_receive(work)
        ours_recv, rss_recv = run_measured(dicompack_cmd(
            "unpack", str(work / "ours.p7m"), "-o", str(work / "ours-out"), "--key", str(work / "recip.key"),
            "--cert", str(work / "recip.pem"), "--trust", str(work / "ca.pem"), "-q"), **QUIET)
        rows = [("pack (deid+J2K+DICOMDIR+sign+encrypt)", f"{ref_pack:.1f}", f"{ours_pack:.1f}",
                 f"{ref_pack / ours_pack:.2f}", f"{rss_pack:.0f}"),
                ("receive (decrypt+verify+restore)", f"{ref_recv:.1f}", f"{ours_recv:.1f}",
                 f"{ref_recv / ours_recv:.2f}", f"{rss_recv:.0f}")]
        print(f"{n} CT slices 512x512, {args.mb} MB, 4 patients")
        print(table(rows, ("task", "tool pipeline s", "dicompack s", "speed-up", "dicompack peak RSS MB")))


if __name__ == "__main__":
    main()
