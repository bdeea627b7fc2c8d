"""`dicompack pack` end to end on messy input, checked by independent tools."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet

from dicompack.fileset.layout import valid_file_id
from tests.support import synthetic
from tests.support.tools import dciodvfy_errors, require_tool, run_cli, tree_digest


def test_dicomdir_passes_dciodvfy_and_dcmdump(packed_example):
    assert dciodvfy_errors(packed_example / "DICOMDIR") == []
    dcmdump = require_tool("dcmdump")
    proc = subprocess.run([dcmdump, "-q", str(packed_example / "DICOMDIR")], capture_output=True,
                          encoding="latin-1")
    assert proc.returncode == 0, proc.stderr
    assert "DirectoryRecordSequence" in proc.stdout


def test_pydicom_fileset_finds_every_instance(packed_example, example_corpus):
    _, info = example_corpus
    fileset = FileSet(packed_example / "DICOMDIR")
    assert fileset.ID == "EXAMPLE"
    uids = {inst.SOPInstanceUID for inst in fileset}
    assert uids == set(info["files"].values())
    for inst in fileset:
        rel = Path(inst.path).relative_to(packed_example)
        assert valid_file_id(rel.parts) is None
        assert len(rel.parts) == 4 and rel.parts[0].startswith("PA")
        assert inst.load().SOPInstanceUID == inst.SOPInstanceUID


def test_non_ascii_names_survive_into_records(packed_example):
    fileset = FileSet(packed_example / "DICOMDIR")
    names = {str(inst.PatientName) for inst in fileset}
    assert "Müller^Jürgen" in names and "山田^太郎" in names


def test_files_are_copied_unchanged_and_source_untouched(example_corpus, tmp_path):
    src, info = example_corpus
    before = tree_digest(src)
    out = tmp_path / "out"
    proc = run_cli("pack", src, "-o", out, "--json", check=True)
    report = json.loads(proc.stdout)
    assert tree_digest(src) == before
    by_uid = {}
    for path in out.rglob("IM*"):
        by_uid[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID] = path
    fixed = {f["path"] for f in report["fixes"]}
    for rel, uid in info["files"].items():
        original = (src / rel).read_bytes()
        copied = by_uid[uid].read_bytes()
        if str(src / rel) in fixed:
            assert copied[128:132] == b"DICM" and copied.endswith(original)
        else:
            assert copied == original, rel


def test_report_lists_junk_fixes_and_invented_keys(example_corpus, tmp_path):
    src, info = example_corpus
    proc = run_cli("pack", src, "-o", tmp_path / "out", "--json", check=True)
    report = json.loads(proc.stdout)
    skipped = {Path(p["path"]).name for p in report["skipped"]}
    assert {"README.txt", "Thumbs.db", "preview.jpg", "DICOMDIR"} <= skipped
    assert any("without preamble" in f["reason"] for f in report["fixes"])
    assert {"record_type": "STUDY", "keyword": "StudyID", "value": "1"} in report["invented"]
    assert report["instances"] == len(info["instances"]) and report["patients"] == 3


def test_same_input_gives_byte_identical_fileset(example_corpus, tmp_path):
    src, _ = example_corpus
    run_cli("pack", src, "-o", tmp_path / "a", "--fileset-id", "X", "-q", check=True)
    run_cli("pack", src, "-o", tmp_path / "b", "--fileset-id", "X", "-q", check=True)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


@pytest.fixture
def bad_inputs(tmp_path):
    good = tmp_path / "in"
    synthetic.make_example_corpus(good)
    bad = synthetic.make_bad_inputs(tmp_path / "bad")
    return good, tmp_path / "bad", bad


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if "dicompack-tmp" in p.name]


@pytest.mark.parametrize("case", ["truncated", "truncated_header", "conflicting_duplicate"])
def test_bad_input_fails_with_one_line_per_file_and_writes_nothing(bad_inputs, tmp_path, case):
    good, bad_dir, bad = bad_inputs
    src = tmp_path / "src"
    shutil.copytree(good, src / "good")
    target = bad[case]
    shutil.copy(target, src / target.name)
    if case == "conflicting_duplicate":
        shutil.copy(bad_dir / "conflicting_a.dcm", src / "conflicting_a.dcm")
    proc = run_cli("pack", src, "-o", tmp_path / "out")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and target.name in lines[0]
    _no_leftovers(tmp_path, "out")
    ok = run_cli("pack", src, "-o", tmp_path / "out", "--skip-invalid", "--json", check=True)
    left_out = [p["path"] for p in json.loads(ok.stdout)["invalid"]]
    assert any(target.name in p for p in left_out)


def test_identical_duplicates_collapse(bad_inputs, tmp_path):
    _, bad_dir, bad = bad_inputs
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(bad["identical_duplicate"], src / "b.dcm")
    shutil.copy(bad_dir / "identical_a.dcm", src / "a.dcm")
    report = json.loads(run_cli("pack", src, "-o", tmp_path / "out", "--json", check=True).stdout)
    assert report["instances"] == 1
    assert [Path(p["path"]).name for p in report["duplicates_collapsed"]] == ["b.dcm"]


def test_refuses_non_empty_destination_without_force(example_corpus, tmp_path):
    src, _ = example_corpus
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_cli("pack", src, "-o", out)
    assert proc.returncode == 2 and b"--force" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    run_cli("pack", src, "-o", out, "--force", "-q", check=True)
    assert (out / "DICOMDIR").is_file() and not (out / "keep.txt").exists()


def test_no_dicom_at_all_is_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello")
    proc = run_cli("pack", tmp_path / "src", "-o", tmp_path / "out")
    assert proc.returncode == 3 and b"no DICOM instances" in proc.stderr
    _no_leftovers(tmp_path, "out")


def test_multiframe_sr_kos_pr_get_their_record_types(packed_example):
    from dicompack.fileset.dicomdir import read_dicomdir
    types = {r.type for r in read_dicomdir(packed_example / "DICOMDIR").records}
    assert {"PATIENT", "STUDY", "SERIES", "IMAGE", "SR DOCUMENT", "KEY OBJECT DOC", "PRESENTATION"} <= types


def test_ls_json_tree(packed_example):
    listing = json.loads(run_cli("ls", packed_example, "--json", check=True).stdout)
    assert len(listing["patients"]) == 3
    ct = listing["patients"][0]["studies"][0]["series"][0]
    assert ct["modality"] == "CT" and ct["instances"] == 10
    assert len(ct["transfer_syntaxes"]) == 4   # explicit, implicit, big endian, deflated kept as they were


def test_gdcm_reads_the_dicomdir(packed_example):
    gdcmdump = require_tool("gdcmdump")
    proc = subprocess.run([gdcmdump, str(packed_example / "DICOMDIR")], capture_output=True, encoding="latin-1")
    assert proc.returncode == 0, proc.stderr
    assert "(0004,1220)" in proc.stdout and "(0004,1500)" in proc.stdout
    assert "error" not in proc.stderr.lower()


def test_fileset_descriptor(example_corpus, tmp_path):
    src, _ = example_corpus
    readme = tmp_path / "readme.txt"
    readme.write_text("Imaging for the referral of 2026-11-23.\n")
    out = tmp_path / "fs"
    run_cli("pack", src, "-o", out, "--fileset-descriptor", readme, "-q", check=True)
    assert (out / "README").read_bytes() == readme.read_bytes()
    ds = pydicom.dcmread(out / "DICOMDIR")
    assert ds.FileSetDescriptorFileID == "README"
    assert dciodvfy_errors(out / "DICOMDIR") == []
    assert json.loads(run_cli("check", out, "--json").stdout)["ok"]
