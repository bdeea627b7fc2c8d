"""--skip-invalid covers every transform stage (de-identification, J2K),
through the real CLI, on hand-made bad instances: with it, each is left out
with one line (file, stage, reason) and the rest is packed; without it, one
run lists every problem of every stage and exits with the error class of the
earliest stage that failed.  No traceback or library warning reaches stderr."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicompack.dcmio import encode_meta
from dicompack.deid import Deidentifier, DeidOptions
from tests.support import synthetic
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import require_tool, run_cli

ROOT = "1.2.826.0.1.3680043.2.779"
RT_IMAGE = "1.2.840.10008.5.1.4.1.1.481.1"


def _instance(n: int, **kw) -> Dataset:
    return synthetic.make_instance(study_uid=f"{ROOT}.1", series_uid=f"{ROOT}.1.{n}", sop_uid=f"{ROOT}.1.{n}.1",
                                   rows=16, columns=16, instance_number=n, **kw)


def _empty_pixels(folder: Path) -> Path:
    ds = _instance(1)
    ds.PixelData = b""
    return synthetic.write_file(ds, folder / "empty.dcm")


def _short_pixels(folder: Path) -> Path:
    """A well-formed element whose value is half a frame."""
    ds = _instance(2)
    ds.PixelData = ds.PixelData[:256]
    return synthetic.write_file(ds, folder / "short.dcm")


def _rt_image_with_curve(folder: Path) -> Path:
    """Implicit VR, with Curve Data (5000,3000), whose dictionary VR is
    'OB or OW' and which pydicom does not resolve: before the fix, writing
    the J2K header (explicit VR) failed with "Cannot write ambiguous VR"."""
    ds = _instance(3, modality="RTIMAGE", sop_class=RT_IMAGE)
    ds.add_new(0x50003000, "OW", b"\x01\x00" * 8)
    return synthetic.write_file(ds, folder / "rtimage.dcm", implicit=True)


def _burned_in_us(folder: Path) -> Path:
    ds = _instance(4, modality="US")
    return synthetic.write_file(ds, folder / "us.dcm")


def _good(folder: Path) -> Path:
    return synthetic.write_file(_instance(5), folder / "good.dcm")


def _truncated(folder: Path) -> Path:
    data = synthetic.encode_file(_instance(6))
    path = folder / "truncated.dcm"
    path.write_bytes(data[: len(data) - 300])
    return path


def _clean(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text and "Warning" not in text, text
    return text


def _left_out(stdout: bytes) -> dict[str, str]:
    return {Path(p["path"]).name: p["reason"] for p in json.loads(stdout)["invalid"]}


@pytest.fixture
def src(tmp_path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


def test_j2k_with_skip_invalid_leaves_out_the_short_one_and_packs_the_rest(src, tmp_path):
    for make in (_empty_pixels, _short_pixels, _rt_image_with_curve, _good):
        make(src)
    proc = run_cli_measured("pack", src, "-o", tmp_path / "out", "--j2k", "lossless", "--skip-invalid", "--json",
                            "-q")
    _clean(proc.stderr)
    assert proc.returncode == 0 and proc.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
    left = _left_out(proc.stdout)
    assert list(left) == ["short.dcm"]
    assert left["short.dcm"].startswith("J2K: ") and "\n" not in left["short.dcm"]
    report = json.loads(proc.stdout)
    assert report["instances"] == 3
    # Empty Pixel Data has nothing to compress: kept as plain pack keeps it, with a note.
    assert report["stages"]["j2k"]["kept"] == {"empty Pixel Data: kept as it is": 1}


def test_text_output_has_one_line_per_left_out_file(src, tmp_path):
    for make in (_short_pixels, _burned_in_us, _good):
        make(src)
    proc = run_cli("pack", src, "-o", tmp_path / "out", "--j2k", "lossless", "--deidentify",
                   "--deid-key-file", _key(tmp_path), "--skip-invalid")
    err = _clean(proc.stderr)
    assert proc.returncode == 0, err
    lines = [line for line in proc.stdout.decode().splitlines() if "left out:" in line]
    assert len(lines) == 2, lines
    assert any(re.search(r"short\.dcm: J2K: .*Pixel Data", line) for line in lines), lines
    assert any(re.search(r"us\.dcm: de-identification: .*burned-in", line) for line in lines), lines


def test_rt_image_with_an_ambiguous_vr_is_compressed(src, tmp_path):
    _rt_image_with_curve(src)
    out = tmp_path / "out"
    proc = run_cli("pack", src, "-o", out, "--j2k", "lossless", "--json", "-q")
    _clean(proc.stderr)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["stages"]["j2k"]["encoded_instances"] == 1
    [packed] = [p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    ds = pydicom.dcmread(packed)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert ds[0x50003000].VR == "OW" and ds[0x50003000].value == b"\x01\x00" * 8


def test_without_skip_invalid_one_run_lists_every_stage_and_exits_with_the_earliest(src, tmp_path):
    """Scan (3) before de-identification (10) before J2K (11)."""
    for make in (_short_pixels, _burned_in_us, _truncated, _good):
        make(src)
    out = tmp_path / "out"
    proc = run_cli_measured("pack", src, "-o", out, "--j2k", "lossless", "--deidentify", "--deid-key-file",
                            _key(tmp_path))
    err = _clean(proc.stderr)
    assert proc.returncode == 3 and proc.peak_rss_mb < HOSTILE_RSS_LIMIT_MB, err
    lines = err.splitlines()
    assert len(lines) == 3, lines
    assert "truncated.dcm" in lines[0]
    assert "us.dcm" in lines[1] and "de-identification:" in lines[1]
    assert "short.dcm" in lines[2] and "J2K:" in lines[2]
    assert not out.exists()


@pytest.mark.parametrize("args, code", [(["--deidentify", "--j2k", "lossless"], 10), (["--j2k", "lossless"], 11)])
def test_exit_code_is_the_class_of_the_earliest_failing_stage(src, tmp_path, args, code):
    for make in (_short_pixels, _burned_in_us, _good):
        make(src)
    extra = ["--deid-key-file", _key(tmp_path)] if "--deidentify" in args else []
    proc = run_cli("pack", src, "-o", tmp_path / "out", *args, *extra)
    err = _clean(proc.stderr)
    assert proc.returncode == code, err
    # --j2k alone: the US instance is fine (no de-identification), only short.dcm fails.
    assert len(err.splitlines()) == (2 if code == 10 else 1), err


def _meta_says_explicit(folder: Path) -> Path:
    """File Meta says Explicit VR Little Endian, the data set is implicit VR
    (as some writers do): our scan notes it; pydicom warns on every read."""
    ds = _instance(7)
    data = encode_meta(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1")
    path = folder / "meta_explicit.dcm"
    path.write_bytes(data + synthetic.encode_file(ds, preamble=False))
    return path


@pytest.mark.parametrize("args", [["--j2k", "lossless"], ["--deidentify", "--burned-in", "keep"]])
def test_file_meta_naming_another_encoding_is_transformed(src, tmp_path, args):
    """The cause of "TypeError: encoding without a string argument" on a
    file plain pack accepted: pydicom read the data set as implicit VR but
    recorded the File Meta's explicit VR, then wrote VR-less elements."""
    _meta_says_explicit(src)
    extra = ["--deid-key-file", _key(tmp_path)] if "--deidentify" in args else []
    out = tmp_path / "out"
    proc = run_cli("pack", src, "-o", out, *args, *extra, "--json", "-q")
    _clean(proc.stderr)
    assert proc.returncode == 0 and json.loads(proc.stdout)["instances"] == 1
    [packed] = [p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    assert pydicom.dcmread(packed).ImageType == ["ORIGINAL", "PRIMARY", "AXIAL"]


def test_worker_processes_print_no_library_warnings(src, tmp_path):
    """A library caller with a thread running gets forkserver workers, which
    inherit no warning filter: the workers silence pydicom themselves."""
    for make in (_meta_says_explicit, _short_pixels, _good):
        make(src)
    script = f"""
import threading, time
from dicompack import api
from dicompack.codecs.j2k import J2KOptions
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()     # forces forkserver workers
report = api.pack([{str(src)!r}], {str(tmp_path / 'out')!r},
                  api.PackOptions(j2k=J2KOptions("lossless"), jobs=2, skip_invalid=True))
print(report.instances, len(report.invalid), report.stages["j2k"]["encoded_instances"])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.split() == [b"2", b"1", b"2"]
    assert b"Warning" not in proc.stderr, proc.stderr.decode()


# ------------------------------------------------------------ de-identification vs dciodvfy

def _key(tmp_path: Path) -> Path:
    key = tmp_path / "deid.key"
    key.write_bytes(b"stage tests pseudonym key 0123456789")
    return key


def _dciodvfy(path: Path) -> set[str]:
    """Error lines, values masked (UIDs and dates change by design)."""
    proc = subprocess.run([require_tool("dciodvfy"), "-new", str(path)], capture_output=True, encoding="latin-1")
    return {re.sub(r"= <[^>]*>", "= <>", line) for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith("Error")}


def _deidentified(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "deid"
    run_cli("pack", src, "-o", out, "--deidentify", "--burned-in", "keep", "--deid-key-file", _key(tmp_path),
            "-q", check=True)
    [packed] = [p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    return packed


def test_deidentify_adds_no_dciodvfy_error_to_a_real_ct(src, tmp_path):
    """pydicom's CT_small.dcm (a real GE CT), with what Philips CTs carry:
    a Referenced Performed Procedure Step Sequence (X/Z/D) and a Referenced
    Study Sequence (X/Z), both Type 3 in General Series/Study, which an empty
    sequence breaks; and an overlay whose Overlay Data the table removes."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    ref.ReferencedSOPInstanceUID = f"{ROOT}.77"
    ds.ReferencedPerformedProcedureStepSequence = Sequence([ref])
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = f"{ROOT}.78"
    ds.ReferencedStudySequence = Sequence([study])
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\xff\x00" * 4)
    source = src / "ct.dcm"
    ds.save_as(source, enforce_file_format=True)
    packed = _deidentified(src, tmp_path)
    assert _dciodvfy(packed) - _dciodvfy(source) == set()
    out = pydicom.dcmread(packed)
    # The choices that keep it conformant, and what they keep out:
    [item] = out.ReferencedPerformedProcedureStepSequence
    assert item.ReferencedSOPInstanceUID != f"{ROOT}.77" and item.ReferencedSOPInstanceUID.startswith("2.25.")
    assert "ReferencedStudySequence" not in out
    assert not any(elem.tag.group == 0x6000 for elem in out)


def test_deidentify_keeps_sr_content_conformant_and_free_of_the_text(src, tmp_path):
    """Content Sequence (D) stays non-empty (Type 1C), its items de-identified;
    an unlisted Text Value (Type 1C in a TEXT item) gets a dummy, not removal."""
    source = src / "sr.dcm"
    ds = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    ds.save_as(source, enforce_file_format=True)
    packed = _deidentified(src, tmp_path)
    assert _dciodvfy(packed) - _dciodvfy(source) == set()
    before = {str(e.value) for e in _walk(ds) if e.keyword == "TextValue"}
    after = {str(e.value) for e in _walk(pydicom.dcmread(packed)) if e.keyword == "TextValue"}
    assert before and not before & after


def _walk(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def test_deid_engine_removes_item_tags_standing_among_elements():
    """Encoding debris (an item tag at data set level, as fo-dicom's GH364
    has) cannot be written back; de-identification removes it (X)."""
    ds = _instance(8)
    ds[0xFFFEE000] = RawDataElement(Tag(0xFFFEE000), None, 8, b"\x18\x00\x12\x60\x01\x00\x00\x00", 0, False, True)
    Deidentifier(DeidOptions(key=b"k" * 20, burned_in="keep")).apply(ds, where="x")
    assert 0xFFFEE000 not in ds


# ------------------------------------------------------------ a foreign ZIP (no DICOMDIR)

@pytest.mark.parametrize("command", [["ls"], ["check"], ["verify"], ["unpack", "-o", "OUT"]])
def test_zip_without_dicomdir_is_named_with_a_hint_and_no_temporary_path(tmp_path, command):
    package = tmp_path / "foreign.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("IM1.dcm", synthetic.encode_file(_instance(9)))
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    proc = run_cli(command[0], package, *args[1:])
    text = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode != 0
    assert "dicompack-tmp" not in text and "fileset:" not in text, text
    assert "foreign.zip" in text and "--rebuild" in text, text
