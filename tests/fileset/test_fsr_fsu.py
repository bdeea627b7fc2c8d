"""Liberal DICOMDIR reading (FSR) and safe updating (FSU) on real-world
indexes: pydicom's dicomdirtests (implicit VR, big endian, stale lengths,
unreachable records; copied to a temporary folder, the sources are never
modified) and hand-made Philips-style trees of lower-level directory files
(DIRFILE).  Everything runs through the real command line."""
from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import pydicom
import pytest

from dicompack.fileset.dicomdir import read_dicomdir, write_dicomdir, write_dicomdir_file
from dicompack.fileset.records import Record
from dicompack.standard import MEDIA_STORAGE_DIRECTORY_STORAGE as DICOMDIR_SOP_CLASS
from tests.realworld.corpus import pydicom_files, tree_digest
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import run_cli

CORPUS = pydicom_files() / "dicomdirtests"
PATIENT_FOLDERS = ("77654033", "98892001", "98892003")
EXPLICIT_LE = "1.2.840.10008.1.2.1"
WALL_LIMIT_S = 30


@pytest.fixture(scope="module", autouse=True)
def sources_untouched():
    before = tree_digest(CORPUS)
    yield
    assert tree_digest(CORPUS) == before, "a test modified pydicom's test files"


def _fileset(tmp_path: Path, variant: str) -> Path:
    """pydicom's three patient folders with ``variant`` as the DICOMDIR."""
    root = tmp_path / variant.replace(".", "_")
    root.mkdir()
    for name in PATIENT_FOLDERS:
        shutil.copytree(CORPUS / name, root / name)
    shutil.copyfile(CORPUS / variant, root / "DICOMDIR")
    return root


def _json(proc) -> dict:
    return json.loads(proc.stdout)


def _listing(root: Path) -> list:
    proc = run_cli("ls", root, "--json")
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return _json(proc)["patients"]


def _check(root: Path) -> tuple[int, dict]:
    proc = run_cli("check", root, "--json")
    return proc.returncode, _json(proc)


def _errors(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["severity"] == "error"]


@pytest.fixture(scope="module")
def reference_listing(tmp_path_factory) -> list:
    """`ls` of the conformant original (dcmmkdir's DICOMDIR)."""
    listing = _listing(_fileset(tmp_path_factory.mktemp("ref"), "DICOMDIR"))
    assert sum(st["instances"] for p in listing for st in p["studies"]) == 31
    return listing


# ------------------------------------------------------------ other native syntaxes

@pytest.mark.parametrize("variant", ["DICOMDIR-implicit", "DICOMDIR-bigEnd"])
def test_ls_lists_implicit_and_big_endian_dicomdirs(tmp_path, variant, reference_listing):
    assert _listing(_fileset(tmp_path, variant)) == reference_listing


@pytest.mark.parametrize("variant,name", [("DICOMDIR-implicit", "Implicit VR Little Endian"),
                                          ("DICOMDIR-bigEnd", "Explicit VR Big Endian")])
def test_check_reports_the_syntax_as_the_only_error(tmp_path, variant, name):
    code, report = _check(_fileset(tmp_path, variant))
    assert code == 4
    assert report["records"] == 52            # read, not refused
    [error] = _errors(report)
    assert error["where"] == "DICOMDIR" and name in error["what"] and "Explicit VR Little Endian" in error["what"]


@pytest.mark.parametrize("variant", ["DICOMDIR-implicit", "DICOMDIR-bigEnd"])
def test_update_rewrites_the_dicomdir_in_explicit_le(tmp_path, variant, reference_listing):
    root = _fileset(tmp_path, variant)
    proc = run_cli("dicomdir", root, "--update")
    assert proc.returncode == 0, proc.stderr.decode()
    assert pydicom.dcmread(root / "DICOMDIR").file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert _check(root)[0] == 0
    assert _listing(root) == reference_listing
    # Every record's keys survive the conversion, byte for byte.
    original = read_dicomdir(CORPUS / "DICOMDIR")
    rewritten = read_dicomdir(root / "DICOMDIR")
    assert len(original.roots) == len(rewritten.roots)
    assert all(a.same_content(b) for a, b in zip(original.roots, rewritten.roots))


