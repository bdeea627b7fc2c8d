"""Hostile ZIPs, built byte by byte, through the real command line.

Each attack must end in a typed error (exit 5: unsafe archive) on one line
naming the entry, with nothing restored at the destination nor left in its
parent, the process under HOSTILE_RSS_LIMIT_MB of peak memory and within a
few seconds; never a traceback, a hang or unbounded memory.  Foreign ZIPs
(Info-ZIP, Python's zipfile, our own writer to a pipe) must still pass.
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
import time
import unicodedata
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicompack.container.zip import ZipReader, ZipWriter
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import require_tool

MANIFEST = "DICOMPACK.JSON"
WALL_LIMIT_S = 30
DESCRIPTOR = 0x08


# ---------------------------------------------------------------- building ZIPs by hand

@dataclass
class Raw:
    """One entry as it will be written: ``data`` is the stored or compressed
    payload; ``size`` and ``crc`` are what the headers declare."""
    name: str
    data: bytes
    size: int
    crc: int
    method: int = 0
    flags: int = 0

    @classmethod
    def stored(cls, name: str, content: bytes) -> Raw:
        return cls(name, content, len(content), zlib.crc32(content))


def _local(e: Raw) -> bytes:
    name = e.name.encode("utf-8")
    flags = e.flags | (0x800 if not e.name.isascii() else 0)
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, e.method, 0, 0x21,
                       e.crc, len(e.data), min(e.size, 0xFFFFFFFF), len(name), 0) + name


def _central(e: Raw, offset: int) -> bytes:
    name = e.name.encode("utf-8")
    flags = e.flags | (0x800 if not e.name.isascii() else 0)
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0314, 20, flags, e.method, 0, 0x21,
                       e.crc, len(e.data), min(e.size, 0xFFFFFFFF), len(name), 0, 0, 0, 0,
                       0o100644 << 16, offset) + name


def _eocd(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


def build_zip(entries: list[Raw], *, listed_offsets: list[int] | None = None,
              before_cd: bytes = b"", between: dict[int, bytes] | None = None) -> bytes:
    """Local records in order, then a central directory listing ``entries``.
    ``between[i]`` is written right after entry i's record (e.g. a hidden
    entry); ``before_cd`` right before the central directory;
    ``listed_offsets`` overrides the header offset each central record
    points at (overlapping entries)."""
    out = bytearray()
    offsets = []
    for i, e in enumerate(entries):
        offsets.append(len(out))
        out += _local(e) + e.data
        out += (between or {}).get(i, b"")
    out += before_cd
    cd_offset = len(out)
    offsets = listed_offsets or offsets
    central = b"".join(_central(e, off) for e, off in zip(entries, offsets))
    return bytes(out + central + _eocd(len(entries), len(central), cd_offset))


def deflate_repeated(unit: bytes, times: int) -> bytes:
    """A raw deflate stream of ``unit`` * ``times`` built from one compressed
    block: after a full flush the compressor forgets its history, so every
    flushed block of the same input is the same bytes and can be repeated
    (a GB of output from a MB of input, without compressing a GB here)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = comp.compress(unit) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(unit) + comp.flush(zlib.Z_FULL_FLUSH)
    return first + block * (times - 1) + comp.flush(zlib.Z_FINISH)


