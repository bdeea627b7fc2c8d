"""ZIP packages end to end: pack -o x.zip, independent readers, verify,
atomic unpack, foreign ZIPs."""
from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support.tools import dciodvfy_errors, require_tool, run_cli, tree_digest


@pytest.fixture(scope="module")
def package(example_corpus, tmp_path_factory) -> Path:
    src, _ = example_corpus
    out = tmp_path_factory.mktemp("zip") / "study.zip"
    run_cli("pack", src, "-o", out, "--fileset-id", "EXAMPLE", "-q", check=True)
    return out


def test_unzip_and_zipfile_accept_it(package, packed_example):
    unzip = require_tool("unzip")
    proc = subprocess.run([unzip, "-t", str(package)], capture_output=True, text=True)
    assert proc.returncode == 0 and "No errors detected" in proc.stdout
    with zipfile.ZipFile(package) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[0] == "DICOMDIR" and names[-1] == "DICOMPACK.JSON"
        assert all("\\" not in n and not n.startswith("/") for n in names)
        # Same File-set as the folder output, byte for byte.
        folder = tree_digest(packed_example)
        import hashlib
        for name in names[:-1]:
            assert hashlib.sha256(zf.read(name)).hexdigest() == folder[name], name


def test_pack_unpack_round_trip_is_byte_identical(package, packed_example, tmp_path):
    out = tmp_path / "restored"
    run_cli("unpack", package, "-o", out, check=True)
    restored = tree_digest(out)
    restored.pop("DICOMPACK.JSON")
    assert restored == tree_digest(packed_example)
    assert dciodvfy_errors(out / "DICOMDIR") == []


def test_verify_ok_and_json(package):
    proc = run_cli("verify", package, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] and report["kind"] == "zip"
    assert report["package_uid"].startswith("2.25.") and report["records"] == 32


def test_methods_store_compressed_deflate_native(package):
    with zipfile.ZipFile(package) as zf:
        methods = {i.compress_type for i in zf.infolist()}
    assert zipfile.ZIP_DEFLATED in methods


def test_streamed_to_a_pipe(example_corpus, tmp_path):
    src, info = example_corpus
    proc = subprocess.run(f"python -m dicompack.cli pack '{src}' -o - -q | cat > '{tmp_path}/piped.zip'",
                          shell=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(tmp_path / "piped.zip") as zf:
        assert zf.testzip() is None
        assert len([n for n in zf.namelist() if "/IM" in n]) == len(info["instances"])
    assert run_cli("verify", tmp_path / "piped.zip").returncode == 0


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_byte_is_reported_naming_the_entry(package, tmp_path):
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(package.read_bytes())
    with zipfile.ZipFile(package) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("IM000003"))
    header = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    _flip(damaged, header + info.compress_size // 2)
    proc = run_cli("verify", damaged)
    assert proc.returncode != 0
    assert info.filename in (proc.stdout + proc.stderr).decode()
    out = tmp_path / "never"
    assert run_cli("unpack", damaged, "-o", out).returncode != 0
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "dicompack-tmp" in p.name]


def _zip_with(entries: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_foreign_zip_without_dicomdir_rebuilds(example_corpus, tmp_path):
    src, info = example_corpus
    files = {f"export/{p.name}.dcm": p.read_bytes() for p in src.rglob("*")
             if p.is_file() and str(p.relative_to(src)) in info["files"]}
    foreign = _zip_with(files, tmp_path / "foreign.zip")
    proc = run_cli("verify", foreign, "--json")
    assert proc.returncode == 4
    assert any("no DICOMDIR" in f["what"] for f in json.loads(proc.stdout)["findings"])
    out = tmp_path / "rebuilt"
    run_cli("unpack", foreign, "-o", out, "--rebuild", check=True)
    assert json.loads(run_cli("check", out, "--json").stdout)["ok"]


def test_dicomdir_in_subfolder_is_named(packed_example, tmp_path):
    entries = {f"CD/{p.relative_to(packed_example).as_posix()}": p.read_bytes()
               for p in packed_example.rglob("*") if p.is_file()}
    foreign = _zip_with(entries, tmp_path / "sub.zip")
    proc = run_cli("verify", foreign, "--json")
    assert proc.returncode == 4
    assert any("CD/DICOMDIR" in f["what"] for f in json.loads(proc.stdout)["findings"])


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "C:\\evil", "a\\..\\b", "IM1|im1"])
def test_hostile_names_rejected_and_nothing_written(packed_example, tmp_path, name):
    entries = {"DICOMDIR": (packed_example / "DICOMDIR").read_bytes()}
    for part in name.split("|"):
        entries[part] = b"x"
    hostile = _zip_with(entries, tmp_path / "hostile.zip")
    out = tmp_path / "target"
    proc = run_cli("unpack", hostile, "-o", out)
    assert proc.returncode == 5, proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.zip"]


def test_zip_bomb_rejected(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("DICOMDIR", "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(300):
                f.write(chunk)
    proc = run_cli("unpack", bomb, "-o", tmp_path / "out")
    assert proc.returncode == 5 and b"ratio" in proc.stderr.lower()
    assert not (tmp_path / "out").exists()


def test_ls_and_check_accept_a_zip(package):
    listing = json.loads(run_cli("ls", package, "--json", check=True).stdout)
    assert len(listing["patients"]) == 3
    assert json.loads(run_cli("check", package, "--json", check=True).stdout)["ok"]