# ------------------------------------------------------------ stale lengths, unreachable records

def test_stale_item_length_is_read_reported_and_repaired(tmp_path, reference_listing):
    """DICOMDIR-nooffset: Type 1 offsets removed, the last item's length left stale."""
    root = _fileset(tmp_path, "DICOMDIR-nooffset")
    assert _listing(root) == reference_listing
    code, report = _check(root)
    assert code == 4 and report["records"] == 52
    whats = [e["what"] for e in _errors(report)]
    assert any("declares 248 bytes" in w for w in whats)
    assert any("Type 1 Offset of the Next Directory Record (0004,1400)" in w for w in whats)
    assert run_cli("dicomdir", root, "--update").returncode == 0
    assert _check(root)[0] == 0 and _listing(root) == reference_listing


def test_ls_refuses_an_index_it_cannot_walk(tmp_path):
    """DICOMDIR-nopatient: the root offset leads to one IMAGE record; 51
    records are unreachable.  ls used to print an empty listing, exit 0."""
    proc = run_cli("ls", _fileset(tmp_path, "DICOMDIR-nopatient"))
    err = proc.stderr.decode()
    assert proc.returncode == 4 and proc.stdout == b""
    assert len(err.strip().splitlines()) == 1
    assert "cannot be walked: 51 of 52 in-use records" in err


def test_ls_refuses_studies_below_a_non_patient_record(tmp_path, packed):
    """Every record reachable, but the top level is not PATIENT (as in
    DICOMDIR-nopatient): ls used to print an empty listing, exit 0."""
    root = tmp_path / "fs"
    shutil.copytree(packed[0], root)
    dd = read_dicomdir(root / "DICOMDIR")
    for patient in dd.roots:
        patient.type = "UNKNOWN"
    write_dicomdir_file(root / "DICOMDIR", dd.roots)
    proc = run_cli("ls", root)
    err = proc.stderr.decode()
    assert proc.returncode == 4 and len(err.strip().splitlines()) == 1
    assert "studies below a UNKNOWN record" in err


def test_update_never_drops_unreachable_records(tmp_path):
    root = _fileset(tmp_path, "DICOMDIR-nopatient")
    before = (root / "DICOMDIR").read_bytes()
    proc = run_cli("dicomdir", root, "--update")
    assert proc.returncode == 4
    assert "51 in-use record(s) cannot be reached" in proc.stderr.decode()
    assert (root / "DICOMDIR").read_bytes() == before
    assert not any(p.name.endswith(".dicompack-tmp") for p in root.iterdir())


def test_update_refuses_a_second_record_for_an_indexed_uid(tmp_path):
    root = _fileset(tmp_path, "DICOMDIR")
    before = (root / "DICOMDIR").read_bytes()
    twin = root / "98892001" / "CT2N" / "9999"
    shutil.copyfile(root / "77654033" / "CR1" / "6154", twin)
    proc = run_cli("dicomdir", root, "--update")
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert err.startswith("dicompack: 98892001/CT2N/9999: same SOP Instance UID as 77654033/CR1/6154")
    assert (root / "DICOMDIR").read_bytes() == before


def test_update_fails_and_changes_nothing_when_the_result_would_not_pass_check(tmp_path):
    root = _fileset(tmp_path, "DICOMDIR")
    (root / "98892003" / "MR700" / "4648").unlink()      # a record now points at nothing
    before = (root / "DICOMDIR").read_bytes()
    proc = run_cli("dicomdir", root, "--update")
    err = proc.stderr.decode()
    assert proc.returncode == 4, err
    assert "nothing changed" in err and "referenced file does not exist" in err
    assert (root / "DICOMDIR").read_bytes() == before
    assert not (root / "DICOMDIR.dicompack-tmp").exists()


# ------------------------------------------------------------ lower-level directory files (DIRFILE)

