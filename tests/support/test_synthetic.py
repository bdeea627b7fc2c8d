"""Tests for the deterministic synthetic-data generator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from tests.support import synthetic as S

EXPECTED_TS = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "big_endian": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Generate the example corpus once for the module."""
    root = tmp_path_factory.mktemp("corpus")
    return root, S.make_example_corpus(root)


def _files(root: Path) -> dict[str, bytes]:
    """Map relative path -> bytes for every file under *root*."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _dciodvfy_errors(path: Path) -> list[str]:
    """Return dciodvfy's ``Error`` lines for *path*."""
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                         errors="replace", timeout=60)
    return [ln for ln in (res.stderr + res.stdout).splitlines() if ln.startswith("Error")]


def test_uid_for_is_deterministic_and_valid():
    uid = S.uid_for("a", "b")
    assert uid == S.uid_for("a", "b") != S.uid_for("a|b", "c")
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert uid[5:].isdigit() and not uid[5:].startswith("0")


def test_corpus_reads_back_with_matching_meta(corpus):
    root, info = corpus
    assert len(info["instances"]) == len(set(info["instances"])) == 20
    assert info["total_bytes"] < 3 * 1024 * 1024
    for rel, sop_uid in info["files"].items():
        encoding = info["encodings"][rel]
        ds = dcmread(root / rel, force=(encoding == "raw"))
        assert ds.SOPInstanceUID == sop_uid
        if encoding == "raw":
            assert (root / rel).read_bytes()[128:132] != b"DICM"
            assert "TransferSyntaxUID" not in ds.file_meta
            continue
        meta = ds.file_meta
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.TransferSyntaxUID == EXPECTED_TS[encoding]
        assert meta.ImplementationClassUID == S.IMPLEMENTATION_CLASS_UID
        if "PixelData" in ds:
            arr = ds.pixel_array
            assert arr.max() < (1 << ds.BitsStored) and arr.std() > 0


def test_corpus_content(corpus):
    root, info = corpus
    for junk in info["junk"]:
        assert (root / junk).is_file()
    assert set(info["encodings"].values()) == {"explicit", "implicit", "big_endian",
                                                "deflated", "raw"}
    by_mod = {}
    for rel, uid in info["files"].items():
        by_mod.setdefault(info["modalities"][uid], []).append(rel)
    assert len(by_mod["CT"]) == 10 and {"MR", "US", "SR", "KO", "PR"} <= set(by_mod)
    mr = dcmread(root / by_mod["MR"][0])
    assert str(mr.PatientName) == "Müller^Jürgen" and mr.StudyID == ""
    assert "Müller".encode("latin-1") in (root / by_mod["MR"][0]).read_bytes()
    us = dcmread(root / by_mod["US"][0])
    assert str(us.PatientName) == "山田^太郎"
    assert us.pixel_array.shape == (5, 64, 64, 3) and us.pixel_array.dtype == np.uint8
    sr = dcmread(root / by_mod["SR"][0])
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(evidence.ReferencedSOPSequence) == 10


def test_non_little_endian_encodings_keep_pixels(corpus):
    root, info = corpus
    explicit = [r for r, e in info["encodings"].items()
                if e == "explicit" and info["modalities"][info["files"][r]] == "CT"]
    ref = dcmread(root / explicit[0]).pixel_array
    for rel, enc in info["encodings"].items():
        if enc in ("big_endian", "deflated", "implicit"):
            arr = dcmread(root / rel).pixel_array
            # Same phantom, different slice seed: close but not equal.
            assert arr.shape == ref.shape and abs(float(arr.mean()) - float(ref.mean())) < 50


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_ct_mr_pass_dciodvfy(corpus):
    root, info = corpus
    checked = 0
    for rel, uid in info["files"].items():
        # dicom3tools cannot read deflated files.
        if info["modalities"][uid] in ("CT", "MR") and info["encodings"][rel] != "deflated":
            assert _dciodvfy_errors(root / rel) == [], rel
            checked += 1
    assert checked == 15


