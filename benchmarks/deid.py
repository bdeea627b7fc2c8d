"""De-identification: `dicompack pack --deidentify` vs dicognito on the same
corpus (N CT instances with a planted private identifier), files/s and
surviving identifiers.  dicognito is installed for the benchmark only:
`pip install dicognito`.

    python benchmarks/deid.py [N] [--rounds R]     (default 10000, 3)

This machine's page cache is reclaimed within seconds and file creation
costs vary from run to run, so the two tools run alternately R times, each
after reading the corpus once (warm input for both), and the medians are
compared.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pydicom
from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path

from tests.support import synthetic

MARK = b"PHIMARK"


def make_corpus(root: Path, n: int) -> None:
    synthetic.make_conformant_tree(root, n, rows=64, columns=64)
    for p in sorted(p for p in root.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(p)
        ds.OtherPatientIDs = "PHIMARK-OTHER"
        block = ds.private_block(0x0011, "SITE PRIVATE", create=True)
        block.add_new(0x01, "LO", "PHIMARK-MRN")
        ds.save_as(p)


def leaks(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and MARK in p.read_bytes())


def differences(src: Path, ours: Path, theirs: Path) -> list[tuple[str, str, str]]:
    """Attribute by attribute, where the two tools treat the first instance
    differently: (attribute, dicompack, dicognito)."""
    original = pydicom.dcmread(sorted(p for p in src.rglob("*") if p.is_file())[0], stop_before_pixels=True)
    uid = str(original.SOPInstanceUID)

    def find(folder: Path):
        for p in folder.rglob("*"):
            if p.is_file() and p.name != "DICOMDIR":
                ds = pydicom.dcmread(p, stop_before_pixels=True)
                same_slot = (ds.get("InstanceNumber") == original.get("InstanceNumber")
                             and ds.get("SeriesNumber") == original.get("SeriesNumber"))
                if str(ds.get("SOPInstanceUID")) == uid or same_slot:
                    return ds
        return None

    def fate(elem, ds) -> str:
        if elem.tag not in ds:
            return "removed"
        if ds[elem.tag].value == elem.value:
            return "kept"
        return "emptied" if ds[elem.tag].value in ("", None, []) else "replaced"

    a, b = find(ours), find(theirs)
    rows = []
    for elem in original:
        if elem.tag.group == 0x7FE0:
            continue
        if a is not None and b is not None and fate(elem, a) != fate(elem, b):
            rows.append((elem.keyword or str(elem.tag), fate(elem, a), fate(elem, b)))
    return rows


def warm(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            p.read_bytes()


def rounds(commands: dict[str, list[str]], outputs: dict[str, Path], src: Path, n: int) -> dict[str, list]:
    """Each command n times, alternating, on warm input; (seconds, RSS) per run."""
    runs: dict[str, list] = {name: [] for name in commands}
    for _ in range(n):
        for name, cmd in commands.items():
            shutil.rmtree(outputs[name], ignore_errors=True)
            warm(src)
            runs[name].append(run_measured(cmd, stdout=subprocess.DEVNULL))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "src"
        make_corpus(src, args.n)
        key = work / "key"
        key.write_bytes(b"benchmark-key-0123456789abcdef")
        outputs = {"dicognito": work / "dicognito", "dicompack": work / "ours"}
        commands = {"dicognito": [sys.executable, "-m", "dicognito", str(src),
                                  "--output-dir", str(outputs["dicognito"])],
                    "dicompack": dicompack_cmd("pack", str(src), "-o", str(outputs["dicompack"]), "--deidentify",
                                               "--deid-key-file", str(key), "-q")}
        runs = rounds(commands, outputs, src, args.rounds)
        d_s, o_s = (statistics.median(s for s, _ in runs[k]) for k in ("dicognito", "dicompack"))
        d_rss, o_rss = (max(r for _, r in runs[k]) for k in ("dicognito", "dicompack"))
        rows = [("dicognito", f"{d_s:.2f}", f"{args.n / d_s:.0f}", f"{d_rss:.0f}", leaks(outputs["dicognito"]), "1.00"),
                ("dicompack pack --deidentify (+ File-set)", f"{o_s:.2f}", f"{args.n / o_s:.0f}", f"{o_rss:.0f}",
                 leaks(outputs["dicompack"]), f"{d_s / o_s:.2f}")]
        print(f"{args.n} CT instances, each with a planted identifier in a private tag and Other Patient IDs; "
              f"median of {args.rounds} alternating runs")
        for name in commands:
            print(f"  {name} runs: " + ", ".join(f"{s:.2f} s" for s, _ in runs[name]))
        print(table(rows, ("tool", "seconds", "files/s", "peak RSS MB", "files with a leak", "speed vs dicognito")))
        diff = differences(src, outputs["dicompack"], outputs["dicognito"])
        print(f"\nwhere the two differ on one instance ({len(diff)} attributes):")
        print(table(diff, ("attribute", "dicompack", "dicognito")) if diff else "(no differences)")


if __name__ == "__main__":
    main()