@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, list]:
    """A File-set packed by dicompack from two of pydicom's patients."""
    src = tmp_path_factory.mktemp("src")
    for name in PATIENT_FOLDERS[:2]:
        shutil.copytree(CORPUS / name, src / name)
    out = tmp_path_factory.mktemp("packed") / "fs"
    run_cli("pack", src, "-o", out, "-q", check=True)
    return out, _listing(out)


def _pointer(file_id: tuple[str, ...]) -> Record:
    return Record(type="PRIVATE", file_id=file_id, sop_class=DICOMDIR_SOP_CLASS,
                  sop_instance="1.2.826.0.1.3680043.2.1125.5", transfer_syntax=EXPLICIT_LE)


def _directory_file(path: Path, roots: list[Record]) -> None:
    buf = io.BytesIO()
    write_dicomdir(buf, roots)
    path.write_bytes(buf.getvalue())


def philips_tree(packed_root: Path, dest: Path, *, folder_relative: bool = False) -> Path:
    """The packed File-set with its index split as on Philips CDs: the
    DICOMDIR holds patients and studies; each study's lower level is a
    PRIVATE record referencing STUDY-FOLDER/DIRFILE, a file in the DICOMDIR
    format holding that study's series and images."""
    shutil.copytree(packed_root, dest)
    dd = read_dicomdir(dest / "DICOMDIR")
    for patient in dd.roots:
        for study in patient.children:
            folder = study.children[0].children[0].file_id[:2]
            if folder_relative:
                for series in study.children:
                    for leaf in series.children:
                        leaf.file_id = leaf.file_id[2:]
            _directory_file(dest.joinpath(*folder, "DIRFILE"), study.children)
            study.children = [_pointer(folder + ("DIRFILE",))]
    write_dicomdir_file(dest / "DICOMDIR", dd.roots, fileset_id=dd.fileset_id)
    return dest


@pytest.mark.parametrize("folder_relative", [False, True], ids=["root-relative", "folder-relative"])
def test_ls_follows_directory_files(tmp_path, packed, folder_relative):
    root, listing = packed
    tree = philips_tree(root, tmp_path / "cd", folder_relative=folder_relative)
    assert _listing(tree) == listing


def test_check_reports_each_directory_file_reference(tmp_path, packed):
    tree = philips_tree(packed[0], tmp_path / "cd")
    code, report = _check(tree)
    assert code == 4
    errors = _errors(report)
    assert len(errors) == 3 and all("lower-level directory file" in e["what"] for e in errors)
    assert not any("orphan" in f["what"] for f in report["findings"])


def test_update_and_rebuild_repair_a_directory_file_tree(tmp_path, packed):
    root, listing = packed
    for args in (["--update"], []):
        tree = philips_tree(root, tmp_path / f"cd{len(args)}")
        proc = run_cli("dicomdir", tree, *args)
        assert proc.returncode == 0, (args, proc.stderr.decode())
        assert _check(tree)[0] == 0
        assert _listing(tree) == listing


# ------------------------------------------------------------ hostile directory files

def _hostile_tree(tmp_path: Path, pointers: list[tuple[str, ...]], files: dict[tuple[str, ...], list[Record]]):
    """A File-set whose DICOMDIR holds one PATIENT/STUDY with ``pointers``
    below the study, and directory files at the given File IDs."""
    root = tmp_path / "fs"
    root.mkdir()
    patient = Record(type="PATIENT")
    study = Record(type="STUDY", children=[_pointer(p) for p in pointers])
    patient.children = [study]
    write_dicomdir_file(root / "DICOMDIR", [patient])
    for file_id, roots in files.items():
        root.joinpath(*file_id[:-1]).mkdir(parents=True, exist_ok=True)
        _directory_file(root.joinpath(*file_id), roots)
    return root


def _measured(*args):
    started = time.monotonic()
    result = run_cli_measured(*args, timeout=120)
    return result, time.monotonic() - started


