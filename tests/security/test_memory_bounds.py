"""Memory and CPU bounds of the readers on hostile input (adversary
findings F3, F4, F5, F11, F14, F15, F16): every hostile input gets a typed
error, in under HOSTILE_RSS_LIMIT_MB of peak RSS and under 30 s.

The inputs are built as raw bytes (repeated units, stored or deflated):
none of them writes more than ~70 MB to disk."""
from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import pytest
from asn1crypto import algos, core

from dicompack.container.cms import keywrap
from dicompack.container.cms.ber import der_length
from dicompack.container.manifest import build_manifest, parse_manifest
from dicompack.container.zip import ZipLimits, ZipReader
from dicompack.dcmio import encode_meta
from dicompack.errors import PackageInvalidError
from dicompack.fileset.dicomdir import (
    MAX_DICOMDIR_KEY_BYTES,
    MAX_DICOMDIR_RECORDS,
    MAX_RECORD_ELEMENTS,
    parse_dicomdir_bytes,
    read_dicomdir,
    write_dicomdir,
)
from dicompack.fileset.dicomdir.writer import _header
from dicompack.fileset.records import Record
from tests.security.cms_edit import layout
from tests.support.pki import standard_pki
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured

WALL_LIMIT_S = 30
LIMITS = ZipLimits()


# ---------------------------------------------------------------- raw builders

def raw_zip(entries: list[tuple[bytes, bytes, int]]) -> bytes:
    """A ZIP of (name, stored or deflated payload, method) entries, ZIP64
    end records when there are more than 65,534."""
    out, central = bytearray(), bytearray()
    for name, payload, method in entries:
        data = payload
        if method == 8:
            c = zlib.compressobj(1, zlib.DEFLATED, -15)
            data = c.compress(payload) + c.flush()
        crc = zlib.crc32(payload)
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), len(payload),
                           len(name), 0) + name + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, 0, method, 0, 0x21, crc,
                               len(data), len(payload), len(name), 0, 0, 0, 0, 0, offset) + name
    cd_offset = len(out)
    out += central
    n = len(entries)
    if n > 0xFFFE:
        eocd64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
        n = 0xFFFF
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_offset, 0)
    return bytes(out)


