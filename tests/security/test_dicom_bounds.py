"""Hostile DICOM structure through the real CLI: deflate bombs, DICOMDIR record
floods and deep record trees, deeply nested sequences.  Every input is built
here from raw bytes; every run is measured (exit code, one-line message naming
the file, peak RSS under HOSTILE_RSS_LIMIT_MB, bounded time)."""
from __future__ import annotations

import json
import struct
import time
import zipfile
import zlib
from functools import cache
from pathlib import Path

import pytest

from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"      # Secondary Capture Image Storage
STUDY_UID, SERIES_UID = "1.2.826.0.1.3680043.2.1125.1", "1.2.826.0.1.3680043.2.1125.2"
REFERENCED_IMAGE_SQ = 0x00081140
WALL_LIMIT_S = 30


# ------------------------------------------------------------ raw encoders

def _el(tag: int, vr: bytes, value: bytes) -> bytes:
    """One element in Explicit VR Little Endian (value padded to even length)."""
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _implicit_el(tag: int, vr: bytes, value: bytes) -> bytes:
    """One element in Implicit VR Little Endian."""
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _header_elements(sop_instance: str, el=_el) -> bytes:
    """Everything of a 2x2 8-bit Secondary Capture image up to Pixel Data."""
    return b"".join([
        el(0x00080016, b"UI", SC_IMAGE.encode()),
        el(0x00080018, b"UI", sop_instance.encode()),
        el(0x00080020, b"DA", b"20240101"),
        el(0x00080030, b"TM", b"120000"),
        el(0x00080060, b"CS", b"OT"),
        el(0x00100010, b"PN", b"TEST^BOUNDS"),
        el(0x00100020, b"LO", b"BOUNDS1"),
        el(0x0020000D, b"UI", STUDY_UID.encode()),
        el(0x0020000E, b"UI", SERIES_UID.encode()),
        el(0x00200010, b"SH", b"1"),
        el(0x00200011, b"IS", b"1"),
        el(0x00200013, b"IS", sop_instance.rsplit(".", 1)[-1].encode()),
        el(0x00280002, b"US", struct.pack("<H", 1)),
        el(0x00280004, b"CS", b"MONOCHROME2"),
        el(0x00280010, b"US", struct.pack("<H", 2)),
        el(0x00280011, b"US", struct.pack("<H", 2)),
        el(0x00280100, b"US", struct.pack("<H", 8)),
        el(0x00280101, b"US", struct.pack("<H", 8)),
        el(0x00280102, b"US", struct.pack("<H", 7)),
        el(0x00280103, b"US", struct.pack("<H", 0)),
    ])


def _part10(transfer_syntax: str, sop_instance: str, dataset: bytes) -> bytes:
    body = b"".join([_el(0x00020001, b"OB", b"\x00\x01"),
                     _el(0x00020002, b"UI", SC_IMAGE.encode()),
                     _el(0x00020003, b"UI", sop_instance.encode()),
                     _el(0x00020010, b"UI", transfer_syntax.encode()),
                     _el(0x00020012, b"UI", b"1.2.826.0.1.3680043.2.1125.99")])
    return b"\x00" * 128 + b"DICM" + _el(0x00020000, b"UL", struct.pack("<I", len(body))) + body + dataset


def valid_instance(n: int) -> bytes:
    uid = f"1.2.826.0.1.3680043.2.1125.3.{n}"
    return _part10(EXPLICIT_LE, uid, _header_elements(uid) + _el(0x7FE00010, b"OB", b"\x01\x02\x03\x04"))


@cache
def deflate_bomb(inflated_mb: int = 2048) -> bytes:
    """A Deflated Explicit VR LE instance whose Pixel Data inflates to
    ``inflated_mb`` MiB of zeros.  Built from one compressed MiB repeated:
    after a full flush a deflate block sequence stands on its own, so copies
    of it concatenate into a valid stream (about 1 KB per inflated MiB)."""
    uid = "1.2.826.0.1.3680043.2.1125.4.1"
    pixels = inflated_mb << 20
    head = _header_elements(uid) + struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", pixels)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    zeros = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    one_mib = zeros.compress(bytes(1 << 20)) + zeros.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)
    stream = start + one_mib * inflated_mb + end
    return _part10(DEFLATED_LE, uid, stream + (b"\x00" if len(stream) % 2 else b""))