def _assert_refused(root: Path, reason: str) -> None:
    """ls and --update exit 4 with one line naming ``reason``; check lists
    it as an error; nothing changes."""
    before = (root / "DICOMDIR").read_bytes()
    for args in (("ls", root), ("dicomdir", root, "--update")):
        result, wall = _measured(*args)
        err = result.stderr.decode()
        assert "Traceback" not in err, err[-2000:]
        assert result.returncode == 4, (args, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("dicompack: ") and reason in err, err
        assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S
    result, _ = _measured("check", root, "--json")
    assert result.returncode == 4
    assert any(reason in f["what"] for f in _json(result)["findings"] if f["severity"] == "error")
    assert (root / "DICOMDIR").read_bytes() == before


def test_directory_file_outside_the_fileset_is_not_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _directory_file(outside / "DIRFILE", [Record(type="SERIES")])
    root = _hostile_tree(tmp_path, [("..", "outside", "DIRFILE")], {})
    _assert_refused(root, "not a relative path inside the File-set")


def test_directory_file_symlinked_out_of_the_fileset_is_not_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _directory_file(outside / "DIRFILE", [Record(type="SERIES")])
    root = _hostile_tree(tmp_path, [("LINK", "DIRFILE")], {})
    os.symlink(outside, root / "LINK")
    _assert_refused(root, "outside the File-set")


def test_directory_file_loop_is_read_once(tmp_path):
    root = _hostile_tree(tmp_path, [("A", "DIRFILE")], {("A", "DIRFILE"): [_pointer(("A", "DIRFILE"))]})
    _assert_refused(root, "already read (a loop")


def test_directory_files_nest_at_most_four_deep(tmp_path):
    chain = [tuple(["D"] * n + ["DIRFILE"]) for n in range(1, 7)]
    files = {file_id: [_pointer(nxt)] for file_id, nxt in zip(chain, chain[1:])}
    files[chain[-1]] = [Record(type="SERIES")]
    root = _hostile_tree(tmp_path, [chain[0]], files)
    _assert_refused(root, "nested more than 4 deep")


def test_missing_directory_file_is_not_an_empty_listing(tmp_path):
    root = _hostile_tree(tmp_path, [("A", "DIRFILE")], {})
    _assert_refused(root, "no such file")


def test_directory_files_share_the_record_cap(tmp_path):
    """Two directory files of 100,001 records each: together over the
    200,000-record cap, so the second one is not read."""
    import struct
    record = (struct.pack("<HH", 4, 0x1400) + b"UL" + struct.pack("<HI", 4, 0)
              + struct.pack("<HH", 4, 0x1410) + b"US" + struct.pack("<HH", 2, 0xFFFF)
              + struct.pack("<HH", 4, 0x1420) + b"UL" + struct.pack("<HI", 4, 0)
              + struct.pack("<HH", 4, 0x1430) + b"CS" + struct.pack("<H", 8) + b"PRIVATE ")
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(record)) + record
    root = _hostile_tree(tmp_path, [("A", "DIRFILE"), ("B", "DIRFILE")], {})
    template = io.BytesIO()
    write_dicomdir(template, [])
    head = template.getvalue()[:-4]            # up to the (empty) sequence's length
    body = item * 100_001
    for folder in ("A", "B"):
        (root / folder).mkdir()
        (root / folder / "DIRFILE").write_bytes(head + struct.pack("<I", len(body)) + body)
    _assert_refused(root, "more than 200,000 directory records")


def test_directory_file_references_are_capped(tmp_path):
    """5,000 references to missing directory files: 1,000 are tried, one
    finding stands for the rest, so findings and time stay bounded."""
    root = _hostile_tree(tmp_path, [(f"D{i:07d}", "DIRFILE") for i in range(5_000)], {})
    result, wall = _measured("check", root, "--json")
    assert result.returncode == 4 and wall < WALL_LIMIT_S
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
    findings = _json(result)["findings"]
    assert any("more than 1,000 directory file references" in f["what"] for f in findings)
    assert sum("not read: no such file" in f["what"] for f in findings) == 1_000
    assert len(findings) < 2_100