def zstd_rle_frame(total: int) -> bytes:
    """A zstd frame of ``total`` zero bytes made of RLE blocks: 4 bytes of
    input per 128 KiB of output, no content size in the header."""
    block = 128 << 10
    assert total % block == 0
    header = struct.pack("<I", 0xFD2FB528) + bytes([0x00, 7 << 3])   # window 2**17 bytes
    rle = ((block << 3) | (1 << 1)).to_bytes(3, "little") + b"\0"
    last = ((block << 3) | (1 << 1) | 1).to_bytes(3, "little") + b"\0"
    return header + rle * (total // block - 1) + last


def crc_of_repeated(unit: bytes, times: int) -> int:
    crc = 0
    for _ in range(times):
        crc = zlib.crc32(unit, crc)
    return crc


# ---------------------------------------------------------------- running the CLI on them

def _timed_cli(args: tuple):
    started = time.monotonic()
    run = run_cli_measured(*args, timeout=120)
    return run, time.monotonic() - started


def assert_refused(tmp_path: Path, data: bytes, entry: str, *, what: str = "", code: int = 5) -> None:
    """verify and unpack both refuse ``data`` with ``code``, one line naming
    ``entry``, bounded memory and time, and leave nothing behind."""
    package = tmp_path / "hostile.zip"
    package.write_bytes(data)
    parent = tmp_path / "restore"
    parent.mkdir()
    dest = parent / "D"
    # Both commands at once: each is measured on its own; the file stays fast.
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(_timed_cli, [("verify", package), ("unpack", package, "-o", dest)]))
    for args, (run, wall) in zip((("verify",), ("unpack",)), runs):
        err = run.stderr.decode("utf-8", "replace")
        lines = err.strip().splitlines()
        assert run.returncode == code, (args[0], run.returncode, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"dicompack: {entry}: "), (args[0], err)
        assert what.lower() in lines[0].lower(), lines[0]
        assert "dicompack-tmp" not in err and "/tmp/" not in err, err
        assert run.peak_rss_mb < HOSTILE_RSS_LIMIT_MB, (args[0], run.peak_rss_mb)
        assert wall < WALL_LIMIT_S, (args[0], wall)
        print(f"{args[0]} {entry[:40]!r}: exit {run.returncode}, {run.peak_rss_mb:.0f} MB, {wall:.1f} s")
    assert not dest.exists()
    assert list(parent.iterdir()) == []


def dicomdir_stub() -> Raw:
    return Raw.stored("DICOMDIR", b"\0" * 128 + b"DICM")


# ---------------------------------------------------------------- 1. memory from small inputs

def test_zstd_entry_expanding_past_its_ratio_is_stopped_in_flight(tmp_path):
    # 128 KiB of RLE blocks decode to 4 GiB; the declared size (60 MiB) keeps
    # the archive-wide check quiet, so only the streaming bound can stop it.
    frame = zstd_rle_frame(4 << 30)
    bomb = Raw("PA000001/IM000001", frame, 60 << 20, 0, method=93)
    assert_refused(tmp_path, build_zip([dicomdir_stub(), bomb]), "PA000001/IM000001", what="ratio")


def test_zstd_bomb_declaring_its_size_is_refused_before_decompressing(tmp_path):
    frame = zstd_rle_frame(4 << 30)
    bomb = Raw("PA000001/IM000001", frame, 4 << 30, 0, method=93)
    assert_refused(tmp_path, build_zip([dicomdir_stub(), bomb]), "ZIP", what="ratio")


def test_deflate_bomb_is_stopped_in_flight(tmp_path):
    # 1 GiB of zeros from 1 MB; declared 60 MiB: the ratio is watched per
    # decompression step of at most 1 MiB, not after a 256 KiB read expanded.
    unit = bytes(1 << 20)
    data = deflate_repeated(unit, 1024)
    bomb = Raw("PA000001/IM000001", data, 60 << 20, crc_of_repeated(unit, 60), method=8)
    assert_refused(tmp_path, build_zip([dicomdir_stub(), bomb]), "PA000001/IM000001", what="ratio")


def test_whitespace_manifest_is_refused_by_its_declared_size(tmp_path):
    # The reviewer's case: 629 MB of whitespace as DICOMPACK.JSON in a ~4 MB ZIP
    # (ratio 150:1, under the 200:1 limit) cost 1.28 GB of memory when parsed.
    unit = b" " * (1 << 20)
    data = deflate_repeated(unit, 600)
    manifest = Raw(MANIFEST, data, 600 << 20, crc_of_repeated(unit, 600), method=8)
    assert_refused(tmp_path, build_zip([dicomdir_stub(), manifest]), MANIFEST, what="manifest of")


def _many_entries(n: int) -> list[Raw]:
    return [dicomdir_stub()] + [Raw.stored(f"PA000001/IM{i:06d}", b"x") for i in range(n)]


def test_manifest_of_empty_lists_within_its_size_is_refused(tmp_path):
    # '[],' is 3 bytes of JSON but a 64-byte object once parsed.
    entries = _many_entries(3000)
    doc = b'{"format": "dicompack-manifest", "version": 1, "entries": [' + b"[]," * 400_000 + b"[]]}"
    entries.append(Raw.stored(MANIFEST, doc))
    assert_refused(tmp_path, build_zip(entries), MANIFEST, what="JSON values")