def small_deflated(n: int) -> bytes:
    """A legitimate (tiny) deflated instance: must still be accepted."""
    uid = f"1.2.826.0.1.3680043.2.1125.5.{n}"
    raw = _header_elements(uid) + _el(0x7FE00010, b"OB", b"\x01\x02\x03\x04")
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = comp.compress(raw) + comp.flush()
    return _part10(DEFLATED_LE, uid, stream + (b"\x00" if len(stream) % 2 else b""))


def _nested_undefined(depth: int, implicit: bool = False) -> bytes:
    """``depth`` sequences inside items inside sequences, all of undefined length."""
    def sq_head(tag):
        if implicit:
            return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, 0xFFFFFFFF)
        return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
    open_ = sq_head(REFERENCED_IMAGE_SQ) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return open_ * depth + close * depth


def _nested_defined(depth: int) -> bytes:
    """``depth`` sequences of defined length: our walker must descend into
    them too, since pydicom recurses on them."""
    value = b""
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(value)) + value
        value = struct.pack("<HH", REFERENCED_IMAGE_SQ >> 16, REFERENCED_IMAGE_SQ & 0xFFFF) + b"SQ\x00\x00" \
            + struct.pack("<I", len(item)) + item
    return value


def deep_sequence_instance(depth: int, *, defined: bool = False, implicit: bool = False,
                           n: int = 1) -> bytes:
    uid = f"1.2.826.0.1.3680043.2.1125.6.{n}"
    encode = _implicit_el if implicit else _el
    elements = _header_elements(uid, encode)
    # Referenced Image Sequence (0008,1140) sits after (0008,0060) and before (0010,0010).
    at = elements.index(struct.pack("<HH", 0x0010, 0x0010))
    nested = _nested_defined(depth) if defined else _nested_undefined(depth, implicit)
    return _part10(IMPLICIT_LE if implicit else EXPLICIT_LE, uid, elements[:at] + nested + elements[at:]
                   + encode(0x7FE00010, b"OB", b"\x01\x02\x03\x04"))


# ------------------------------------------------------------ DICOMDIR bytes

def _record(next_offset: int, lower_offset: int, record_type: bytes, extra: bytes = b"") -> bytes:
    body = (_el(0x00041400, b"UL", struct.pack("<I", next_offset))
            + _el(0x00041410, b"US", struct.pack("<H", 0xFFFF))
            + _el(0x00041420, b"UL", struct.pack("<I", lower_offset))
            + _el(0x00041430, b"CS", record_type) + extra)
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def _dicomdir(items: bytes, first_root: int, *, header_fixed: bool = True) -> bytes:
    meta_body = b"".join([_el(0x00020001, b"OB", b"\x00\x01"),
                          _el(0x00020002, b"UI", b"1.2.840.10008.1.3.10"),
                          _el(0x00020003, b"UI", b"1.2.826.0.1.3680043.2.1125.7"),
                          _el(0x00020010, b"UI", EXPLICIT_LE.encode()),
                          _el(0x00020012, b"UI", b"1.2.826.0.1.3680043.2.1125.99")])
    meta = b"\x00" * 128 + b"DICM" + _el(0x00020000, b"UL", struct.pack("<I", len(meta_body))) + meta_body
    header = (_el(0x00041130, b"CS", b"BOUNDS") + _el(0x00041200, b"UL", struct.pack("<I", first_root))
              + _el(0x00041202, b"UL", struct.pack("<I", first_root)) + _el(0x00041212, b"US", b"\x00\x00")
              + struct.pack("<HH", 0x0004, 0x1220) + b"SQ\x00\x00" + struct.pack("<I", len(items)))
    return meta + header + items


def _dicomdir_items_start() -> int:
    return len(_dicomdir(b"", 0))


def dicomdir_flood_of_empty_items(count: int) -> bytes:
    """``count`` 8-byte items (empty records): the reviewer's flood."""
    return _dicomdir(struct.pack("<HHI", 0xFFFE, 0xE000, 0) * count, 0)


def dicomdir_of_minimal_records(count: int) -> bytes:
    """``count`` smallest well-formed records, unlinked: above the record cap."""
    return _dicomdir(_record(0, 0, b"PRIVATE") * count, 0)


def deep_dicomdir(levels: int) -> bytes:
    """PRIVATE records each the lower level of the one before."""
    start = _dicomdir_items_start()
    size = len(_record(0, 0, b"PRIVATE"))
    items = b"".join(_record(0, start + (i + 1) * size if i + 1 < levels else 0, b"PRIVATE")
                     for i in range(levels))
    return _dicomdir(items, start)


