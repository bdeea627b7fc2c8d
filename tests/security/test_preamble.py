"""The 128-byte preamble of packed files (CVE-2019-11687): a PE/DICOM
polyglot, an executable whose "MZ" header sits in the preamble, is still a
valid DICOM file.  Packing zeroes every preamble that is not a TIFF header
(PS3.10 7.1 dual-personality files), in folder, ZIP and secure outputs,
without touching, moving or linking the source; --keep-preamble keeps it."""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.support import synthetic as S
from tests.support.pki import standard_pki
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import require_tool, run_cli

ZERO = b"\x00" * 128


def pe_preamble() -> bytes:
    """The start of a Windows executable: DOS header with e_lfanew, DOS stub text."""
    head = bytearray(128)
    head[0:2] = b"MZ"
    head[2:4] = struct.pack("<H", 0x90)
    head[0x3C:0x40] = struct.pack("<I", 0x80)       # PE header offset (past the preamble)
    stub = b"This program cannot be run in DOS mode.\r\r\n$"
    head[0x40:0x40 + len(stub)] = stub
    return bytes(head)


def tiff_preamble(order: bytes) -> bytes:
    head = bytearray(128)
    head[0:4] = b"II*\x00" if order == b"II" else b"MM\x00*"
    head[4:8] = struct.pack("<I" if order == b"II" else ">I", 8)
    return bytes(head)


PE = pe_preamble()
SERIES = S.uid_for("preamble", "series")


def _instance(n: int, **kwargs):
    return S.make_instance(study_uid=S.uid_for("preamble", "study"), series_uid=SERIES,
                           sop_uid=S.uid_for("preamble", n), instance_number=n, modality="CT",
                           rows=16, columns=16, **kwargs)


