"""Fault injection: a pack interrupted or failing at any stage leaves nothing
at the destination and no temporary files; a re-run succeeds."""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import dicompack
from dicompack.codecs.j2k import J2KOptions
from tests.support import synthetic
from tests.support.tools import run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "src"
    synthetic.make_messy_tree(root, 3000, rows=32, columns=32)
    return root


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if "dicompack-tmp" in p.name]


@pytest.mark.parametrize("stage", ["scan", "compress", "copy", "zip"])
def test_kill_9_at_each_stage_then_rerun(corpus, tmp_path, stage):
    """The child stops itself (SIGKILL) when its progress reaches ``stage``
    ('compress': de-identification, staging beside the destination)."""
    out = tmp_path / ("out.zip" if stage == "zip" else "out")
    deid = "deid=DeidOptions(key=b'k' * 32), " if stage == "compress" else ""
    script = f"""
import os, signal, dicompack
from dicompack.deid import DeidOptions
def progress(event):
    if event.stage == {stage!r} and event.files_done > 0:
        os.kill(os.getpid(), signal.SIGKILL)
dicompack.pack([{str(corpus)!r}], {str(out)!r}, dicompack.PackOptions({deid}progress=progress, jobs=1))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    # A re-run sweeps the killed run's temporaries and succeeds.
    run_cli("pack", corpus, "-o", out, "-q", check=True)
    assert out.exists() and _leftovers(tmp_path) == []


def test_disk_full_on_output(corpus, tmp_path):
    """RLIMIT_FSIZE makes writes past 2 MB fail with EFBIG, as a full disk would."""
    out = tmp_path / "out.zip"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))

    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "pack", str(corpus), "-o", str(out), "-q"],
                          capture_output=True, preexec_fn=limit)
    assert proc.returncode == 12, proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert not out.exists() and _leftovers(tmp_path) == []


def test_stream_to_full_device_is_a_storage_error(corpus):
    with open("/dev/full", "wb", buffering=0) as full:
        with pytest.raises(dicompack.StorageError):
            dicompack.pack([corpus], full, dicompack.PackOptions(format="zip"))


def test_source_vanishing_during_copy(tmp_path):
    src = tmp_path / "src"
    synthetic.make_messy_tree(src, 50, rows=8, columns=8)
    victim = sorted(src.rglob("*"))[-1]
    out = tmp_path / "out"

    def progress(event):
        if event.stage == "copy" and victim.exists():
            victim.unlink()

    with pytest.raises(dicompack.StorageError) as err:
        dicompack.pack([src], out, dicompack.PackOptions(progress=progress))
    assert str(victim) in str(err.value)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_cancel_from_callback(corpus, tmp_path):
    out = tmp_path / "out.zip"
    with pytest.raises(dicompack.OperationCancelledError):
        dicompack.pack([corpus], out, dicompack.PackOptions(progress=lambda e: e.stage != "zip"))
    assert not out.exists() and _leftovers(tmp_path) == []


def test_staged_files_move_but_inputs_stay(example_corpus, tmp_path):
    """The transform stage renames its own staged files into the File-set;
    inputs it keeps as they are (SR, KOS, PR under --j2k) are copied, never
    moved, and no staging folder is left anywhere."""
    import hashlib
    import tempfile
    src, _ = example_corpus
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}
    temp_before = {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("dicompack-stage-")}
    out = tmp_path / "out"
    report = dicompack.pack([src], out, dicompack.PackOptions(j2k=J2KOptions("lossless")))
    assert report.stages["j2k"]["encoded_instances"] and report.stages["j2k"]["kept"]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    assert _leftovers(tmp_path) == []
    assert {p.name for p in Path(tempfile.gettempdir()).iterdir()
            if p.name.startswith("dicompack-stage-")} == temp_before
    assert dicompack.check(out).ok


def test_copy_instance_moves_only_owned_files(tmp_path):
    from dicompack.fileset.files import copy_instance
    from dicompack.scan import scan_file
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1")
    mine, theirs = (synthetic.write_file(ds, tmp_path / name) for name in ("staged", "input"))
    owned, given = scan_file(str(mine)), scan_file(str(theirs))
    owned.owned = True
    copy_instance(owned, tmp_path / "A")
    copy_instance(given, tmp_path / "B")
    assert not mine.exists() and (tmp_path / "A").exists()
    assert theirs.exists() and (tmp_path / "B").read_bytes() == theirs.read_bytes()