@pytest.mark.parametrize("depth", [200_000, 2_000, 40])
def test_deeply_nested_manifest_is_refused(tmp_path, depth):
    # 200,000-deep brackets once gave a RecursionError traceback.  Padded keys
    # keep the shallower ones within the size and value-count limits, so the
    # RecursionError guard (2,000) and the depth walk (40) are what refuse them.
    key = b'{"' + b"k" * 32 + b'": '
    doc = b"[" * depth + b"]" * depth if depth > 10_000 else key * depth + b"0" + b"}" * depth
    entries = _many_entries(200) + [Raw.stored(MANIFEST, doc)]
    assert_refused(tmp_path, build_zip(entries), MANIFEST, what="manifest")


# ---------------------------------------------------------------- 2. layout: overlaps, hidden entries

def test_overlapping_entries_are_refused(tmp_path):
    # The reviewer's bomb: 1,000 central records sharing one 1 MiB payload
    # (1.4 MB of ZIP restored as 1 GB, exit 0).
    payload = os.urandom(1 << 20)
    entries = [Raw.stored(f"PA000001/IM{i:06d}", payload) for i in range(1000)]
    data = build_zip(entries[:1], listed_offsets=[0])
    # One local record, then 1,000 central records all pointing at it.
    cd_offset = len(_local(entries[0]) + payload)
    central = b"".join(_central(e, 0) for e in entries)
    data = data[:cd_offset] + central + _eocd(1000, len(central), cd_offset)
    assert_refused(tmp_path, data, "PA000001/IM000000", what="overlaps")


def test_hidden_local_entry_between_listed_ones_is_refused(tmp_path):
    hidden = _local(Raw.stored("PA000001/EVIL", b"payload")) + b"payload"
    entries = [dicomdir_stub(), Raw.stored("PA000001/IM000001", b"a" * 100)]
    data = build_zip(entries, between={0: hidden})
    assert_refused(tmp_path, data, "PA000001/IM000001", what="no listed entry")


def test_hidden_local_entry_before_the_central_directory_is_refused(tmp_path):
    hidden = _local(Raw.stored("EVIL.EXE", b"MZ")) + b"MZ"
    entries = [dicomdir_stub(), Raw.stored("PA000001/IM000001", b"a" * 100)]
    data = build_zip(entries, before_cd=hidden)
    assert_refused(tmp_path, data, "PA000001/IM000001", what="no listed entry")


def test_bytes_before_the_first_entry_are_refused(tmp_path):
    data = build_zip([dicomdir_stub()])
    prefix = _local(Raw.stored("EVIL", b"x")) + b"x"
    shifted = bytearray(prefix + data)
    # Move the central directory's offsets to match, as a crafted file would.
    cd = shifted.rindex(b"PK\x01\x02")
    struct.pack_into("<I", shifted, cd + 42, len(prefix))
    struct.pack_into("<I", shifted, len(shifted) - 6, cd)
    assert_refused(tmp_path, bytes(shifted), "DICOMDIR", what="no listed entry")


def test_local_header_disagreeing_with_the_central_directory_is_refused(tmp_path):
    # A streaming reader trusts the local sizes: here they would make it read
    # 4 bytes of DICOMDIR and then parse the rest as the next entry.
    data = bytearray(build_zip([dicomdir_stub(), Raw.stored("PA000001/IM000001", b"abc")]))
    struct.pack_into("<I", data, 18, 4)    # local compressed size of DICOMDIR
    assert_refused(tmp_path, bytes(data), "DICOMDIR", what="differ")


def test_data_appended_after_the_end_record_is_refused(tmp_path):
    data = build_zip([dicomdir_stub()]) + b"PK\x03\x04 appended"
    assert_refused(tmp_path, data, "ZIP", what="appended")


# ---------------------------------------------------------------- 3. names

NFC_E, NFD_E = unicodedata.normalize("NFC", "\u00e9"), unicodedata.normalize("NFD", "\u00e9")

HOSTILE_NAMES = {
    "dot component": (["./DICOMDIR"], "'.'"),
    "empty component": (["a//b"], "empty path component"),
    "dot folder": (["PA000001/./IM1"], "'.'"),
    "NFC and NFD": ([f"caf{NFC_E}", f"caf{NFD_E}"], "normalisation"),
    "case": (["IM1", "im1"], "case"),
    "file and folder": (["PA000001", "PA000001/IM1"], "file"),
    "CON": (["CON"], "device"),
    "AUX.txt": (["AUX.txt"], "device"),
    "com1": (["PA000001/com1"], "device"),
    "LPT9.dcm": (["LPT9.dcm"], "device"),
    "com superscript": (["COM\u00b9"], "device"),
    "CON trailing dot": (["CON."], "dot or a space"),
    "CON trailing space": (["CON .dcm"], "device"),
    "alternate data stream": (["IM1:hidden"], "alternate data stream"),
    "trailing dot": (["PA000001./IM1"], "dot or a space"),
    "trailing space": (["IM1 "], "dot or a space"),
    "20,000 components": (["a/" * 19_999 + "b"], "longer than 1024 bytes"),
    "33 components": (["a/" * 32 + "b"], "more than 32 path components"),
    "long name": (["A" * 200 + "/" + "B" * 200 + "/" + "C" * 200 + "/" + "D" * 200 + "/" + "E" * 200 + "/"
                   + "F" * 100], "longer than 1024 bytes"),
    "long component": (["A" * 256], "longer than 255 bytes"),
}