def _write(path: Path, preamble: bytes, n: int, *, deflated: bool = False, meta_fix: bool = False) -> str:
    ds = _instance(n)
    data = bytearray(S.encode_file(ds, deflated=deflated))
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00"
    if meta_fix:   # a wrong File Meta group length: the file is rewritten, not copied
        data[140:144] = struct.pack("<I", struct.unpack_from("<I", data, 140)[0] + 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(preamble + bytes(data[128:]))
    return str(ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[Path, dict[str, bytes], dict[str, str]]:
    """Folder of instances with every kind of preamble; returns (folder,
    SOP Instance UID -> source preamble, SOP Instance UID -> sha256)."""
    root = tmp_path_factory.mktemp("preamble") / "src"
    kinds = {"pe.dcm": (PE, {}), "pe-meta-fixed.dcm": (PE, {"meta_fix": True}),
             "tiff-le.dcm": (tiff_preamble(b"II"), {}), "tiff-be.dcm": (tiff_preamble(b"MM"), {}),
             "zero.dcm": (ZERO, {}), "text.dcm": (b"NOT AN EXE".ljust(128, b" "), {})}
    preambles = {}
    for n, (name, (head, kw)) in enumerate(kinds.items(), 1):
        preambles[_write(root / name, head, n, **kw)] = head
    return root, preambles, _digests(root)


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _expected(head: bytes, keep: bool = False) -> bytes:
    return head if head[:4] in (b"II*\x00", b"MM\x00*") or keep else ZERO


def _folder_heads(root: Path) -> dict[str, bytes]:
    heads = {}
    for p in root.rglob("IM*"):
        data = p.read_bytes()
        heads[str(dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)] = data[:128]
    return heads


def _zip_heads(data: bytes) -> dict[str, bytes]:
    heads = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name in ("DICOMDIR", "DICOMPACK.JSON"):
                continue
            raw = z.read(name)
            heads[str(dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID)] = raw[:128]
    return heads


def _pack(src: Path, dest, *args) -> dict:
    proc = run_cli_measured("pack", src, "-o", dest, "--json", "-q", *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
    return json.loads(proc.stdout if dest != "-" else proc.stderr)


def test_folder_output_zeroes_foreign_preambles(sources, tmp_path):
    src, preambles, digests = sources
    out = tmp_path / "fileset"
    report = _pack(src, out)
    heads = _folder_heads(out)
    assert heads == {uid: _expected(head) for uid, head in preambles.items()}
    # pe.dcm, pe-meta-fixed.dcm, text.dcm; both TIFF headers kept as they are.
    assert report["stages"]["preamble"] == {"sanitised": 3, "tiff_kept": 2}
    fixed = {Path(f["path"]).name for f in report["fixes"] if "CVE-2019-11687" in f["reason"]}
    assert fixed == {"pe.dcm", "pe-meta-fixed.dcm", "text.dcm"}
    assert _digests(src) == digests, "a source file was modified"
    src_inodes = {os.stat(p).st_ino for p in src.iterdir()}
    assert not src_inodes & {os.stat(p).st_ino for p in out.rglob("IM*")}, "output shares an inode with a source"
    assert run_cli("check", out).returncode == 0


def test_zip_output_zeroes_foreign_preambles(sources, tmp_path):
    src, preambles, digests = sources
    out = tmp_path / "study.zip"
    _pack(src, out)
    assert _zip_heads(out.read_bytes()) == {uid: _expected(head) for uid, head in preambles.items()}
    assert run_cli("verify", out).returncode == 0
    assert _digests(src) == digests


def test_zip_on_stdout_zeroes_foreign_preambles(sources):
    src, preambles, _ = sources
    proc = run_cli("pack", src, "-o", "-", "-q")
    assert proc.returncode == 0, proc.stderr
    assert _zip_heads(proc.stdout) == {uid: _expected(head) for uid, head in preambles.items()}


def test_secure_output_zeroes_foreign_preambles(sources, tmp_path):
    """Decrypted and verified by openssl, not by us."""
    src, preambles, digests = sources
    pki = standard_pki(tmp_path / "pki")
    out = tmp_path / "study.p7m"
    report = _pack(src, out, "--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
                   "--sign-cert", pki / "signer.pem")
    assert report["stages"]["preamble"]["sanitised"] == 3
    openssl = require_tool("openssl")
    signed = subprocess.run([openssl, "cms", "-decrypt", "-inform", "DER", "-in", str(out), "-recip",
                             str(pki / "recip.pem"), "-inkey", str(pki / "recip.key"), "-binary"],
                            capture_output=True, check=True).stdout
    zipped = subprocess.run([openssl, "cms", "-verify", "-inform", "DER", "-binary", "-CAfile",
                             str(pki / "ca.pem")], input=signed, capture_output=True, check=True).stdout
    assert _zip_heads(zipped) == {uid: _expected(head) for uid, head in preambles.items()}
    assert _digests(src) == digests


def test_keep_preamble_keeps_it(sources, tmp_path):
    src, preambles, digests = sources
    out = tmp_path / "kept"
    report = _pack(src, out, "--keep-preamble")
    heads = _folder_heads(out)
    meta_fixed = S.uid_for("preamble", 2)     # rewritten anyway: new File Meta, zero preamble
    assert heads[meta_fixed] == ZERO
    assert {u: h for u, h in heads.items() if u != meta_fixed} == \
        {u: h for u, h in preambles.items() if u != meta_fixed}
    assert report["stages"]["preamble"] == {"tiff_kept": 2, "foreign_kept": 2}
    assert not any("CVE-2019-11687" in f["reason"] for f in report["fixes"])
    assert _digests(src) == digests


def test_deidentified_deflated_file_gets_zero_preamble(tmp_path):
    """Deflated instances are de-identified by pydicom, which writes back the
    preamble it read: the staged file is ours, and is still sanitised."""
    src = tmp_path / "src"
    uid = _write(src / "deflated.dcm", PE, 1, deflated=True)
    digest = _digests(src)
    (tmp_path / "deid.key").write_bytes(b"k" * 32)
    out = tmp_path / "out"
    report = _pack(src, out, "--deidentify", "--deid-key-file", tmp_path / "deid.key")
    assert report["stages"]["preamble"]["sanitised"] == 1
    [packed] = list(out.rglob("IM*"))
    assert packed.read_bytes()[:128] == ZERO
    assert str(dcmread(packed, stop_before_pixels=True).SOPInstanceUID) != uid     # de-identified
    assert _digests(src) == digest
