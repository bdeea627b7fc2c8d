"""The ZIP container on its own: ZIP64, pipes, zstd, hostile entries, fuzzing."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicompack.container.zip import ZipLimits, ZipReader, ZipWriter, extract_atomically
from dicompack.errors import DicompackError, PackageInvalidError, UnsafeArchiveError
from tests.support.tools import require_tool


def _unzip_t(path: Path) -> None:
    proc = subprocess.run([require_tool("unzip"), "-tq", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zip64_for_more_than_65535_entries(tmp_path):
    path = tmp_path / "many.zip"
    with open(path, "w+b") as f, ZipWriter(f) as zw:
        for i in range(65_600):
            zw.add_bytes(f"D{i // 1000:03d}/F{i:06d}", b"%d" % i, method="store")
    _unzip_t(path)
    with zipfile.ZipFile(path) as zf:
        assert len(zf.infolist()) == 65_600 and zf.read("D065/F065599") == b"65599"
    assert len(ZipReader(path).entries()) == 65_600


def test_non_seekable_output_uses_data_descriptors(tmp_path):
    read_end, write_end = os.pipe()
    collected = bytearray()
    reader = threading.Thread(target=lambda: collected.extend(os.fdopen(read_end, "rb").read()))
    reader.start()
    with os.fdopen(write_end, "wb") as pipe, ZipWriter(pipe) as zw:
        zw.add_bytes("A", b"a" * 100_000)
        zw.add_bytes("Ünïcode", b"u", method="store")
    reader.join()
    path = tmp_path / "piped.zip"
    path.write_bytes(bytes(collected))
    _unzip_t(path)
    with zipfile.ZipFile(path) as zf:
        assert zf.infolist()[0].flag_bits & 0x8
        assert zf.read("Ünïcode") == b"u"


def test_zstd_round_trip_with_our_reader(tmp_path):
    path = tmp_path / "z.zip"
    data = bytes(range(256)) * 4000
    with open(path, "w+b") as f, ZipWriter(f) as zw:
        info = zw.add_bytes("Z", data, method="zstd")
    assert info.method == "zstd" and info.compressed_size < len(data)
    assert ZipReader(path).read("Z") == data


def test_streamed_big_entry_keeps_memory_flat(tmp_path):
    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.left = n

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    tracemalloc.start()
    with open(os.devnull, "wb") as sink, ZipWriter(sink) as zw:
        zw.add_stream("BIG", io.BufferedReader(Zeros(200 << 20)), method="deflate")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20


def _crafted(tmp_path: Path, name: str, *, attr: int | None = None, flag: int = 0) -> Path:
    path = tmp_path / "crafted.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("PLACEHOLDER")
        zf.writestr(info, b"data")
    spelled = name.encode().ljust(11, b"_")[:11] if len(name) <= 11 else b"PLACEHOLDER"
    data = path.read_bytes().replace(b"PLACEHOLDER", spelled)
    path.write_bytes(data)
    if attr is not None or flag:
        raw = bytearray(path.read_bytes())
        central = raw.rfind(b"PK\x01\x02")
        if attr is not None:
            raw[central + 38:central + 42] = attr.to_bytes(4, "little")
        if flag:
            raw[central + 8:central + 10] = flag.to_bytes(2, "little")
            raw[6:8] = flag.to_bytes(2, "little")
        path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("case", ["symlink", "encrypted"])
def test_symlink_and_encrypted_entries_rejected(tmp_path, case):
    kwargs = {"attr": (stat.S_IFLNK | 0o777) << 16} if case == "symlink" else {"flag": 1}
    path = _crafted(tmp_path, "LINK", **kwargs)
    with pytest.raises(UnsafeArchiveError) as err:
        ZipReader(path).entries()
    assert err.value.where.startswith("LINK")
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError):
        extract_atomically(ZipReader(path), target)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.zip"]


def test_corrupt_entry_named_by_test(tmp_path):
    path = tmp_path / "c.zip"
    with open(path, "w+b") as f, ZipWriter(f) as zw:
        zw.add_bytes("GOOD", b"g" * 1000, method="store")
        zw.add_bytes("BAD", b"b" * 1000, method="store")
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"b" * 10) + 5] ^= 1
    path.write_bytes(bytes(raw))
    assert [name for name, _ in ZipReader(path).test()] == ["BAD"]
    with pytest.raises(PackageInvalidError, match="CRC"):
        ZipReader(path).read("BAD")


def test_ratio_limit_stops_a_bomb_early(tmp_path):
    path = tmp_path / "bomb.zip"
    with open(path, "w+b") as f, ZipWriter(f) as zw:
        zw.add_bytes("B", bytes(50 << 20))
    with pytest.raises(UnsafeArchiveError, match="ratio"):
        ZipReader(path, limits=ZipLimits(max_ratio=100)).read("B")


_SMALL = io.BytesIO()
with ZipWriter(_SMALL) as _zw:
    _zw.add_bytes("DICOMDIR", b"d" * 300)
    _zw.add_bytes("PA000001/IM000001", bytes(range(200)), method="store")
_VALID = _SMALL.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.binary(min_size=1, max_size=12), st.booleans())
def test_mutated_zip_only_raises_dicompack_errors(at, junk, truncate):
    data = bytearray(_VALID)
    if truncate:
        data = data[:at]
    else:
        data[at:at + len(junk)] = junk
    try:
        reader = ZipReader(io.BytesIO(bytes(data)))
        for entry in reader.entries():
            with reader.open(entry) as f:
                f.read()
    except DicompackError:
        pass
