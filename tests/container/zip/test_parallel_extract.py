"""Extraction on several threads gives the one-thread result: the same
files and SHA-256s for a good ZIP, the same typed error naming the same
entry for a hostile one (the first failing entry in the ZIP's order), and
nothing left behind.  The zlib fallback (no ISA-L) keeps every bound."""
from __future__ import annotations

import hashlib
import os
import struct
import time
import zlib

import pytest

from dicompack.container.zip import ZipReader, ZipWriter, entry_stream, extract_atomically
from dicompack.container.zip import extract as extract_module
from dicompack.enums import ZipMethod
from dicompack.errors import DicompackError, PackageInvalidError, UnsafeArchiveError

WORKERS = (1, 2, 4)


def _deflated(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.compress(data) + comp.flush()


def _raw_zip(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """Deflated entries (name, payload, declared size, declared CRC), headers by hand."""
    out, central = bytearray(), bytearray()
    for name, payload, size, crc in entries:
        offset, raw = len(out), name.encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(payload), size,
                           len(raw), 0) + raw + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0314, 20, 0, 8, 0, 0x21, crc, len(payload),
                               size, len(raw), 0, 0, 0, 0, 0o100644 << 16, offset) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


def _contents(n: int) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        # Half-compressible bytes of varied sizes, one past several output steps.
        size = (3 << 20) + 17 if i == 2 else 1000 * (i + 1)
        files[f"PA000001/SE{i % 3:06d}/IM{i:06d}"] = os.urandom(size // 2) + bytes(size - size // 2)
    return files


def _good_zip(path, files: dict[str, bytes]) -> None:
    with open(path, "wb") as f, ZipWriter(f) as w:
        w.add_bytes("DICOMDIR", b"dicomdir stub")
        for i, (name, data) in enumerate(files.items()):
            w.add_bytes(name, data, method=(ZipMethod.DEFLATE, ZipMethod.STORE, ZipMethod.ZSTD)[i % 3])


def _outcome(path, target, workers: int, **kwargs):
    """(digests, files) or (error type, where, message); and what is left beside ``target``."""
    try:
        digests = extract_atomically(ZipReader(path, **kwargs), target, workers=workers)
        found = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
        result: tuple = (digests, found)
    except DicompackError as err:
        result = (type(err).__name__, err.where, err.message)
    return result, sorted(os.listdir(target.parent))


def _same_for_every_worker_count(tmp_path, data: bytes):
    work = tmp_path / f"case{len(os.listdir(tmp_path))}"
    work.mkdir()
    path = work / "in.zip"
    path.write_bytes(data)
    outcomes = []
    for workers in WORKERS:
        result, left = _outcome(path, work / f"out{workers}", workers)
        outcomes.append(result)
        if isinstance(result[0], str):
            assert left == ["in.zip"], "a failed extraction left something behind"
    assert all(o == outcomes[0] for o in outcomes[1:])
    return outcomes[0]


def test_good_zip_gives_the_same_files_and_digests_on_every_worker_count(tmp_path):
    files = _contents(12)
    path = tmp_path / "good.zip"
    _good_zip(path, files)
    digests, found = _same_for_every_worker_count(tmp_path, path.read_bytes())
    assert found == {"DICOMDIR": b"dicomdir stub", **files}
    assert digests == {name: hashlib.sha256(data).hexdigest() for name, data in found.items()}
    assert list(digests) == ["DICOMDIR", *files]    # in the ZIP's order: deterministic


def _bad_crc_zip(bad: set[int], n: int = 8) -> bytes:
    entries = []
    for i in range(n):
        # Odd entries go to the workers, even ones are extracted inline.
        data = os.urandom(200_000 + i if i % 2 else 3000)
        crc = zlib.crc32(data) ^ (1 if i in bad else 0)
        entries.append((f"IM{i:06d}", _deflated(data), len(data), crc))
    return _raw_zip(entries)


@pytest.mark.parametrize("bad", [{0}, {3}, {7}, {2, 6}, {5, 6, 7}])
def test_bad_crc_names_the_first_bad_entry_on_every_worker_count(tmp_path, bad):
    kind, where, message = _same_for_every_worker_count(tmp_path, _bad_crc_zip(bad))
    assert (kind, where) == ("PackageInvalidError", f"IM{min(bad):06d}")
    assert "CRC-32" in message


def test_a_slow_first_bad_entry_wins_over_a_quick_later_one(tmp_path, monkeypatch):
    # Entry 1 is slow: entry 4 fails first in time, yet entry 1 is named.
    real = extract_module._Extraction._fill

    def slow_fill(self, i):
        if i == 1:
            time.sleep(0.5)
        return real(self, i)
    monkeypatch.setattr(extract_module._Extraction, "_fill", slow_fill)
    kind, where, _ = _same_for_every_worker_count(tmp_path, _bad_crc_zip({1, 4}))
    assert (kind, where) == ("PackageInvalidError", "IM000001")


def _bomb_zip(at: int, n: int = 6) -> bytes:
    entries = []
    for i in range(n):
        if i == at:
            data = bytes(40 << 20)      # 40 MiB of zeros: ratio ~1000:1
            entries.append((f"IM{i:06d}", _deflated(data), len(data), zlib.crc32(data)))
        else:
            data = os.urandom(50_000)
            entries.append((f"IM{i:06d}", _deflated(data), len(data), zlib.crc32(data)))
    return _raw_zip(entries)


@pytest.mark.parametrize("at", [0, 4])
def test_bomb_is_stopped_naming_it_on_every_worker_count(tmp_path, at):
    kind, where, message = _same_for_every_worker_count(tmp_path, _bomb_zip(at))
    assert (kind, where) == ("UnsafeArchiveError", f"IM{at:06d}")
    assert "ratio" in message


def test_truncated_and_oversized_entries_keep_their_errors(tmp_path):
    data = os.urandom(300_000)
    good = [(f"IM{i:06d}", _deflated(data), len(data), zlib.crc32(data)) for i in range(5)]
    short = list(good)
    short[3] = ("IM000003", _deflated(data)[:-1000], len(data), zlib.crc32(data))
    assert _same_for_every_worker_count(tmp_path, _raw_zip(short))[:2] == ("PackageInvalidError", "IM000003")
    bigger = list(good)
    bigger[1] = ("IM000001", _deflated(data), len(data) - 1, zlib.crc32(data))
    kind, where, message = _same_for_every_worker_count(tmp_path, _raw_zip(bigger))
    assert (kind, where) == ("PackageInvalidError", "IM000001")
    assert "larger than its declared size" in message


def test_names_clashing_on_the_file_system_give_the_one_thread_error(tmp_path, monkeypatch):
    # NameIndex refuses every clash it knows; a file system folding names
    # some other way is simulated by mapping "X_" onto "X".  Entry 1 is
    # slow to start, so that on threads entry 3 creates the file first.
    real_dest, real_fill = extract_module._Extraction._dest, extract_module._Extraction._fill
    monkeypatch.setattr(extract_module._Extraction, "_dest",
                        lambda self, e: real_dest(self, e).removesuffix("_"))

    def slow_fill(self, i):
        if i == 1 and not getattr(self, "_slowed", False):
            self._slowed = True
            time.sleep(0.5)
        return real_fill(self, i)
    monkeypatch.setattr(extract_module._Extraction, "_fill", slow_fill)
    data = os.urandom(100_000)
    names = ["IM000000", "IM000001", "IM000002", "IM000001_", "IM000004"]
    zipped = _raw_zip([(n, _deflated(data), len(data), zlib.crc32(data)) for n in names])
    kind, where, message = _same_for_every_worker_count(tmp_path, zipped)
    assert (kind, where) == ("UnsafeArchiveError", "IM000001_")
    assert "collides" in message


def test_an_earlier_bad_entry_wins_over_a_later_clash(tmp_path, monkeypatch):
    real_dest = extract_module._Extraction._dest
    monkeypatch.setattr(extract_module._Extraction, "_dest",
                        lambda self, e: real_dest(self, e).removesuffix("_"))
    data = os.urandom(100_000)
    entries = [(n, _deflated(data), len(data), zlib.crc32(data)) for n in ["A0", "A1", "A2", "A1_"]]
    entries[1] = ("A1", entries[1][1], len(data), zlib.crc32(data) ^ 1)
    kind, where, _ = _same_for_every_worker_count(tmp_path, _raw_zip(entries))
    assert (kind, where) == ("PackageInvalidError", "A1")


@pytest.fixture
def zlib_only(monkeypatch):
    """As if the isal wheel were missing."""
    monkeypatch.setattr(entry_stream, "INFLATE", zlib)


def test_isal_is_used_when_installed():
    pytest.importorskip("isal")
    assert entry_stream.INFLATE.__name__ == "isal.isal_zlib"
    assert entry_stream._load_inflate() is entry_stream.INFLATE


def test_fallback_without_isal_extracts_the_same(tmp_path, zlib_only):
    files = _contents(6)
    path = tmp_path / "good.zip"
    _good_zip(path, files)
    digests, found = _same_for_every_worker_count(tmp_path, path.read_bytes())
    assert digests == {name: hashlib.sha256(data).hexdigest() for name, data in found.items()}


def test_fallback_without_isal_keeps_every_bound(tmp_path, zlib_only):
    for sub, data, where, error, text in [
            ("bomb", _bomb_zip(2), "IM000002", UnsafeArchiveError, "ratio"),
            ("crc", _bad_crc_zip({4}), "IM000004", PackageInvalidError, "CRC-32")]:
        (tmp_path / sub).mkdir()
        path = tmp_path / sub / "in.zip"
        path.write_bytes(data)
        for workers in WORKERS:
            with pytest.raises(error) as err:
                extract_atomically(ZipReader(path), tmp_path / sub / f"out{workers}", workers=workers)
            assert err.value.where == where and text in err.value.message
        assert os.listdir(tmp_path / sub) == ["in.zip"]


def test_entries_stream_concurrently_from_one_reader(tmp_path):
    files = _contents(6)
    path = tmp_path / "good.zip"
    _good_zip(path, files)
    with ZipReader(path) as reader:
        entries = [e for e in reader.entries() if e.name in files]
        streams = [(e.name, reader.content(e)) for e in entries]
        got = {name: bytearray() for name, _ in streams}
        live = list(streams)
        while live:        # interleaved: each step of each entry seeks the shared file
            for item in list(live):
                piece = next(item[1], None)
                if piece is None:
                    live.remove(item)
                else:
                    got[item[0]] += piece
    assert {k: bytes(v) for k, v in got.items()} == files
