"""The real-world corpus: DICOM files no one here wrote.

- pydicom's bundled test files (from the installed pydicom),
- ``pydicom-data`` (the PyPI package, module ``data_store``; in the test extra),
- a subset of fo-dicom's ``Tests/FO-DICOM.Tests/Test Data`` when the steering
  repository provides it at ``shared/testdata/fo-dicom`` (fetched public data
  is not committed to this repository).

Every source is read in place and never modified."""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# DICOMPACK_FO_DICOM points elsewhere (a local extraction, for development).
FO_DICOM = Path(os.environ.get("DICOMPACK_FO_DICOM", REPO.parent / "shared" / "testdata" / "fo-dicom"))


def pydicom_files() -> Path:
    import pydicom
    return Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_data_files() -> Path | None:
    try:
        import data_store
    except ImportError:
        return None
    return Path(data_store.__file__).parent / "data"


def sources() -> dict[str, Path]:
    """Name -> folder of every corpus present on this machine."""
    found = {"pydicom": pydicom_files()}
    extra = pydicom_data_files()
    if extra is not None and extra.is_dir():
        found["pydicom-data"] = extra
    if FO_DICOM.is_dir():
        found["fo-dicom"] = FO_DICOM
    return found


def foreign_dicomdirs() -> list[Path]:
    """DICOMDIR files of the corpus (old CDs, implicit VR, big endian ...)."""
    out = []
    for root in sources().values():
        for dirpath, _, names in os.walk(root):
            out += [Path(dirpath) / n for n in names if n.upper().startswith("DICOMDIR")]
    return sorted(out)


def tree_digest(root: Path) -> str:
    """One digest of every file's path and bytes: proves a source unchanged."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(str(p.relative_to(root)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def reason_class(reason: str) -> str:
    """A left-out reason without its file-specific detail, for the summary table."""
    if reason.startswith("same SOP Instance UID"):
        return "conflicting duplicate SOP Instance UID"
    for sep in (" at byte ", ": ", " ("):
        reason = reason.split(sep)[0]
    return reason.strip()


def summary_rows(label: str, report: dict, files_in: int) -> list[tuple]:
    """(run, files in, instances packed, left out, reason, count) rows."""
    reasons = Counter(reason_class(p["reason"]) for p in report["invalid"])
    rows = [(label, files_in, report["instances"], len(report["invalid"]), "", "")]
    rows += [("", "", "", "", why, n) for why, n in reasons.most_common()]
    return rows
