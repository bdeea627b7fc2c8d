"""De-identification: a PHI-planted corpus leaves no marker and no original
UID anywhere in the output; references still resolve; options and policy."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicompack.deid import table
from tests.support import synthetic
from tests.support.pki import make_recipient
from tests.support.tools import dciodvfy_errors, require_tool, run_cli

MARK = "PHIMARK"
ROOT = "1.2.826.0.1.3680043.2.777"
_TEXT = {"LO": MARK, "SH": MARK, "LT": MARK, "ST": MARK, "UT": MARK, "UC": MARK, "CS": MARK,
         "PN": f"{MARK}^{MARK}", "DA": "20010203", "DT": "20010203040506", "TM": "040506", "AS": "042Y"}


def _planted(n: int, *, refs: list[str] = (), name: str = "Müller^PHIMARK", charset: str = "ISO_IR 192") -> Dataset:
    ds = synthetic.make_instance(study_uid=f"{ROOT}.1", series_uid=f"{ROOT}.1.1", sop_uid=f"{ROOT}.1.1.{n}",
                                 patient_name=name, patient_id=f"{MARK}ID", charset=charset, instance_number=n)
    for tag in table()["exact"]:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if tag >> 16 in (0x0002, 0x7FE0, 0x0008) and tag in (0x00080016, 0x00080018):
            continue
        if vr in _TEXT and tag not in ds:
            ds.add_new(tag, vr, _TEXT[vr])
        elif vr == "SQ" and tag not in ds:
            item = Dataset()
            item.PersonName = f"{MARK}^Nested"
            item.TextValue = f"note by {MARK}"
            ds.add_new(tag, "SQ", Sequence([item]))
    ds.FrameOfReferenceUID = f"{ROOT}.9"
    if refs:
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = refs[0]
        ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0011, "PHIMARK CREATOR", create=True)
    block.add_new(0x01, "LO", f"{MARK} private")
    ds.BurnedInAnnotation = "NO"
    return ds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("phi") / "src"
    synthetic.write_file(_planted(1), src / "a.dcm")
    synthetic.write_file(_planted(2, refs=[f"{ROOT}.1.1.1"], name="Dupont^Élise", charset="ISO_IR 100"),
                         src / "b.dcm", implicit=True)
    return src


def _all_bytes(path: Path) -> bytes:
    if not path.is_dir():
        return path.read_bytes()
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def _zip_bytes(data: bytes) -> bytes:
    """The container's own bytes (names, manifest) and every entry decompressed."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return data + b"".join(z.read(name) for name in z.namelist())


def _opened_secure(package: Path, cert: Path, key: Path) -> bytes:
    """Decrypt with real openssl, then the DigestedData of an unsigned package."""
    openssl = require_tool("openssl")
    inner = subprocess.run([openssl, "cms", "-decrypt", "-inform", "DER", "-in", str(package), "-recip", str(cert),
                            "-inkey", str(key), "-binary"], capture_output=True, check=True).stdout
    return subprocess.run([openssl, "cms", "-digest_verify", "-inform", "DER", "-binary"], input=inner,
                          capture_output=True, check=True).stdout


def _leaks(data: bytes) -> list[str]:
    needles = {MARK: [MARK.encode(e) for e in ("latin-1", "utf-8", "utf-16-le")],
               "Müller": ["Müller".encode(), "Müller".encode("latin-1")],
               "Élise": ["Élise".encode("latin-1"), "Élise".encode()],
               "UID root": [ROOT.encode()], "date": [b"20010203"]}
    return [what for what, forms in needles.items() if any(f in data for f in forms)]