def looping_dicomdir() -> bytes:
    """Two records, each the other's lower level: a cycle back up the tree."""
    start = _dicomdir_items_start()
    size = len(_record(0, 0, b"PRIVATE"))
    items = _record(0, start + size, b"PRIVATE") + _record(0, start, b"PRIVATE")
    return _dicomdir(items, start)


# ------------------------------------------------------------ helpers

def _measured(*args):
    started = time.monotonic()
    result = run_cli_measured(*args, timeout=120)
    return result, time.monotonic() - started


def _assert_bounded(result, wall: float, code: int, names: str) -> str:
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-2000:]
    assert result.returncode == code, (result.returncode, err[-2000:])
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB, result.peak_rss_mb
    assert wall < WALL_LIMIT_S, wall
    first = err.splitlines()[0] if err.strip() else ""
    assert first.startswith("dicompack: ") and names in first, err[-2000:]
    return err


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _fileset_with(root: Path, instance: bytes, sop_instance: str, transfer_syntax: str) -> Path:
    """A File-set of one IMAGE record referencing ``instance`` (the DICOMDIR
    written by our encoder: the hostile part is the instance)."""
    from dicompack.dcmio import encode_element
    from dicompack.fileset.dicomdir import write_dicomdir_file
    from dicompack.fileset.records import Record
    (root / "PA000001" / "ST000001" / "SE000001").mkdir(parents=True)
    (root / "PA000001" / "ST000001" / "SE000001" / "IM000001").write_bytes(instance)
    patient = Record("PATIENT", elements={0x00100010: encode_element(0x00100010, b"PN", b"TEST^BOUNDS"),
                                          0x00100020: encode_element(0x00100020, b"LO", b"BOUNDS1")})
    study = Record("STUDY", elements={
        0x00080020: encode_element(0x00080020, b"DA", b"20240101"),
        0x00080030: encode_element(0x00080030, b"TM", b"120000"),
        0x00080050: encode_element(0x00080050, b"SH", b""),
        0x00081030: encode_element(0x00081030, b"LO", b""),
        0x0020000D: encode_element(0x0020000D, b"UI", STUDY_UID.encode()),
        0x00200010: encode_element(0x00200010, b"SH", b"1")})
    series = Record("SERIES", elements={0x00080060: encode_element(0x00080060, b"CS", b"OT"),
                                        0x0020000E: encode_element(0x0020000E, b"UI", SERIES_UID.encode()),
                                        0x00200011: encode_element(0x00200011, b"IS", b"1")})
    image = Record("IMAGE", file_id=("PA000001", "ST000001", "SE000001", "IM000001"),
                   sop_class=SC_IMAGE, sop_instance=sop_instance, transfer_syntax=transfer_syntax,
                   elements={0x00200013: encode_element(0x00200013, b"IS", b"1")})
    patient.children, study.children, series.children = [study], [series], [image]
    write_dicomdir_file(root / "DICOMDIR", [patient], fileset_id="BOUNDS")
    return root


