"""`dicompack check` / `dicomdir`: reads other tools' DICOMDIRs, flags each
planted corruption, rebuilds and updates indexes."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from dicompack.fileset.dicomdir import read_dicomdir
from tests.support import synthetic
from tests.support.tools import dciodvfy_errors, require_tool, run_cli


@pytest.fixture(scope="module")
def dcmtk_fileset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dcmtk") / "fs"
    synthetic.make_conformant_tree(root, 60)
    tool = require_tool("dcmmkdir")
    subprocess.run([tool, "--recurse", "--invent", "+id", str(root), "--output-file",
                    str(root / "DICOMDIR")], check=True, capture_output=True)
    return root


def _check(path) -> tuple[int, list[dict]]:
    proc = run_cli("check", path, "--json")
    return proc.returncode, json.loads(proc.stdout)["findings"]


def _errors(findings) -> list[str]:
    return [f"{f['where']}: {f['what']}" for f in findings if f["severity"] == "error"]


def test_accepts_dcmmkdir_dicomdir(dcmtk_fileset):
    rc, findings = _check(dcmtk_fileset)
    assert rc == 0 and _errors(findings) == []
    listing = json.loads(run_cli("ls", dcmtk_fileset, "--json", check=True).stdout)
    assert sum(st["instances"] for p in listing["patients"] for st in p["studies"]) == 60


def test_accepts_our_own(packed_example):
    rc, findings = _check(packed_example)
    assert rc == 0 and _errors(findings) == []


@pytest.fixture
def copy_of(packed_example, tmp_path) -> Path:
    dest = tmp_path / "fs"
    shutil.copytree(packed_example, dest)
    return dest


def _patch_ul(path: Path, old: int, new: int) -> None:
    data = bytearray(path.read_bytes())
    needle = struct.pack("<HH", 0x0004, 0x1400) + b"UL" + struct.pack("<HI", 4, old)
    at = data.index(needle)
    data[at + 8:at + 12] = struct.pack("<I", new)
    path.write_bytes(bytes(data))


def test_flags_bad_offset(copy_of):
    dd = read_dicomdir(copy_of / "DICOMDIR")
    series = next(r for r in dd.records if r.type == "SERIES" and r.children and len(r.children) > 1)
    _patch_ul(copy_of / "DICOMDIR", series.children[1].offset, series.children[1].offset + 2)
    rc, findings = _check(copy_of)
    assert rc == 4
    assert any("does not land on a directory record" in e for e in _errors(findings))


def test_flags_deleted_file(copy_of):
    victim = next(copy_of.rglob("IM000002"))
    victim.unlink()
    rc, findings = _check(copy_of)
    assert rc == 4
    assert any("IM000002" in e and "does not exist" in e for e in _errors(findings))


def test_flags_orphan_file(copy_of):
    first = next(copy_of.rglob("IM000001"))
    shutil.copy(first, first.parent / "IM000099")
    rc, findings = _check(copy_of)
    assert any(f["severity"] == "warning" and "IM000099" in f["where"] and "orphan" in f["what"]
               for f in findings)


def test_flags_duplicate_uid_and_mismatch(copy_of):
    one, two = sorted((copy_of / "PA000001" / "ST000001" / "SE000001").glob("IM*"))[:2]
    shutil.copy(one, two)
    rc, findings = _check(copy_of)
    assert rc == 4
    assert any(two.name in e and "SOP Instance UID" in e for e in _errors(findings))


def test_flags_lower_case_file_id(copy_of):
    victim = next(copy_of.rglob("IM000003"))
    victim.rename(victim.parent / "im000003")
    data = (copy_of / "DICOMDIR").read_bytes()
    path_bytes = "\\".join(victim.relative_to(copy_of).parts).encode()
    lowered = path_bytes.replace(b"IM000003", b"im000003")
    (copy_of / "DICOMDIR").write_bytes(data.replace(path_bytes, lowered))
    rc, findings = _check(copy_of)
    assert rc == 4
    assert any("invalid File ID" in e and "im000003" in e for e in _errors(findings))


def test_flags_dicomdir_in_subfolder(copy_of):
    (copy_of / "DICOMDIR").rename(copy_of / "PA000001" / "DICOMDIR")
    rc, findings = _check(copy_of)
    assert rc == 4 and "PA000001/DICOMDIR" in _errors(findings)[0]


def test_rebuild_ignores_broken_index(copy_of):
    (copy_of / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM garbage")
    run_cli("dicomdir", copy_of, "--fileset-id", "REBUILT", check=True)
    rc, findings = _check(copy_of)
    assert rc == 0 and _errors(findings) == []
    assert dciodvfy_errors(copy_of / "DICOMDIR") == []


def test_update_keeps_existing_records_and_adds_new(copy_of, tmp_path):
    before = read_dicomdir(copy_of / "DICOMDIR")
    extra = tmp_path / "extra.dcm"
    ds = synthetic.make_instance(study_uid="1.2.3.4", series_uid="1.2.3.4.5", sop_uid="1.2.3.4.5.6",
                                 patient_id="PAT9", patient_name="New^Patient")
    synthetic.write_file(ds, extra)
    target = copy_of / "PA000009" / "ST000001" / "SE000001" / "IM000001"
    target.parent.mkdir(parents=True)
    shutil.copy(extra, target)
    out = json.loads(run_cli("dicomdir", copy_of, "--update", "--json", check=True).stdout)
    assert out["added"] == 1
    after = read_dicomdir(copy_of / "DICOMDIR")
    assert after.fileset_id == before.fileset_id
    old_records = [(r.type, r.elements, r.file_id) for r in before.records]
    new_records = [(r.type, r.elements, r.file_id) for r in after.records]
    assert all(rec in new_records for rec in old_records)
    assert ("PA000009", "ST000001", "SE000001", "IM000001") in [r.file_id for r in after.records]
    rc, findings = _check(copy_of)
    assert rc == 0, _errors(findings)


def test_dicomdir_refuses_non_conformant_names(tmp_path):
    root = tmp_path / "fs"
    synthetic.make_messy_tree(root, 5)
    proc = run_cli("dicomdir", root)
    assert proc.returncode == 3 and b"File ID" in proc.stderr
    assert not (root / "DICOMDIR").exists()
