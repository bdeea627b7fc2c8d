"""The whole pipeline on real files from public test suites (issue 13):
every DICOMDIR we write is accepted by dciodvfy, dcmdump, pydicom's FileSet
and our own check, whatever the input; bad instances are left out with one
line each under --skip-invalid; no traceback or library warning reaches the
user; sources are never modified."""
from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import pytest

from tests.realworld import corpus
from tests.support.tools import dciodvfy_errors, require_tool, run_cli

pytestmark = pytest.mark.realworld

RUNS = {
    "plain": [],
    "j2k lossless": ["--j2k", "lossless"],
    "deidentify": ["--deidentify", "--burned-in", "keep", "--deid-key-file"],
}


@pytest.fixture(scope="session")
def deid_key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("deidkey") / "key"
    key.write_bytes(b"realworld corpus pseudonym key 0123456789")
    return key


class Runs:
    """Each run of `pack --skip-invalid` over the whole corpus, made once on
    first use; a failed run fails the tests that need it, not the others."""

    def __init__(self, base: Path, deid_key: Path):
        self.base, self.deid_key = base, deid_key
        self.roots = list(corpus.sources().values())
        self.done: dict[str, tuple[Path, dict]] = {}

    def __getitem__(self, label: str) -> tuple[Path, dict]:
        if label not in self.done:
            args = RUNS[label] + ([self.deid_key] if label == "deidentify" else [])
            dest = self.base / label.replace(" ", "-")
            proc = run_cli("pack", *self.roots, "-o", dest, "--skip-invalid", "--json", "-q", *args)
            err = proc.stderr.decode()
            if proc.returncode != 0 or "Traceback" in err or "Warning" in err:
                pytest.fail(f"pack {label} exit {proc.returncode}: {err[:2000]}")
            self.done[label] = (dest, json.loads(proc.stdout))
        return self.done[label]

    def summary(self) -> str:
        files_in = sum(1 for r in self.roots for p in Path(r).rglob("*") if p.is_file())
        rows = [row for label, (_, rep) in self.done.items() for row in corpus.summary_rows(label, rep, files_in)]
        return "\n".join(" | ".join(map(str, r)) for r in rows)


@pytest.fixture(scope="session")
def packed(tmp_path_factory, deid_key):
    roots = list(corpus.sources().values())
    before = {str(r): corpus.tree_digest(r) for r in roots}
    runs = Runs(tmp_path_factory.mktemp("rw"), deid_key)
    yield runs
    print("\nreal-world corpus (run | files in | packed | left out | reason | count):\n" + runs.summary())
    assert {str(r): corpus.tree_digest(r) for r in roots} == before, "a source file was modified"


@pytest.mark.parametrize("label", list(RUNS))
def test_our_check_accepts_the_dicomdir(packed, label):
    dest, _ = packed[label]
    proc = run_cli("check", dest, "--json")
    findings = [f for f in json.loads(proc.stdout)["findings"] if f["severity"] == "error"]
    assert proc.returncode == 0 and not findings, findings[:5]


@pytest.mark.parametrize("label", list(RUNS))
def test_dciodvfy_accepts_the_dicomdir(packed, label):
    dest, _ = packed[label]
    assert dciodvfy_errors(dest / "DICOMDIR") == []


@pytest.mark.parametrize("label", list(RUNS))
def test_pydicom_fileset_loads_it(packed, label):
    from pydicom.fileset import FileSet
    dest, report = packed[label]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs = FileSet(dest / "DICOMDIR")
    assert len(fs) == report["instances"] > 100


@pytest.mark.parametrize("label", list(RUNS))
def test_dcmdump_parses_the_dicomdir(packed, label):
    dest, _ = packed[label]
    proc = subprocess.run([require_tool("dcmdump"), "-q", str(dest / "DICOMDIR")], capture_output=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode()[:500]


@pytest.mark.parametrize("label", list(RUNS))
def test_every_left_out_file_has_one_line_naming_it(packed, label):
    _, report = packed[label]
    for problem in report["invalid"]:
        assert Path(problem["path"]).exists(), problem
        assert problem["reason"] and "\n" not in problem["reason"], problem


def test_instances_without_study_or_series_uid_are_not_merged(packed):
    _, report = packed["plain"]
    assert not any("Study Instance UID" in p["reason"] and "merged" in p["reason"] for p in report["invalid"])
