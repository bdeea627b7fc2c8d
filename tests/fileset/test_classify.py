"""How the scanner classifies real-world oddities, through the real CLI:
header-only instances, truncation, raw Big Endian data sets, broken
structures dcmdump refuses, and conflicting duplicates."""
from __future__ import annotations

import io
import json
import struct

from pydicom import dcmwrite

from dicompack.dcmio import encode_meta
from tests.support import synthetic
from tests.support.tools import run_cli

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"
JPEG_BASELINE, JPEG_LOSSLESS = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70"
HEADER_ONLY = "image instance without Pixel Data"


def _instance(sop_uid: str, **extra):
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid=sop_uid,
                                 rows=8, columns=8)
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def _dataset(ds, *, implicit=False, big_endian=False, pixels=True) -> bytes:
    """The data set alone (no preamble, no File Meta) in the given encoding."""
    ds = synthetic._copy_for_encoding(ds, big_endian)
    if hasattr(ds, "file_meta"):
        del ds.file_meta
    if not pixels:
        del ds.PixelData
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=implicit, little_endian=not big_endian, enforce_file_format=False)
    return buf.getvalue()


def _encapsulated(fragments: list[bytes], *, implicit=False) -> bytes:
    """Encapsulated Pixel Data: empty Basic Offset Table, the fragments, the delimiter."""
    head = b"\xe0\x7f\x10\x00" + (b"" if implicit else b"OB\x00\x00") + b"\xff\xff\xff\xff"
    items = b"".join(b"\xfe\xff\x00\xe0" + struct.pack("<I", len(f)) + f for f in [b"", *fragments])
    return head + items + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _part10(ds, ts: str, dataset: bytes) -> bytes:
    return encode_meta(CT, ds.SOPInstanceUID, ts) + dataset


def _pack(src, out, *args):
    proc = run_cli("pack", src, "-o", out, "--json", *args)
    return proc.returncode, json.loads(proc.stdout or b"{}"), proc.stderr.decode()


def _by_path(items) -> dict[str, str]:
    return {p["path"].rsplit("/", 1)[-1]: p["reason"] for p in items}


# ------------------------------------------------------------ header-only vs truncated

def test_complete_instance_without_pixel_data_is_packed_with_a_warning(tmp_path):
    ds = _instance("1.2.3.4.10")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "header_only.dcm").write_bytes(_part10(ds, EXPLICIT_LE, _dataset(ds, pixels=False)))
    code, report, err = _pack(tmp_path / "in", tmp_path / "out")
    assert code == 0, err
    assert report["instances"] == 1 and not report["invalid"]
    assert _by_path(report["warnings"])["header_only.dcm"].startswith(HEADER_ONLY)


def test_instance_cut_inside_an_element_is_truncated(tmp_path):
    ds = _instance("1.2.3.4.11")
    whole = _part10(ds, EXPLICIT_LE, _dataset(ds))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.dcm").write_bytes(whole[:-5])     # inside the Pixel Data value
    code, report, err = _pack(tmp_path / "in", tmp_path / "out")
    assert code == 3 and not (tmp_path / "out").exists()
    assert report["message"].startswith("truncated (the file ends inside an element): value of (7FE0,0010)")


# ------------------------------------------------------------ raw data sets

def test_raw_big_endian_data_set_is_accepted_like_its_little_endian_twin(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "raw_le").write_bytes(_dataset(_instance("1.2.3.4.20")))
    (src / "raw_be").write_bytes(_dataset(_instance("1.2.3.4.21"), big_endian=True))
    code, report, err = _pack(src, tmp_path / "out")
    assert code == 0, err
    assert report["instances"] == 2 and not report["skipped"] and not report["invalid"]
    assert report["transfer_syntaxes"] == {EXPLICIT_LE: 1, EXPLICIT_BE: 1}


# ------------------------------------------------------------ broken structures dcmdump refuses

