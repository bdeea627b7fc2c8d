"""Fuzzing what a man in the middle can do to a folder of Secure DICOM Files
and to a signed --split volume set: flip, cut, drop, add, swap, mix with a
second packing of the same study.  Property: `unpack` either raises a typed
error and writes nothing, or restores exactly what the sender packed."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dicompack.api as dp
from dicompack import keys
from dicompack.errors import DicompackError
from tests.support import synthetic
from tests.support.pki import standard_pki
from tests.support.secure import seal_options
from tests.support.tools import run_cli, tree_digest

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The PKI, a per-file folder, two packings of one study as signed volume
    sets, and what a genuine restore of each gives."""
    base = tmp_path_factory.mktemp("fuzz")
    pki = standard_pki(base / "pki")
    src = base / "src"
    synthetic.make_conformant_tree(src, 12, patients=2, series_per_patient=2, rows=64, columns=64)
    run_cli("pack", src, "-o", base / "perfile", "--per-file", *seal_options(pki), "-q", check=True)
    for name in ("a", "b"):           # two packings of the same study (same UIDs)
        (base / name).mkdir()
        run_cli("pack", src, "-o", base / name / "study.p7m", "--split", "24K", *seal_options(pki), "-q",
                check=True)
    options = dp.ReceiveOptions(key=keys.load_private_key(pki / "recip.key"),
                                cert=keys.load_certificate(pki / "recip.pem"),
                                trust=tuple(keys.load_certificates(pki / "ca.pem")))
    genuine = {}
    for label, source in (("perfile", base / "perfile"), ("volumes", sorted((base / "a").iterdir()))):
        dp.unpack(source, base / f"genuine-{label}", options)
        genuine[label] = tree_digest(base / f"genuine-{label}")
    assert len(list((base / "a").iterdir())) >= 3, "the study must span several volumes"
    return base, options, genuine


def _outcome(source, options, genuine: dict) -> None:
    work = Path(tempfile.mkdtemp(dir=Path(source[0] if isinstance(source, list) else source).parent.parent))
    dest = work / "out"
    try:
        dp.unpack(source, dest, options)
    except DicompackError:
        assert not dest.exists()
    else:
        assert tree_digest(dest) == genuine, "altered content was restored"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _flip(path: Path, at: int, junk: bytes) -> None:
    data = bytearray(path.read_bytes())
    at %= len(data)
    data[at:at + len(junk)] = junk
    path.write_bytes(bytes(data))


folder_ops = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.integers(1, 4096)),
    st.tuples(st.just("drop"), st.integers(0, 10**6)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("swap"), st.integers(0, 10**6), st.integers(0, 10**6)),
)


@_SETTINGS
@given(ops=st.lists(folder_ops, min_size=1, max_size=3))
def test_altered_per_file_folder_never_restores_altered_content(world, ops):
    base, options, genuine = world
    work = Path(tempfile.mkdtemp(dir=base))
    folder = work / "perfile"
    shutil.copytree(base / "perfile", folder)
    try:
        for op, *args in ops:
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            if not files:
                break
            one = files[args[0] % len(files)]
            if op == "flip":
                _flip(one, args[1], args[2])
            elif op == "cut":
                one.write_bytes(one.read_bytes()[:-args[1]])
            elif op == "drop":
                one.unlink()
            elif op == "duplicate":       # a genuine file under another File ID
                target = files[args[1] % len(files)]
                target = target.with_name(target.name[:7] + "Z")
                if target != one:
                    shutil.copyfile(one, target)
            elif op == "swap":
                other = files[args[1] % len(files)]
                a, b = one.read_bytes(), other.read_bytes()
                one.write_bytes(b)
                other.write_bytes(a)
        _outcome(folder, options, genuine["perfile"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


volume_ops = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 99), st.integers(0, 10**7), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("drop"), st.integers(0, 99)),
    st.tuples(st.just("repeat"), st.integers(0, 99)),
    st.tuples(st.just("mix"), st.integers(0, 99)),      # the same volume of the other packing
    st.tuples(st.just("reverse"),),
)


@_SETTINGS
@given(ops=st.lists(volume_ops, min_size=1, max_size=3))
def test_altered_volume_set_never_restores_altered_content(world, ops):
    base, options, genuine = world
    work = Path(tempfile.mkdtemp(dir=base))
    try:
        volumes = []
        for n, path in enumerate(sorted((base / "a").iterdir())):
            volumes.append(shutil.copyfile(path, work / f"{n}-{path.name}"))
        others = sorted((base / "b").iterdir())
        for op, *args in ops:
            if not volumes:
                break
            i = args[0] % len(volumes) if args else 0
            if op == "flip":
                _flip(volumes[i], args[1], args[2])
            elif op == "drop":
                volumes.pop(i)
            elif op == "repeat":
                volumes.append(volumes[i])
            elif op == "mix" and i < len(others):
                volumes[i] = others[i]
            elif op == "reverse":
                volumes.reverse()
        if volumes:
            _outcome(list(volumes), options, genuine["volumes"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_harmless_changes_restore_exactly(world):
    """The success branch of the property is reachable: genuine volumes in
    any order restore what the sender packed."""
    base, options, genuine = world
    volumes = sorted((base / "a").iterdir())
    dest = base / "reordered"
    dp.unpack(list(reversed(volumes)), dest, options)
    assert tree_digest(dest) == genuine["volumes"]
    with pytest.raises(DicompackError):
        dp.unpack([volumes[0], sorted((base / "b").iterdir())[1], *volumes[2:]], base / "mixed", options)
    assert not (base / "mixed").exists()