@pytest.mark.parametrize("suffix", ["", ".zip", ".p7m"])
def test_no_marker_survives(corpus, tmp_path, suffix):
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    out = tmp_path / f"out{suffix}"
    assert _leaks(_all_bytes(corpus))        # the corpus really is planted
    extra = []
    if suffix == ".p7m":
        cert, recip_key = make_recipient(tmp_path / "pki")
        extra = ["--recipient", cert]
    proc = run_cli("pack", corpus, "-o", out, "--deidentify", "--deid-key-file", key, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["stages"]["deid"]["instances"] == 2
    data = _all_bytes(out)
    if suffix == ".zip":
        data = _zip_bytes(data)
    elif suffix == ".p7m":
        data = _zip_bytes(_opened_secure(out, cert, recip_key))
    assert b"DICM" in data                    # the scan sees the DICOM files themselves
    assert _leaks(data) == []
    assert MARK not in proc.stdout.decode()


def test_references_stay_consistent_and_marked(corpus, tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    out = tmp_path / "out"
    run_cli("pack", corpus, "-o", out, "--deidentify", "--deid-key-file", key, "-q", check=True)
    files = [pydicom.dcmread(p) for p in out.rglob("IM*")]
    uids = {str(ds.SOPInstanceUID) for ds in files}
    referring = next(ds for ds in files if "ReferencedImageSequence" in ds)
    assert str(referring.ReferencedImageSequence[0].ReferencedSOPInstanceUID) in uids
    assert len({str(ds.FrameOfReferenceUID) for ds in files}) == 1
    for ds in files:
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    # Same key, same pseudonyms and UIDs; another key, others.
    again = tmp_path / "again"
    run_cli("pack", corpus, "-o", again, "--deidentify", "--deid-key-file", key, "-q", check=True)
    assert {str(pydicom.dcmread(p).SOPInstanceUID) for p in again.rglob("IM*")} == uids
    other_key = tmp_path / "other"
    other_key.write_bytes(b"o" * 32)
    third = tmp_path / "third"
    run_cli("pack", corpus, "-o", third, "--deidentify", "--deid-key-file", other_key, "-q", check=True)
    assert not {str(pydicom.dcmread(p).SOPInstanceUID) for p in third.rglob("IM*")} & uids


def test_dciodvfy_no_new_errors(tmp_path):
    src = tmp_path / "src"
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1")
    synthetic.write_file(ds, src / "ct.dcm")
    out = tmp_path / "out"
    run_cli("pack", src, "-o", out, "--deidentify", "-q", check=True)
    before = set(dciodvfy_errors(src / "ct.dcm"))
    after = set(dciodvfy_errors(next(out.rglob("IM*"))))
    assert after <= before, after - before
    assert dciodvfy_errors(out / "DICOMDIR") == []


def test_modified_dates_shift_consistently(corpus, tmp_path):
    out = tmp_path / "out"
    run_cli("pack", corpus, "-o", out, "--deidentify", "--retain-dates", "modified", "--date-shift-days", "-10",
            "-q", check=True)
    for p in out.rglob("IM*"):
        ds = pydicom.dcmread(p)
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "113107" in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
        assert ds.StudyDate == "20231222"     # the synthetic 2024-01-01 minus 10 days


def test_burned_in_policy(tmp_path):
    src = tmp_path / "src"
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1", modality="US",
                                 samples_per_pixel=3, photometric="RGB", bits_allocated=8, bits_stored=8)
    synthetic.write_file(ds, src / "us.dcm")
    proc = run_cli("pack", src, "-o", tmp_path / "out", "--deidentify")
    assert proc.returncode == 10 and b"burned-in" in proc.stderr
    assert not (tmp_path / "out").exists()
    run_cli("pack", src, "-o", tmp_path / "out", "--deidentify", "--burned-in", "keep", "-q", check=True)


def test_every_refused_instance_is_named_or_left_out(tmp_path):
    """Refusals do not stop at the first file: all are named (one line
    each); --skip-invalid packs the rest and lists them in the report."""
    src = tmp_path / "src"
    synthetic.write_file(synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1"),
                         src / "ct.dcm")
    for n, modality in enumerate(("US", "XA"), 2):
        synthetic.write_file(synthetic.make_instance(study_uid="1.2.3", series_uid=f"1.2.3.{n}",
                                                     sop_uid=f"1.2.3.{n}.1", modality=modality),
                             src / f"{modality.lower()}.dcm")
    proc = run_cli("pack", src, "-o", tmp_path / "out", "--deidentify")
    lines = [line for line in proc.stderr.decode().splitlines() if "warning" not in line]
    assert proc.returncode == 10 and len(lines) == 2, lines
    assert {"us.dcm", "xa.dcm"} == {Path(line.split(": ")[1]).name for line in lines}
    assert not (tmp_path / "out").exists()
    report = json.loads(run_cli("pack", src, "-o", tmp_path / "out", "--deidentify", "--skip-invalid", "--json",
                                check=True).stdout)
    assert report["instances"] == 1 and report["stages"]["deid"]["refused"] == 2
    assert sorted(Path(p["path"]).name for p in report["invalid"]) == ["us.dcm", "xa.dcm"]


def test_table_is_complete_data():
    t = table()
    assert t["rows"] >= 600 and "E.1-1" in t["source"]
    assert t["exact"][0x00100010]["basic"] == "Z" and t["exact"][0x0020000D]["basic"] == "U"
    assert t["private"]["basic"] == "X"


def test_reidentification_round_trip(example_corpus, tmp_path):
    """--reid-recipient seals the originals; `reidentify` restores every
    data set exactly (the Encrypted Attributes Sequence aside)."""
    src, info = example_corpus
    cert, key = make_recipient(tmp_path)
    package = tmp_path / "anon.zip"
    run_cli("pack", src, "-o", package, "--deidentify", "--burned-in", "keep", "--reid-recipient", cert, "-q",
            check=True)
    assert b"Doe^John" not in package.read_bytes() and "山田".encode() not in package.read_bytes()
    out = tmp_path / "restored"
    # A re-identification key is key material: the plain ZIP needs --allow-plain (receive policy).
    proc = run_cli("reidentify", package, "-o", out, "--key", key, "--cert", cert, "--allow-plain")
    assert proc.returncode == 0, proc.stderr
    restored = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p) for p in out.rglob("IM*")}
    assert set(restored) == set(info["instances"])
    for rel in info["files"]:
        original = pydicom.dcmread(src / rel, force=True)
        mine = restored[str(original.SOPInstanceUID)]
        for elem in original:
            assert mine[elem.tag] == elem, (rel, elem.tag)
        assert not [e.tag for e in mine if e.tag not in original]
    wrong_cert, wrong_key = make_recipient(tmp_path / "other")
    proc = run_cli("reidentify", package, "-o", tmp_path / "never", "--key", wrong_key, "--cert", wrong_cert,
                   "--allow-plain")
    assert proc.returncode == 6 and not (tmp_path / "never").exists()


