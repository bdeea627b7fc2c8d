"""Fast deflate in parallel: independent readers accept the output, it is
byte-identical whatever the worker count, memory stays bounded, and the
zlib fallback (no libdeflate, no ISA-L) still writes valid ZIPs."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from contextlib import nullcontext
from pathlib import Path

import pytest

from dicompack.container.zip import DEFAULT_ZIP_LEVEL, EntrySpool, ZipReader, ZipWriter
from dicompack.options import ZIP_LEVEL_PRESETS, PackOptions, parse_zip_level
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[3]


def _ct_like(n: int, seed: int) -> bytes:
    """16-bit little-endian samples, smooth with noise: compresses like CT."""
    rng = __import__("numpy").random.default_rng(seed)
    base = (rng.normal(0, 40, n // 2).cumsum() % 3000).astype("<u2")
    return base.tobytes()


def _files() -> dict[str, bytes]:
    files = {f"PA000001/ST000001/SE000001/IM{i:06d}": _ct_like(300_000 + 7919 * i, i) for i in range(12)}
    files["PA000001/BIG"] = _ct_like(11 << 20, 99)          # chunked: over WHOLE_MAX
    files["PA000001/EMPTY"] = b""
    files["PA000001/STORED"] = os.urandom(5000)
    return files


def _write(path: Path, files: dict[str, bytes], workers: int, *, level: int = DEFAULT_ZIP_LEVEL) -> bytes:
    methods = {name: "store" if name.endswith("STORED") else "deflate" for name in files}
    with open(path, "w+b") as f, ZipWriter(f, workers=workers, level=level) as zw:
        items = [(name, lambda data=data: io.BytesIO(data), methods[name]) for name, data in files.items()]
        infos = list(zw.add_streams(items))
    assert [i.name for i in infos] == list(files)
    for info in infos:
        data = files[info.name]
        assert (info.size, info.crc32, info.sha256) == (len(data), zlib.crc32(data), hashlib.sha256(data).hexdigest())
    return path.read_bytes()


def _check_independently(path: Path, files: dict[str, bytes]) -> None:
    proc = subprocess.run([require_tool("unzip"), "-tq", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None            # every entry's CRC
        assert {n: zf.read(n) for n in zf.namelist()} == files
    reader = ZipReader(path)
    assert {e.name: reader.read(e.name) for e in reader.entries()} == files


def test_parallel_output_is_valid_and_identical_for_any_worker_count(tmp_path):
    files = _files()
    one = _write(tmp_path / "w1.zip", files, 1)
    two = _write(tmp_path / "w2.zip", files, 2)
    again = _write(tmp_path / "w2b.zip", files, 2)
    four = _write(tmp_path / "w4.zip", files, 4)
    assert one == two == again == four
    _check_independently(tmp_path / "w2.zip", files)


@pytest.mark.parametrize("tool", ["7z", "zip"])
def test_chunked_big_entry_passes_other_testers(tmp_path, tool):
    files = {"BIG": _ct_like(9 << 20, 5), "small": b"x" * 1000}
    path = tmp_path / "big.zip"
    _write(path, files, 2)
    exe = require_tool(tool)
    cmd = [exe, "t", str(path)] if tool == "7z" else [exe, "-T", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pipe_output_and_levels(tmp_path):
    files = _files()
    sink = io.BytesIO()
    sink.seekable = lambda: False            # type: ignore[method-assign]
    with ZipWriter(sink, workers=2) as zw:
        list(zw.add_streams([(n, lambda d=d: io.BytesIO(d), "deflate") for n, d in files.items()]))
    (tmp_path / "piped.zip").write_bytes(sink.getvalue())
    _check_independently(tmp_path / "piped.zip", files)
    fast = len(_write(tmp_path / "l1.zip", files, 2, level=1))
    small = len(_write(tmp_path / "l9.zip", files, 2, level=9))
    assert small <= fast


def test_spool_matches_and_is_deterministic(tmp_path):
    files = _files()
    blobs = []
    for workers in (1, 2):
        with EntrySpool(tmp_path / f"spool{workers}", workers=workers) as spool:
            got = list(spool.add_streams([(n, lambda d=d: nullcontext(io.BytesIO(d)), "deflate")
                                          for n, d in files.items()]))
            assert [k for k, _ in got] == list(files)
            for name, entry in got:
                packed = b"".join(spool.chunks(entry))
                assert zlib.decompress(packed, -15) == files[name]
                assert entry.info.crc32 == zlib.crc32(files[name])
            blobs.append((tmp_path / f"spool{workers}").read_bytes())
    assert blobs[0] == blobs[1]


def test_200mb_entry_keeps_memory_bounded():
    class Noise(io.RawIOBase):
        def __init__(self, n):
            self.left, self.block = n, _ct_like(1 << 20, 1)

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left, len(self.block))
            b[:n] = self.block[:n]
            self.left -= n
            return n

    tracemalloc.start()
    with open(os.devnull, "wb") as sink, ZipWriter(sink, workers=2) as zw:
        info = zw.add_stream("BIG", io.BufferedReader(Noise(200 << 20)), method="deflate")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.size == 200 << 20
    assert peak < 40 << 20


FALLBACK = """
import io, sys, zipfile
for mod in ("deflate", "imagecodecs", "isal"):
    sys.modules[mod] = None             # the import fails as if the wheel were missing
from dicompack.container.zip import ZipWriter, deflate_backends
assert deflate_backends() == {"whole": "zlib", "chunks": "zlib"}, deflate_backends()
files = {"a": bytes(range(256)) * 5000, "big": bytes(range(256)) * 40000}
out = io.BytesIO()
with ZipWriter(out, workers=2) as zw:
    list(zw.add_streams([(n, lambda d=d: io.BytesIO(d), "deflate") for n, d in files.items()]))
open(sys.argv[1], "wb").write(out.getvalue())
with zipfile.ZipFile(io.BytesIO(out.getvalue())) as zf:
    assert zf.testzip() is None and zf.read("big") == files["big"]
"""


def test_fallback_to_zlib_when_fast_libraries_are_missing(tmp_path):
    path = tmp_path / "fallback.zip"
    subprocess.run([sys.executable, "-c", FALLBACK, str(path)], check=True, cwd=REPO)
    proc = subprocess.run([require_tool("unzip"), "-tq", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zip_level_option_and_presets():
    assert PackOptions().zip_level == DEFAULT_ZIP_LEVEL == ZIP_LEVEL_PRESETS["default"]
    assert parse_zip_level("fast") == 1 and parse_zip_level("12") == 12 and parse_zip_level(3) == 3
    from dicompack.errors import UsageError  # the error class only this test needs
    for bad in ("0", "13", "huge", True):
        with pytest.raises(UsageError):
            parse_zip_level(bad)
