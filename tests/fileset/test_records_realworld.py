"""Directory records from real-world values (issue 13), through the real CLI:
instances whose identifying UIDs cannot make a valid record are refused
(or left out under --skip-invalid, never merged into an invented study);
every Type 1 key gets a value; 1C keys come from where the IOD nests them;
values copied into records are made valid for their VR, each change reported.
Every DICOMDIR written here passes dciodvfy, pydicom's FileSet and our check."""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RTPlanStorage

from dicompack.fileset.records import (
    element_value,
    identity_problem,
    key_bytes,
    known_record_types,
    make_record,
    normalised_charset,
    record_keys,
    uid_problem,
)
from dicompack.scan import ScanResult
from tests.support import synthetic
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import dciodvfy_errors, run_cli, tree_digest

uid = synthetic.uid_for


def _write(ds: Dataset, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the test writes invalid values on purpose
        return synthetic.write_file(ds, path)


def _ct(tag: str, **kw) -> Dataset:
    args = dict(study_uid=uid(tag, "study"), series_uid=uid(tag, "series"), sop_uid=uid(tag, "sop"),
                rows=8, columns=8)
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # invalid UIDs on purpose
        return synthetic.make_instance(**args)


def _pack(src: Path, out: Path, *extra: str) -> tuple[int, dict, str]:
    proc = run_cli("pack", src, "-o", out, "--json", "-q", *extra)
    return proc.returncode, json.loads(proc.stdout), proc.stderr.decode()


def _valid_everywhere(out: Path) -> None:
    """The DICOMDIR passes dciodvfy, pydicom's FileSet (warnings as errors) and our check."""
    from pydicom.fileset import FileSet
    assert dciodvfy_errors(out / "DICOMDIR") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FileSet(out / "DICOMDIR")
    check = json.loads(run_cli("check", out, "--json").stdout)
    assert [f for f in check["findings"] if f["severity"] == "error"] == []


def _records(out: Path, record_type: str) -> list[Dataset]:
    dd = dcmread(out / "DICOMDIR")
    return [r for r in dd.DirectoryRecordSequence if r.DirectoryRecordType == record_type]


# ---------------------------------------------------------------- identity

@pytest.fixture()
def bad_identity(tmp_path) -> tuple[Path, dict[str, str]]:
    """Three instances whose UIDs cannot make a record, and one good one."""
    src = tmp_path / "in"
    no_study = _ct("nostudy")
    del no_study.StudyInstanceUID
    empty_series = _ct("emptyseries")
    empty_series.SeriesInstanceUID = ""
    hex_study = _ct("hexstudy", study_uid="05fa52f0e599f17b8186ff18fcdf2b55")
    leading_zero = _ct("zero", sop_uid="1.2.840.01.5")
    for name, ds in {"nostudy.dcm": no_study, "emptyseries.dcm": empty_series,
                     "hexstudy.dcm": hex_study, "zero.dcm": leading_zero,
                     "good.dcm": _ct("good")}.items():
        _write(ds, src / name)
    expected = {"nostudy.dcm": "Study Instance UID (0020,000D) is missing",
                "emptyseries.dcm": "Series Instance UID (0020,000E) is empty",
                "hexstudy.dcm": "Study Instance UID (0020,000D) is not a valid UID: '05fa52f0e599f17b8186…' "
                                "has characters other than digits and dots",
                "zero.dcm": "SOP Instance UID (0008,0018) is not a valid UID: '1.2.840.01.5' "
                            "has a component with a leading zero"}
    return src, expected


def test_instances_without_valid_identifying_uids_are_refused_all_in_one_run(bad_identity, tmp_path):
    src, expected = bad_identity
    code, report, stderr = _pack(src, tmp_path / "out")
    assert code == 3
    assert {Path(p).name: why for p, why in report["problems"]} == expected
    assert "Traceback" not in stderr and not (tmp_path / "out").exists()


def test_skip_invalid_leaves_them_out_never_merged(bad_identity, tmp_path):
    src, expected = bad_identity
    before = tree_digest(src)
    out = tmp_path / "out"
    code, report, _ = _pack(src, out, "--skip-invalid")
    assert code == 0
    assert {Path(p["path"]).name: p["reason"] for p in report["invalid"]} == expected
    assert (report["studies"], report["instances"]) == (1, 1)
    assert tree_digest(src) == before
    _valid_everywhere(out)


# ---------------------------------------------------------------- Type 1 and 1C keys

def _rt_plan(label: str) -> Dataset:
    ds = synthetic.make_sr(study_uid=uid("rt", "study"), series_uid=uid("rt", "series"),
                           sop_uid=uid("rt", "plan"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = RTPlanStorage
    ds.Modality, ds.InstanceNumber, ds.RTPlanLabel = "RTPLAN", 1, label
    ds.RTPlanDate, ds.RTPlanTime = "20240101", "120000"
    return ds


def test_empty_rt_plan_label_is_invented_and_reported(tmp_path):
    _write(_rt_plan(""), tmp_path / "in" / "plan.dcm")
    out = tmp_path / "out"
    code, report, _ = _pack(tmp_path / "in", out)
    assert code == 0
    assert {"record_type": "RT PLAN", "keyword": "RTPlanLabel", "value": "UNKNOWN"} in report["invented"]
    assert _records(out, "RT PLAN")[0].RTPlanLabel == "UNKNOWN"
    _valid_everywhere(out)


def _has_value(rec, key) -> bool:
    binary = key.vr in (b"US", b"UL", b"UV")     # an invented 0 is all zero bytes
    return bool(element_value(rec.elements[key.tag]) if binary else key_bytes(rec, key.tag))


def test_every_type1_key_of_every_record_type_gets_a_value():
    """A record made from an instance holding none of its keys: every Type 1
    key is invented and noted (but sequences, which have no sensible dummy,
    and UIDs, which the scanner demands valid before any record is made)."""
    scan = ScanResult("x.dcm", "dicom", values={0x00080016: b"1.2.3", 0x00080018: b"1.2.4"})
    empty = []
    for record_type in sorted(known_record_types()):
        notes: list = []
        rec = make_record(record_type, scan, invent={}, notes=notes)
        type1 = [k for k in record_keys(record_type) if k.type == "1" and k.vr not in (b"SQ", b"UI")]
        empty += [(record_type, k.keyword) for k in type1 if not _has_value(rec, k)]
        assert sorted(n.keyword for n in notes) == sorted(k.keyword for k in type1), record_type
    assert empty == []


def _verified_sr(observer_times: list[str]) -> Dataset:
    ds = synthetic.make_sr(study_uid=uid("sr", "study"), series_uid=uid("sr", "series"),
                           sop_uid=uid("sr", "doc"))
    ds.InstanceNumber, ds.ContentDate, ds.ContentTime = 1, "20240101", "120000"
    ds.VerificationFlag = "VERIFIED"
    items = []
    for when in observer_times:
        item = Dataset()
        item.VerifyingObserverName = "Smith^Anna"
        item.VerifyingObserverIdentificationCodeSequence = Sequence()
        item.VerifyingOrganization = "Hospital"
        item.VerificationDateTime = when
        items.append(item)
    ds.VerifyingObserverSequence = Sequence(items)
    return ds


def test_sr_verification_datetime_comes_from_the_verifying_observer_sequence(tmp_path):
    _write(_verified_sr(["20240102103000", "20240103090000"]), tmp_path / "in" / "sr.dcm")
    out = tmp_path / "out"
    code, report, _ = _pack(tmp_path / "in", out)
    assert code == 0
    # The most recent verification, as PS3.3 F.5.24 asks.
    assert _records(out, "SR DOCUMENT")[0].VerificationDateTime == "20240103090000"
    assert not any(i["keyword"] == "VerificationDateTime" for i in report["invented"])
    _valid_everywhere(out)


def test_verified_sr_without_any_verification_datetime_gets_an_invented_one(tmp_path):
    _write(_verified_sr([]), tmp_path / "in" / "sr.dcm")
    out = tmp_path / "out"
    code, report, _ = _pack(tmp_path / "in", out)
    assert code == 0
    assert {"record_type": "SR DOCUMENT", "keyword": "VerificationDateTime",
            "value": "19000101000000"} in report["invented"]
    _valid_everywhere(out)


# ---------------------------------------------------------------- values valid for their VR

def test_values_are_made_valid_for_their_vr_and_reported_one_line_per_file(tmp_path):
    ds = _ct("messy", charset="ISO-IR 100", patient_name="Müller^Jürgen",
             study_id="20220422113657META1", accession_number="ACC-0123456789-XYZ",
             study_date="2024.13.45", study_time="12:30:00",
             study_description="D" * 70)
    path = _write(ds, tmp_path / "in" / "messy.dcm")
    before = tree_digest(tmp_path / "in")
    out = tmp_path / "out"
    code, report, stderr = _pack(tmp_path / "in", out)
    assert code == 0 and "Warning" not in stderr
    study = _records(out, "STUDY")[0]
    assert study.SpecificCharacterSet == "ISO_IR 100"
    assert (study.StudyID, study.AccessionNumber) == ("20220422113657ME", "ACC-0123456789-X")
    assert (study.StudyDate, study.StudyTime) == ("19000101", "123000")
    assert study.StudyDescription == "D" * 64
    assert _records(out, "PATIENT")[0].PatientName == "Müller^Jürgen"
    lines = [f["reason"] for f in report["fixes"] if f["path"] == str(path)]
    assert len(lines) == 1, lines
    for what in ("Specific Character Set 'ISO-IR 100' written as 'ISO_IR 100'",
                 "StudyID (0020,0010) '20220422113657META1' cut to 16 characters",
                 "AccessionNumber (0008,0050)", "StudyDescription (0008,1030)",
                 "StudyDate (0008,0020) '2024.13.45' is not a valid value for DA: replaced by an invented value",
                 "StudyTime (0008,0030) '12:30:00' written as '123000'"):
        assert what in lines[0]
    assert tree_digest(tmp_path / "in") == before
    _valid_everywhere(out)


def test_non_ascii_values_are_cut_at_a_character_boundary(tmp_path):
    ds = _ct("utf8", charset="ISO_IR 192", patient_name="Ä" * 70 + "^Ö")
    _write(ds, tmp_path / "in" / "utf8.dcm")
    out = tmp_path / "out"
    code, report, _ = _pack(tmp_path / "in", out)
    assert code == 0
    # PS3.5 allows 64 characters per component group, dciodvfy 64 bytes:
    # 32 two-byte characters fit both, and no character is split.
    assert str(_records(out, "PATIENT")[0].PatientName) == "Ä" * 32
    assert any("PatientName (0010,0010)" in f["reason"] for f in report["fixes"])
    _valid_everywhere(out)


def test_values_too_long_for_any_record_are_cut_not_a_traceback(tmp_path):
    """Hostile: Implicit VR lets a source hold 200 KB in an LO/LT element,
    more than an Explicit VR record element can even encode (64 KB)."""
    ds = _ct("huge", patient_id="P" * 200_000, study_description="x" * 200_000)
    path = tmp_path / "in" / "huge.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synthetic.write_file(ds, path, implicit=True)
    out = tmp_path / "out"
    started = time.monotonic()
    run = run_cli_measured("pack", tmp_path / "in", "-o", out, "--json", "-q")
    print(f"huge LO values | {run.returncode} | {run.peak_rss_mb:.0f} | {time.monotonic() - started:.1f}")
    assert run.returncode == 0 and b"Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
    assert (_records(out, "PATIENT")[0].PatientID, _records(out, "STUDY")[0].StudyDescription) == \
        ("P" * 64, "x" * 64)
    fixes = [f["reason"] for f in json.loads(run.stdout)["fixes"] if f["path"] == str(path)]
    assert len(fixes) == 1 and "PatientID (0010,0020)" in fixes[0] and "cut to 64 characters" in fixes[0]
    _valid_everywhere(out)


# ---------------------------------------------------------------- unit level

@pytest.mark.parametrize("value, problem", [
    ("1.2.840.10008.1.2", None),
    ("2.25.329800735698586629295641978511506172918", None),
    ("1.2.3 4", "has characters other than digits and dots"),
    ("05fa.1", "has characters other than digits and dots"),
    ("1.2..3", "has an empty component"),
    ("1.2.03", "has a component with a leading zero"),
    ("999.999.2.1", "does not start with the root 1 or 2"),
    ("2.999.1", "uses the example root 2.999"),
    ("1." + "1" * 63, "is 65 characters long (at most 64)"),
])
def test_uid_problem(value, problem):
    assert uid_problem(value) == problem


def test_single_level_objects_need_no_study_or_series():
    hanging_protocol = "1.2.840.10008.5.1.4.38.1"
    values = {0x00080016: hanging_protocol.encode(), 0x00080018: b"1.2.3"}
    assert identity_problem(values) is None
    assert identity_problem({**values, 0x00080016: b"1.2.840.10008.5.1.4.1.1.7"}) == \
        "Study Instance UID (0020,000D) is missing"


@pytest.mark.parametrize("given, expected", [
    (b"ISO-IR 100", b"ISO_IR 100"), (b"ISO_IR_192", b"ISO_IR 192"), (b"UTF-8", b"ISO_IR 192"),
    (b"\\ISO-2022-IR-87", b"\\ISO 2022 IR 87"), (b"ISO_IR 100", b"ISO_IR 100"),
    (b"SOMETHING ELSE", b"SOMETHING ELSE"), (b"ISO-IR 999", b"ISO-IR 999"),
])
def test_charset_misspellings(given, expected):
    assert normalised_charset(given) == expected