def _as_un(path: Path, tags: list[int]) -> None:
    """Rewrite top-level explicit VR elements as UN in the file itself
    (pydicom's writer would restore the known VR)."""
    data = path.read_bytes()
    for tag in tags:
        head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        at = data.index(head, 132 + 12)
        vr, length = data[at + 4:at + 6], struct.unpack("<H", data[at + 6:at + 8])[0]
        assert vr in (b"PN", b"UI", b"LO"), vr
        data = data[:at] + head + b"UN\x00\x00" + struct.pack("<I", length) + data[at + 8:]
    path.write_bytes(data)


def test_values_sent_as_un_are_still_judged_by_their_real_vr(tmp_path):
    """An unlisted person name and UID written with VR UN (as by systems
    that did not know the tag) are still handled as PN and UI."""
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1")
    ds.add_new(0x0040A123, "PN", f"{MARK}^Un")                    # Person Name: not in Table E.1-1
    ds.add_new(0x00081150, "UI", f"{ROOT}.55")                    # Referenced SOP Class UID: not listed
    path = synthetic.write_file(ds, tmp_path / "src" / "un.dcm")
    _as_un(path, [0x00081150, 0x0040A123])
    assert pydicom.dcmread(path).get_item(0x0040A123).VR == "UN"
    out = tmp_path / "out"
    run_cli("pack", tmp_path / "src", "-o", out, "--deidentify", "-q", check=True)
    assert _leaks(_all_bytes(out)) == []