def _zip_folder(root: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    return dest


def _findings(stdout: bytes) -> list[dict]:
    return json.loads(stdout)["findings"]


# ------------------------------------------------------------ 1. deflate bombs

def test_pack_refuses_deflate_bomb(tmp_path):
    src = _write(tmp_path / "in", {"bomb.dcm": deflate_bomb(), "ok.dcm": valid_instance(1)})
    out = tmp_path / "out"
    result, wall = _measured("pack", src, "-o", out, "-q")
    err = _assert_bounded(result, wall, 3, "bomb.dcm")
    assert "deflate" in err.lower()
    assert not out.exists()


def test_pack_skip_invalid_leaves_deflate_bomb_out(tmp_path):
    src = _write(tmp_path / "in", {"bomb.dcm": deflate_bomb(), "ok.dcm": valid_instance(1),
                                   "small.dcm": small_deflated(1)})
    out = tmp_path / "out"
    result, wall = _measured("pack", src, "-o", out, "-q", "--skip-invalid", "--json")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S
    report = json.loads(result.stdout)
    invalid = [p["path"] for p in report["invalid"]]
    assert len(invalid) == 1 and invalid[0].endswith("bomb.dcm")
    # The small legitimate deflated instance is kept alongside the valid one.
    assert len([p for p in out.rglob("IM*")]) == 2


def test_verify_zip_with_deflate_bomb_is_a_finding(tmp_path):
    uid = "1.2.826.0.1.3680043.2.1125.4.1"
    root = _fileset_with(tmp_path / "fs", deflate_bomb(), uid, DEFLATED_LE)
    package = _zip_folder(root, tmp_path / "bomb.zip")
    result, wall = _measured("verify", package, "--json")
    assert "Traceback" not in result.stderr.decode()
    assert result.returncode == 4, result.stderr.decode()[-2000:]
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S, (result.peak_rss_mb, wall)
    errors = [f for f in _findings(result.stdout) if f["severity"] == "error"]
    assert any("IM000001" in f["where"] and "deflate" in f["what"].lower() for f in errors), errors


def test_pack_refuses_small_deflate_bomb_by_ratio(tmp_path):
    """8 MiB from about 8 KB: under the absolute cap, over the ratio."""
    src = _write(tmp_path / "in", {"ratio.dcm": deflate_bomb(8), "ok.dcm": valid_instance(1)})
    out = tmp_path / "out"
    result, wall = _measured("pack", src, "-o", out, "-q")
    err = _assert_bounded(result, wall, 3, "ratio.dcm")
    assert "200x" in err
    assert not out.exists()


def test_largest_accepted_deflated_instance_stays_bounded(tmp_path):
    """Just under the inflated-size cap, incompressible: accepted, and
    de-identification (pydicom reads it whole) stays under the bound."""
    import os

    from dicompack.scan import DEFLATED_MAX_BYTES
    uid = "1.2.826.0.1.3680043.2.1125.8.1"
    pixels = os.urandom(1 << 20) * ((DEFLATED_MAX_BYTES >> 20) - 1)   # repeats lie beyond deflate's window
    raw = _header_elements(uid) + _el(0x7FE00010, b"OB", pixels)
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = comp.compress(raw) + comp.flush()
    src = _write(tmp_path / "in", {"big.dcm": _part10(DEFLATED_LE, uid, stream + b"\x00" * (len(stream) % 2))})
    out = tmp_path / "out"
    result, wall = _measured("pack", src, "-o", out, "-q", "--deidentify", "--burned-in", "keep")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S, (result.peak_rss_mb, wall)


def test_check_small_deflated_fileset_is_ok(tmp_path):
    uid = "1.2.826.0.1.3680043.2.1125.5.1"
    root = _fileset_with(tmp_path / "fs", small_deflated(1), uid, DEFLATED_LE)
    result, _ = _measured("check", root, "--json")
    errors = [f for f in _findings(result.stdout) if f["severity"] == "error"]
    assert result.returncode == 0 and errors == [], (errors, result.stderr.decode())


# ------------------------------------------------------------ 2. DICOMDIR floods and depth

def test_check_refuses_flood_of_empty_records(tmp_path):
    root = _write(tmp_path / "fs", {"DICOMDIR": dicomdir_flood_of_empty_items(3_000_000)})
    result, wall = _measured("check", root, "--json")
    assert result.returncode == 4, result.stderr.decode()[-2000:]
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S, (result.peak_rss_mb, wall)
    findings = _findings(result.stdout)
    assert any(f["where"] == "DICOMDIR" and "too small" in f["what"] for f in findings), findings


def test_ls_refuses_flood_of_empty_records(tmp_path):
    root = _write(tmp_path / "fs", {"DICOMDIR": dicomdir_flood_of_empty_items(3_000_000)})
    result, wall = _measured("ls", root)
    _assert_bounded(result, wall, 4, "DICOMDIR")


def test_check_refuses_more_records_than_the_cap(tmp_path):
    from dicompack.fileset.dicomdir import MAX_DICOMDIR_RECORDS
    root = _write(tmp_path / "fs", {"DICOMDIR": dicomdir_of_minimal_records(MAX_DICOMDIR_RECORDS + 1)})
    result, wall = _measured("ls", root)
    err = _assert_bounded(result, wall, 4, "DICOMDIR")
    assert f"{MAX_DICOMDIR_RECORDS:,}" in err


def test_check_lists_a_bounded_number_of_findings(tmp_path):
    """Every record broken several ways: findings stop at the listing cap,
    the rest are counted in one last error."""
    from dicompack.fileset.check import MAX_LISTED_FINDINGS
    count = MAX_LISTED_FINDINGS // 2 + 100          # PATIENT records lack 2 keys each
    start = _dicomdir_items_start()
    size = len(_record(0, 0, b"PATIENT"))
    items = b"".join(_record(start + (i + 1) * size if i + 1 < count else 0, 0, b"PATIENT")
                     for i in range(count))
    root = _write(tmp_path / "fs", {"DICOMDIR": _dicomdir(items, start)})
    result, wall = _measured("check", root, "--json")
    assert result.returncode == 4 and wall < WALL_LIMIT_S
    findings = _findings(result.stdout)
    assert len(findings) == MAX_LISTED_FINDINGS + 1
    assert findings[-1]["severity"] == "error" and "more findings not listed" in findings[-1]["what"]


def test_check_reports_deep_record_tree(tmp_path):
    root = _write(tmp_path / "fs", {"DICOMDIR": deep_dicomdir(1500)})
    result, wall = _measured("check", root, "--json")
    assert "Traceback" not in result.stderr.decode(), result.stderr.decode()[-2000:]
    assert result.returncode == 4
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S
    findings = _findings(result.stdout)
    deep = [f for f in findings if "nested deeper" in f["what"]]
    assert len(deep) == 1, findings[:5]
    # Records below the cap are reached (not each reported as unreachable).
    assert not any("no offset leads to it" in f["what"] for f in findings)


def test_ls_survives_deep_record_tree(tmp_path):
    root = _write(tmp_path / "fs", {"DICOMDIR": deep_dicomdir(1500)})
    result, wall = _measured("ls", root, "--json")
    assert "Traceback" not in result.stderr.decode(), result.stderr.decode()[-2000:]
    # The levels below the depth cap are not linked: ls refuses a partial
    # listing (exit 4, one line) instead of showing it with exit 0.
    assert result.returncode == 4 and wall < WALL_LIMIT_S
    assert "cannot be walked" in json.loads(result.stdout)["message"]
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB


def test_check_reports_lower_level_loop(tmp_path):
    root = _write(tmp_path / "fs", {"DICOMDIR": looping_dicomdir()})
    result, _ = _measured("check", root, "--json")
    assert result.returncode == 4
    assert any("loops back" in f["what"] for f in _findings(result.stdout))


# ------------------------------------------------------------ 3. deep sequences

@pytest.mark.parametrize("defined,implicit", [(False, False), (True, False), (False, True)],
                         ids=["undefined-length", "defined-length", "implicit-vr"])
def test_pack_refuses_deeply_nested_sequences(tmp_path, defined, implicit):
    src = _write(tmp_path / "in", {"deep.dcm": deep_sequence_instance(3000, defined=defined, implicit=implicit),
                                   "ok.dcm": valid_instance(1)})
    out = tmp_path / "out"
    result, wall = _measured("pack", src, "-o", out, "-q")
    err = _assert_bounded(result, wall, 3, "deep.dcm")
    assert "nested deeper" in err
    assert not out.exists()


def test_pack_deidentify_never_hands_deep_sequences_to_pydicom(tmp_path):
    src = _write(tmp_path / "in", {"deep.dcm": deep_sequence_instance(3000, defined=True),
                                   "ok.dcm": valid_instance(1)})
    out = tmp_path / "out"
    result, wall = _measured("pack", src, "-o", out, "-q", "--deidentify", "--burned-in", "keep",
                             "--skip-invalid", "--json")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S
    invalid = json.loads(result.stdout)["invalid"]
    assert [p["path"].endswith("deep.dcm") for p in invalid] == [True]
    assert "nested deeper" in invalid[0]["reason"]


def test_check_reports_deeply_nested_instance(tmp_path):
    uid = "1.2.826.0.1.3680043.2.1125.6.1"
    root = _fileset_with(tmp_path / "fs", deep_sequence_instance(3000), uid, EXPLICIT_LE)
    result, wall = _measured("check", root, "--json")
    assert "Traceback" not in result.stderr.decode(), result.stderr.decode()[-2000:]
    assert result.returncode == 4
    assert result.peak_rss_mb < HOSTILE_RSS_LIMIT_MB and wall < WALL_LIMIT_S
    errors = [f for f in _findings(result.stdout) if f["severity"] == "error"]
    assert any("IM000001" in f["where"] and "nested deeper" in f["what"] for f in errors), errors


def test_sequences_at_the_depth_cap_are_accepted(tmp_path):
    from dicompack.dcmio import MAX_SEQUENCE_DEPTH
    src = _write(tmp_path / "in", {"a.dcm": deep_sequence_instance(MAX_SEQUENCE_DEPTH, n=1),
                                   "b.dcm": deep_sequence_instance(MAX_SEQUENCE_DEPTH, defined=True, n=2)})
    out = tmp_path / "out"
    result, _ = _measured("pack", src, "-o", out, "-q", "--deidentify", "--burned-in", "keep")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert len(list(out.rglob("IM*"))) == 2