def test_structures_dcmdump_refuses_are_refused_with_their_cause(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ds = _instance("1.2.3.4.30")
    # A sequence whose declared length (0) leaves its item at the top level
    # (fo-dicom's FreezePattern.dcm).
    stray = b"\x29\x00\x10\x10SQ\x00\x00\x00\x00\x00\x00" + b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    (src / "stray_item.dcm").write_bytes(_part10(ds, EXPLICIT_LE, _dataset(ds, pixels=False) + stray
                                                 + _dataset(ds)[len(_dataset(ds, pixels=False)):]))
    ds = _instance("1.2.3.4.31")
    (src / "odd_fragment.dcm").write_bytes(
        _part10(ds, JPEG_LOSSLESS, _dataset(ds, pixels=False) + _encapsulated([b"\xff\xd8\x00\xff\xd9"])))
    # File Meta says JPEG Baseline, the data set is Implicit VR (pydicom's SC_rgb_jpeg.dcm).
    ds = _instance("1.2.3.4.32")
    (src / "jpeg_in_implicit.dcm").write_bytes(
        _part10(ds, JPEG_BASELINE, _dataset(ds, implicit=True, pixels=False)
                + _encapsulated([b"\xff\xd8\x00\x00\xff\xd9"], implicit=True)))
    ds = _instance("1.2.3.4.33")
    (src / "good.dcm").write_bytes(_part10(ds, EXPLICIT_LE, _dataset(ds)))
    code, report, err = _pack(src, tmp_path / "out", "--skip-invalid")
    assert code == 0, err
    reasons = _by_path(report["invalid"])
    assert reasons["stray_item.dcm"].startswith("corrupt: item tag (FFFE,E000) outside any sequence")
    assert reasons["odd_fragment.dcm"].startswith("corrupt: Pixel Data fragment at byte")
    assert "odd length 5" in reasons["odd_fragment.dcm"]
    assert reasons["jpeg_in_implicit.dcm"].startswith(
        "corrupt: encapsulated Pixel Data (undefined length) in a data set encoded as Implicit VR")
    assert report["instances"] == 1


# ------------------------------------------------------------ conflicting duplicates

def _lossless_and_lossy(sop_uid: str) -> tuple[bytes, bytes]:
    """The uncompressed original, and a lossy JPEG copy of it that has more
    elements (so completeness alone would pick the lossy one)."""
    original = _instance(sop_uid)
    lossy = _instance(sop_uid, LossyImageCompression="01", LossyImageCompressionRatio="10",
                      LossyImageCompressionMethod="ISO_10918_1")
    fragment = b"\xff\xd8" + b"\x00" * 20 + b"\xff\xd9"
    return (_part10(original, EXPLICIT_LE, _dataset(original)),
            _part10(lossy, JPEG_BASELINE, _dataset(lossy, pixels=False) + _encapsulated([fragment])))


def _conflict_run(tmp_path, lossless_name: str, lossy_name: str):
    src = tmp_path / f"in_{lossless_name}"
    src.mkdir()
    original, lossy = _lossless_and_lossy("1.2.3.4.40")
    (src / lossless_name).write_bytes(original)
    (src / lossy_name).write_bytes(lossy)
    return _pack(src, tmp_path / f"out_{lossless_name}", "--skip-invalid")


def test_lossless_copy_wins_whichever_name_sorts_first(tmp_path):
    for lossless_name, lossy_name in (("a_original.dcm", "b_lossy.dcm"), ("b_original.dcm", "a_lossy.dcm")):
        code, report, err = _conflict_run(tmp_path, lossless_name, lossy_name)
        assert code == 0, err
        assert report["transfer_syntaxes"] == {EXPLICIT_LE: 1}
        reason = _by_path(report["invalid"])[lossy_name]
        assert reason.startswith(f"same SOP Instance UID as {tmp_path}/in_{lossless_name}/{lossless_name} "
                                 f"(kept: lossless ({EXPLICIT_LE}) over lossy ({JPEG_BASELINE}")


def test_strict_mode_lists_every_invalid_file_and_every_conflict_in_one_run(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    original, lossy = _lossless_and_lossy("1.2.3.4.50")
    (src / "original.dcm").write_bytes(original)
    (src / "lossy.dcm").write_bytes(lossy)
    ds = _instance("1.2.3.4.51")
    (src / "cut.dcm").write_bytes(_part10(ds, EXPLICIT_LE, _dataset(ds))[:-5])
    proc = run_cli("pack", src, "-o", tmp_path / "out")
    err = proc.stderr.decode()
    assert proc.returncode == 3 and not (tmp_path / "out").exists()
    assert f"{src}/cut.dcm: truncated (the file ends inside an element)" in err
    assert f"{src}/lossy.dcm: same SOP Instance UID as {src}/original.dcm (kept: lossless" in err
