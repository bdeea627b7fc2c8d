"""De-identification: `dicompack pack --deidentify` vs dicognito on the same
corpus (N CT instances with a planted private identifier), files/s and
surviving identifiers.  dicognito is installed for the benchmark only:
`pip install dicognito`.

    python benchmarks/deid.py [N]     (default 2000)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import dicompack_cmd, run_measured, table
from dicompack import synthetic

MARK = b"PHIMARK"


def make_corpus(root: Path, n: int) -> None:
    synthetic.make_conformant_tree(root, n, rows=64, columns=64)
    import pydicom
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
    import pydicom
    original = pydicom.dcmread(sorted(p for p in src.rglob("*") if p.is_file())[0], stop_before_pixels=True)
    uid = str(original.SOPInstanceUID)

    def find(folder: Path):
        for p in folder.rglob("*"):
            if p.is_file() and p.name != "DICOMDIR":
                ds = pydicom.dcmread(p, stop_before_pixels=True)
                if uid in (str(ds.get("SOPInstanceUID")),) or ds.get("InstanceNumber") == original.get("InstanceNumber") \
                        and ds.get("SeriesNumber") == original.get("SeriesNumber"):
                    return ds
        return None

    a, b = find(ours), find(theirs)
    rows = []
    for elem in original:
        if elem.tag.group == 0x7FE0:
            continue
        fate = lambda ds: ("removed" if elem.tag not in ds else "kept" if ds[elem.tag].value == elem.value
                           else "emptied" if ds[elem.tag].value in ("", None, []) else "replaced")
        if a is not None and b is not None and fate(a) != fate(b):
            rows.append((elem.keyword or str(elem.tag), fate(a), fate(b)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "src"
        make_corpus(src, args.n)
        theirs = work / "dicognito"
        d_s, d_rss = run_measured([sys.executable, "-m", "dicognito", str(src), "--output-dir", str(theirs)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        key = work / "key"
        key.write_bytes(b"benchmark-key-0123456789abcdef")
        o_s, o_rss = run_measured(dicompack_cmd("pack", str(src), "-o", str(work / "ours"), "--deidentify",
                                                "--deid-key-file", str(key), "-q"), stdout=subprocess.DEVNULL)
        rows = [("dicognito", f"{d_s:.2f}", f"{args.n / d_s:.0f}", f"{d_rss:.0f}", leaks(theirs), "1.00"),
                ("dicompack pack --deidentify (+ File-set)", f"{o_s:.2f}", f"{args.n / o_s:.0f}", f"{o_rss:.0f}",
                 leaks(work / "ours"), f"{d_s / o_s:.2f}")]
        print(f"{args.n} CT instances, each with a planted identifier in a private tag and Other Patient IDs")
        print(table(rows, ("tool", "seconds", "files/s", "peak RSS MB", "files with a leak", "speed vs dicognito")))
        diff = differences(src, work / "ours", theirs)
        print(f"\nwhere the two differ on one instance ({len(diff)} attributes):")
        print(table(diff, ("attribute", "dicompack", "dicognito")) if diff else "(no differences)")


if __name__ == "__main__":
    main()