def test_hostile_names_are_refused_naming_the_entry(tmp_path):
    # One test running the cases four at a time (two CLI runs each): the
    # file stays well under a minute on a shared 2-core machine.
    def one(case: str) -> str | None:
        names, what = HOSTILE_NAMES[case]
        entries = [dicomdir_stub()] + [Raw.stored(name, b"x") for name in names]
        folder = tmp_path / f"case{sorted(HOSTILE_NAMES).index(case)}"
        folder.mkdir()
        try:
            assert_refused(folder, build_zip(entries), names[-1], what=what)
        except AssertionError as exc:
            return f"{case}: {exc}"
        return None

    with ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(one, sorted(HOSTILE_NAMES)) if f]
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- foreign and own ZIPs still pass

def _tree(root: Path) -> dict[str, bytes]:
    files = {"DICOMDIR": b"d" * 300, "PA000001/ST000001/IM000001": os.urandom(70_000),
             "PA000001/ST000001/IM000002": bytes(90_000), "README.TXT": b"hello\n" * 100}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def _read_all(data: bytes) -> dict[str, bytes]:
    reader = ZipReader(io.BytesIO(data))
    return {e.name: reader.open(e).read() for e in reader.entries() if not e.is_dir}


@pytest.mark.parametrize("to_pipe", [False, True], ids=["file", "pipe"])
def test_info_zip_output_passes(tmp_path, to_pipe):
    src = tmp_path / "src"
    files = _tree(src)
    out = tmp_path / "z.zip"
    zip_tool = require_tool("zip")
    if to_pipe:   # streaming: data descriptors, no seeking back
        proc = subprocess.run(f"cd '{src}' && '{zip_tool}' -q -r - . | cat > '{out}'", shell=True)
    else:
        proc = subprocess.run([zip_tool, "-q", "-r", str(out), "."], cwd=src)
    assert proc.returncode == 0
    assert _read_all(out.read_bytes()) == files


class _Unseekable(io.RawIOBase):
    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += b
        return len(b)


@pytest.mark.parametrize("mode", ["writestr", "zip64", "unseekable"])
def test_python_zipfile_output_passes(mode):
    files = {"DICOMDIR": b"d" * 300, "PA000001/IM000001": bytes(100_000), "PA000001/IM000002": os.urandom(5000)}
    sink = _Unseekable() if mode == "unseekable" else io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            if mode == "writestr":
                zf.writestr(name, data)
            else:
                with zf.open(name, "w", force_zip64=(mode == "zip64")) as f:
                    f.write(data)
    data = bytes(sink.data) if mode == "unseekable" else sink.getvalue()
    assert _read_all(data) == files


@pytest.mark.parametrize("method", ["store", "deflate", "zstd"])
def test_our_writer_to_a_pipe_passes(method):
    files = {"DICOMDIR": b"d" * 300, "PA000001/IM000001": os.urandom(2 << 20) + bytes(2 << 20),
             "PA000001/IM000002": os.urandom(5000)}
    sink = _Unseekable()
    with ZipWriter(sink) as zw:
        for name, data in files.items():
            zw.add_bytes(name, data, method=method)
    assert _read_all(bytes(sink.data)) == files


def test_our_writer_with_zip64_local_extras_passes():
    # Without a size hint the seekable writer reserves a ZIP64 extra field in
    # each local header and patches it: local and central must still agree.
    files = {"DICOMDIR": b"d" * 300, "PA000001/IM000001": os.urandom(70_000)}
    sink = io.BytesIO()
    with ZipWriter(sink) as zw:
        for name, data in files.items():
            zw.add_stream(name, io.BytesIO(data), method="deflate")
    assert _read_all(sink.getvalue()) == files
