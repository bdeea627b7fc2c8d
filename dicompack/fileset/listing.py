"""What a File-set holds, from its DICOMDIR: patients, studies, series."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from dicompack.errors import PackageInvalidError
from dicompack.fileset.check import NO_DICOMDIR
from dicompack.fileset.dicomdir import DicomDir, read_index
from dicompack.fileset.records import (
    MODALITY,
    PATIENT_ID,
    PATIENT_NAME,
    SERIES_NUMBER,
    SERIES_UID,
    STUDY_DATE,
    STUDY_DESCRIPTION,
    STUDY_UID,
    Record,
    key_text,
)
from dicompack.report import ListReport


def list_index(root: Path, label: str) -> ListReport:
    """Patients / studies / series of the File-set at ``root``, from its
    DICOMDIR; ``label`` names it in errors and the report."""
    dicomdir = root / "DICOMDIR"
    if not dicomdir.is_file():
        raise PackageInvalidError(NO_DICOMDIR, where=label)     # root: a temporary folder for a ZIP
    dd = read_index(root)
    _refuse_unwalkable(dd, label)
    report = ListReport(path=label, fileset_id=dd.fileset_id)
    for p in dd.roots:
        if p.type != "PATIENT":
            continue
        studies = []
        for st in p.children:
            series = [_series_summary(se) for se in st.children if se.type == "SERIES"]
            studies.append({"study_uid": key_text(st, STUDY_UID), "date": key_text(st, STUDY_DATE),
                            "description": key_text(st, STUDY_DESCRIPTION), "series": series,
                            "instances": sum(s["instances"] for s in series)})
        report.patients.append({"patient_id": key_text(p, PATIENT_ID),
                                "name": key_text(p, PATIENT_NAME), "studies": studies})
    return report


def _refuse_unwalkable(dd: DicomDir, label: str) -> None:
    """`ls` shows what the index holds or fails: never a partial or empty
    listing with exit 0 for records it cannot reach."""
    if dd.unread_directory_files:
        file_id, why = dd.unread_directory_files[0]
        raise PackageInvalidError(f"the DICOMDIR cannot be walked: its lower-level directory file {file_id} "
                                  f"cannot be read ({why})", where=label)
    lost = dd.unreachable()
    if lost:
        first = lost[0]
        raise PackageInvalidError(
            f"the DICOMDIR cannot be walked: {len(lost):,} of {len(dd.records):,} in-use records are not "
            f"reachable from its root (first: {first.type or 'untyped'} record at byte {first.offset}); "
            "`dicompack check` tells why", where=label)
    # Root-level single-level records (hanging protocols, palettes ...) are
    # simply not listed; studies below anything but a PATIENT record would be lost.
    misplaced = next((r for r in dd.roots if r.in_use and r.type != "PATIENT"
                      and any(c.type == "STUDY" for c in r.children)), None)
    if misplaced is not None:
        raise PackageInvalidError(f"the DICOMDIR cannot be listed: studies below a {misplaced.type or 'untyped'} "
                                  f"record (byte {misplaced.offset}) instead of a PATIENT record; "
                                  "`dicompack check` tells why", where=label)


def _series_summary(se: Record) -> dict:
    """One series of the listing: its keys, and its instances counted by
    record type and transfer syntax."""
    leaves = [r for r in se.children if r.in_use]
    return {"series_uid": key_text(se, SERIES_UID), "modality": key_text(se, MODALITY),
            "number": key_text(se, SERIES_NUMBER), "instances": len(leaves),
            "record_types": dict(Counter(r.type for r in leaves)),
            "transfer_syntaxes": dict(Counter(r.transfer_syntax for r in leaves))}