def empty_entries(count: int) -> list[tuple[bytes, bytes, int]]:
    return [(b"D%03d/%03d" % (i // 1000, i % 1000), b"", 0) for i in range(count)]


def _el(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _ul(tag: int, value: int) -> bytes:
    return _el(tag, b"UL", struct.pack("<I", value))


def dicomdir_bytes(records: int, keys: bytes) -> bytes:
    """A DICOMDIR of ``records`` linked PATIENT root records, each carrying
    the encoded elements ``keys`` (built from one template, in C-speed joins)."""
    meta = encode_meta("1.2.840.10008.1.3.10", "2.25.1", "1.2.840.10008.1.2.1")
    body_len = 12 + 10 + 12 + 16 + len(keys)
    item_len = 8 + body_len
    start = len(meta) + len(_header("", 0, 0, None, None, 0))
    last = start + (records - 1) * item_len
    head = _header("", start, last, None, None, records * item_len)
    tail = _el(0x00041410, b"US", b"\xff\xff") + _ul(0x00041420, 0) + _el(0x00041430, b"CS", b"PATIENT ") + keys
    item = struct.pack("<HHI", 0xFFFE, 0xE000, body_len)
    items = [item + _ul(0x00041400, start + (i + 1) * item_len if i + 1 < records else 0) + tail
             for i in range(records)]
    return meta + head + b"".join(items)


def empty_private_elements(count: int) -> bytes:
    return b"".join(_el(0x00111000 + i, b"LO", b"") for i in range(count))


def measured(*args, timeout: float = 120):
    start = time.monotonic()
    proc = run_cli_measured(*args, timeout=timeout)
    return proc, time.monotonic() - start


def assert_bounded(proc, wall: float, code: int, what: bytes = b"") -> None:
    assert proc.returncode == code, proc.stderr[-500:]
    assert b"Traceback" not in proc.stderr
    assert proc.stderr.startswith(b"dicompack: ") or proc.stdout, proc.stderr
    assert what in proc.stderr + proc.stdout, (proc.stderr[-500:], proc.stdout[-500:])
    assert proc.peak_rss_mb < HOSTILE_RSS_LIMIT_MB, f"peak RSS {proc.peak_rss_mb:.0f} MB"
    assert wall < WALL_LIMIT_S, f"{wall:.1f} s"


# ---------------------------------------------------------------- F4: DICOMDIR records full of elements

def test_dicomdir_records_full_of_empty_elements_are_refused_within_bounds(tmp_path):
    """F4: 199,999 records x 30 empty elements (60 MB, 1 MB deflated) took 861 MB."""
    dd = dicomdir_bytes(MAX_DICOMDIR_RECORDS - 1, empty_private_elements(30))
    (tmp_path / "dd.zip").write_bytes(raw_zip([(b"DICOMDIR", dd, 8)]))
    proc, wall = measured("verify", tmp_path / "dd.zip")
    assert_bounded(proc, wall, 4, b"MiB of keys")


def test_dicomdir_keys_just_under_their_budget_are_read_within_bounds(tmp_path):
    """The worst DICOMDIR the reader accepts: every record at the record cap
    carrying as many empty elements as the key budget allows."""
    per_record = MAX_DICOMDIR_KEY_BYTES // (MAX_DICOMDIR_RECORDS * 16)
    dd = dicomdir_bytes(MAX_DICOMDIR_RECORDS - 1, empty_private_elements(per_record))
    (tmp_path / "dd.zip").write_bytes(raw_zip([(b"DICOMDIR", dd, 8)]))
    proc, wall = measured("ls", tmp_path / "dd.zip")
    # Read: no finding about the keys, only that the records reference no files.
    assert b"MiB of keys" not in proc.stderr
    assert_bounded(proc, wall, proc.returncode)


def test_dicomdir_record_with_too_many_elements_is_refused(tmp_path):
    (tmp_path / "DICOMDIR").write_bytes(dicomdir_bytes(1, empty_private_elements(MAX_RECORD_ELEMENTS + 1)))
    with pytest.raises(PackageInvalidError, match="more than 1,000 elements"):
        read_dicomdir(tmp_path / "DICOMDIR")


def test_read_records_keep_their_keys_compactly_and_round_trip():
    """100,000 IMAGE-style records (charset + instance number) read back
    with their keys, and write back byte for byte."""
    keys = _el(0x00080005, b"CS", b"ISO_IR 100") + _el(0x00200013, b"IS", b"17")
    dd = parse_dicomdir_bytes(dicomdir_bytes(100_000, keys))
    assert len(dd.records) == 100_000 and not [f for f in dd.findings if f.severity == "error"]
    rec = dd.records[-1]
    assert rec.elements[0x00200013] == _el(0x00200013, b"IS", b"17")
    assert 0x00080005 in rec.elements and 0x00100010 not in rec.elements and rec.elements.get(1) is None
    assert dict(rec.elements) == {0x00080005: _el(0x00080005, b"CS", b"ISO_IR 100"),
                                  0x00200013: _el(0x00200013, b"IS", b"17")}
    assert rec.same_content(Record("PATIENT", elements=dict(rec.elements), in_use=True))
    out = io.BytesIO()
    write_dicomdir(out, dd.roots[:3])
    again = parse_dicomdir_bytes(out.getvalue())
    assert [dict(r.elements) for r in again.records] == [dict(r.elements) for r in dd.records[:3]]


# ---------------------------------------------------------------- F5, F14: ZIP central directory

def test_zip_over_the_entry_limit_is_refused_before_reading_entries(tmp_path):
    (tmp_path / "m.zip").write_bytes(raw_zip(empty_entries(LIMITS.max_entries + 1)))
    proc, wall = measured("verify", tmp_path / "m.zip")
    assert_bounded(proc, wall, 5, b"exceed the limit")


def test_zip_at_the_entry_limit_is_read_within_bounds(tmp_path):
    """F5: 499,999 empty entries took 338 MB.  At the limit every entry is
    read and name-checked; the last repeats a name so the run ends there."""
    entries = empty_entries(LIMITS.max_entries - 1)
    entries.append(entries[-1])
    (tmp_path / "m.zip").write_bytes(raw_zip(entries))
    proc, wall = measured("verify", tmp_path / "m.zip")
    assert_bounded(proc, wall, 5, b"duplicate entry name")


def test_zip_of_long_names_is_refused_by_the_names_budget(tmp_path):
    name = b"/".join([b"A" * 250] * 4)
    count = LIMITS.max_names_bytes // len(name) + 1
    entries = [(name[:-6] + b"%06d" % i, b"", 0) for i in range(count)]
    (tmp_path / "n.zip").write_bytes(raw_zip(entries))
    proc, wall = measured("verify", tmp_path / "n.zip")
    assert_bounded(proc, wall, 5, b"entry names take more than")


def test_reader_closes_its_file_when_the_central_directory_is_damaged(tmp_path):
    """F14: the file opened by ZipReader leaked when __init__ raised."""
    data = bytearray(raw_zip([(b"a", b"x", 0), (b"b", b"y", 0)]))
    cd = data.find(struct.pack("<I", 0x02014B50))
    data[cd:cd + 4] = b"XXXX"
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(PackageInvalidError) as info:
        ZipReader(tmp_path / "bad.zip")
    # The traceback (alive in ``info``) still references the reader.
    assert info.value is not None and len(os.listdir("/proc/self/fd")) == before


# ---------------------------------------------------------------- F3, F16: manifest

def _short_strings_manifest(size: int) -> bytes:
    """Short non-ASCII strings, one JSON value per 16 bytes (the density
    limit): each becomes a ~90-byte Python str (json.loads shares none)."""
    items = '"\\u0101\\u0102", ' * ((size - 200) // 16)
    return ('{"x": [' + items[:-2] + "]}").encode()


def test_manifest_of_short_values_at_its_size_cap_is_refused_before_parsing(tmp_path):
    """F16: a 24 MiB manifest of short strings took 260 MB."""
    count = (LIMITS.max_manifest_size - (64 << 10)) // LIMITS.manifest_bytes_per_entry + 1
    manifest = _short_strings_manifest(LIMITS.manifest_cap(count + 1))
    (tmp_path / "m.zip").write_bytes(raw_zip(empty_entries(count) + [(b"DICOMPACK.JSON", manifest, 8)]))
    proc, wall = measured("verify", tmp_path / "m.zip")
    assert_bounded(proc, wall, 5, b"to parse, above the limit")


def test_manifest_just_under_its_memory_budget_is_parsed_within_bounds(tmp_path):
    size = LIMITS.max_manifest_memory // (2 + 100 // LIMITS.manifest_bytes_per_value + 1)
    count = (size - (64 << 10)) // LIMITS.manifest_bytes_per_entry + 1
    manifest = _short_strings_manifest(size)
    with pytest.raises(PackageInvalidError, match="not a dicompack manifest"):
        parse_manifest(manifest)          # under the budget: parsed, then refused by shape
    (tmp_path / "m.zip").write_bytes(raw_zip(empty_entries(count) + [(b"DICOMPACK.JSON", manifest, 8)]))
    proc, wall = measured("verify", tmp_path / "m.zip")
    assert_bounded(proc, wall, 4, b"not a dicompack manifest")


def test_our_manifest_of_100000_entries_is_within_the_budget():
    class Entry:
        def __init__(self, i):
            self.name, self.size = f"DICOM/P{i // 2000:07d}/S{i // 100:07d}/I{i:07d}", 123_456
            self.sha256 = f"{i:064x}"
    doc = parse_manifest(build_manifest([Entry(i) for i in range(100_000)], package_uid="2.25.1",
                                        fileset_summary={"records": 1}))
    assert len(doc["entries"]) == 100_000


def test_manifest_with_a_huge_integer_is_a_typed_error(tmp_path):
    """F3: a 5,000-digit integer raised ValueError: traceback, exit 1."""
    manifest = b'{"format": "dicompack-manifest", "version": 1, "entries": [], "x": ' + b"1" * 5000 + b"}"
    (tmp_path / "m.zip").write_bytes(raw_zip([(b"DICOMPACK.JSON", manifest, 8)]))
    proc, wall = measured("verify", tmp_path / "m.zip")
    assert_bounded(proc, wall, 4, b"manifest is not valid JSON")
    assert proc.stderr.count(b"\n") == 1


# ---------------------------------------------------------------- F11: outer ciphertext segments

@pytest.fixture(scope="module")
def secure_package(example_corpus, tmp_path_factory) -> tuple[Path, Path]:
    from tests.support.tools import run_cli
    pki = standard_pki(tmp_path_factory.mktemp("pki"))
    src, _ = example_corpus
    out = tmp_path_factory.mktemp("secure") / "study.p7m"
    run_cli("pack", src, "-o", out, "--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
            "--sign-cert", pki / "signer.pem", "-q", check=True)
    return out, pki


def _resegmented(data: bytes, empties: int, segment: int) -> bytes:
    """The package with its outer encryptedContent re-framed (no key needed):
    ``empties`` empty segments, then the ciphertext in ``segment``-byte ones."""
    lay = layout(data)
    ciphertext = bytes(data[o] for o in lay.ciphertext)
    first = lay.ciphertext[0]
    start = data.rfind(b"\xa0\x80", 0, first)        # the [0] IMPLICIT encryptedContent
    end = lay.ciphertext[-1] + 1
    assert data[end:end + 2] == b"\x00\x00"
    body = bytearray(b"\xa0\x80" + b"\x04\x00" * empties)
    for i in range(0, len(ciphertext), segment):
        piece = ciphertext[i:i + segment]
        body += b"\x04" + der_length(len(piece)) + piece
    return data[:start] + bytes(body) + b"\x00\x00" + data[end + 2:]


@pytest.mark.parametrize("empties, segment, what", [
    (5_000_000, 100, b"empty segment"),
    (0, 1, b"too many segments shorter than"),
])
def test_resegmented_outer_ciphertext_is_refused_quickly(secure_package, tmp_path, empties, segment, what):
    """F11: 5,000,000 empty segments took 7.4 s before any trust decision."""
    package, pki = secure_package
    (tmp_path / "x.p7m").write_bytes(_resegmented(package.read_bytes(), empties, segment))
    start = time.monotonic()
    proc = run_cli_measured("verify", tmp_path / "x.p7m", "--key", pki / "recip.key", "--cert",
                            pki / "recip.pem", "--trust", pki / "ca.pem")
    assert_bounded(proc, time.monotonic() - start, 4, what)
    assert time.monotonic() - start < 5


def test_reframed_outer_ciphertext_in_large_segments_still_reads(secure_package, tmp_path):
    package, pki = secure_package
    (tmp_path / "x.p7m").write_bytes(_resegmented(package.read_bytes(), 0, 1000))
    proc = run_cli_measured("verify", tmp_path / "x.p7m", "--key", pki / "recip.key", "--cert",
                            pki / "recip.pem", "--trust", pki / "ca.pem")
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- F15: PBKDF2 cost

def _pwri(prf: str, iterations: int):
    ri = keywrap.build_pwri(b"pw", 10_000, os.urandom(32)).chosen
    params = ri["key_derivation_algorithm"]["parameters"]
    ri["key_derivation_algorithm"] = algos.KdfAlgorithm({"algorithm": "pbkdf2", "parameters": algos.Pbkdf2Params({
        "salt": params["salt"], "iteration_count": iterations,
        "prf": {"algorithm": prf, "parameters": core.Null()}})})
    return ri


@pytest.mark.parametrize("prf, most", [("sha512", 1_000_000), ("sha384", 1_000_000), ("sha1", 1_666_666)])
def test_pbkdf2_cost_is_capped_per_prf(prf, most):
    """F15: 4 x 5,000,000 HMAC-SHA512 iterations took 11 s before trust."""
    start = time.monotonic()
    with pytest.raises(PackageInvalidError, match=f"above the limit of {most:,}"):
        keywrap.unwrap_pwri(_pwri(prf, most + 1), b"pw", legacy=True)
    assert time.monotonic() - start < 0.5            # refused before deriving


def test_pbkdf2_sha256_keeps_its_limit():
    with pytest.raises(PackageInvalidError, match="above the limit of 5,000,000"):
        keywrap.unwrap_pwri(_pwri("sha256", 5_000_001), b"pw")