def test_corpus_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    S.make_example_corpus(a)
    S.make_example_corpus(b)
    assert _files(a) == _files(b)


@pytest.mark.parametrize("photometric,planar", [("RGB", 1), ("YBR_FULL", 0)])
def test_colour_variants(tmp_path, photometric, planar):
    ds = S.make_instance(study_uid=S.uid_for("s"), series_uid=S.uid_for("se"),
                         sop_uid=S.uid_for("i"), modality="OT", bits_allocated=8,
                         bits_stored=8, samples_per_pixel=3, photometric=photometric,
                         planar_configuration=planar)
    back = dcmread(S.write_file(ds, tmp_path / "c.dcm"))
    assert back.PlanarConfiguration == planar
    assert back.pixel_array.shape == (64, 64, 3)


def test_signed_pixels_within_bits_stored():
    arr = S.phantom_pixels(bits_stored=12, pixel_representation=1)
    assert arr.dtype == np.int16 and arr.min() >= -2048 and arr.max() <= 2047
    assert arr.min() < 0


def test_bad_inputs_are_bad(tmp_path):
    bad = S.make_bad_inputs(tmp_path)
    assert set(bad) == {"truncated", "truncated_header", "not_dicom",
                        "conflicting_duplicate", "identical_duplicate"}
    trunc = dcmread(bad["truncated"], defer_size=None, stop_before_pixels=True)
    expected = trunc.Rows * trunc.Columns * trunc.BitsAllocated // 8
    pixel_start = bad["truncated"].read_bytes().rfind(b"\xe0\x7f\x10\x00OW")
    assert len(bad["truncated"].read_bytes()) - pixel_start - 12 < expected
    header = bad["truncated_header"].read_bytes()
    assert header[128:132] == b"DICM" and b"\xe0\x7f\x10\x00" not in header
    assert not bad["not_dicom"].read_bytes().startswith(b"\x00" * 128)

    second = dcmread(bad["conflicting_duplicate"])
    first = dcmread(tmp_path / "conflicting_a.dcm")
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert first.PixelData != second.PixelData
    orig = tmp_path / "identical_a.dcm"
    assert orig.read_bytes() == bad["identical_duplicate"].read_bytes()
    assert orig != bad["identical_duplicate"]


def test_conformant_tree(tmp_path):
    paths = S.make_conformant_tree(tmp_path, 200)
    assert len(paths) == len(set(paths)) == 200
    uids = set()
    for p in paths:
        rel = p.relative_to(tmp_path).parts
        assert len(rel) == 4 and all(len(c) <= 8 and c.isupper() for c in rel)
        ds = dcmread(p)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 200
    assert ds.pixel_array.shape == (16, 16)


def test_tree_matches_pydicom_encoding(tmp_path):
    # The byte-splicing fast path must equal the slow pydicom path exactly.
    paths = S.make_conformant_tree(tmp_path, 50, patients=3, series_per_patient=2)
    for i in (0, 17, 49):
        kw, _ = S._tree_params(i, 50, 3, 2, 16, 16, 0)
        assert paths[i].read_bytes() == S.encode_file(S.make_instance(**kw))


def test_messy_tree_same_content(tmp_path):
    conf = S.make_conformant_tree(tmp_path / "c", 30)
    messy = S.make_messy_tree(tmp_path / "m", 30)
    assert [p.read_bytes() for p in conf] == [p.read_bytes() for p in messy]
    assert any(" " in p.parent.parent.name or " " in p.parent.name for p in messy)


def test_write_file_raw_has_no_meta(tmp_path):
    ds = S.make_instance(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5")
    raw = S.write_file(ds, tmp_path / "raw", preamble=False).read_bytes()
    # Starts straight with a group 0008 element: no preamble, no group 0002.
    assert raw[:2] == b"\x08\x00" and b"DICM" not in raw[:200]
    back = dcmread(tmp_path / "raw", force=True)
    back.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, ds.pixel_array)
