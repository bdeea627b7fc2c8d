"""--split: volumes that each stand alone, merged back by unpack."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import synthetic
from tests.support.tools import run_cli


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    src = root / "src"
    synthetic.make_conformant_tree(src, 120, rows=64, columns=64, patients=3, series_per_patient=4)
    proc = run_cli("pack", src, "-o", root / "study.zip", "--split", "300K", "--json", check=True)
    return root, src, json.loads(proc.stdout)


def test_each_volume_is_a_complete_fileset(volumes):
    root, _, report = volumes
    names = [Path(v).name for v in report["volumes"]]
    n = len(names)
    assert n >= 3 and names == [f"study-{i}of{n}.zip" for i in range(1, n + 1)]
    uids = set()
    for v in report["volumes"]:
        assert Path(v).stat().st_size <= 300 * 1024
        proc = run_cli("verify", v, "--json")
        result = json.loads(proc.stdout)
        assert proc.returncode == 0 and result["ok"]
        uids.add(result["package_uid"])
    assert len(uids) == 1


def test_series_are_not_split(volumes):
    _, _, report = volumes
    seen: dict[str, str] = {}
    for v in report["volumes"]:
        listing = json.loads(run_cli("ls", v, "--json", check=True).stdout)
        for p in listing["patients"]:
            for st in p["studies"]:
                for se in st["series"]:
                    assert se["series_uid"] not in seen, "series split across volumes"
                    seen[se["series_uid"]] = v
    assert sum(1 for _ in seen) == 12


def test_unpack_merges_volumes(volumes, tmp_path):
    root, src, report = volumes
    out = tmp_path / "merged"
    run_cli("unpack", *report["volumes"], "-o", out, check=True)
    checked = json.loads(run_cli("check", out, "--json").stdout)
    assert checked["ok"] and checked["files"] == 120


def test_missing_or_foreign_volume_is_refused(volumes, tmp_path):
    root, src, report = volumes
    proc = run_cli("unpack", *report["volumes"][:-1], "-o", tmp_path / "out")
    assert proc.returncode == 4 and b"missing volume" in proc.stderr
    other = tmp_path / "other.zip"
    synthetic.make_conformant_tree(tmp_path / "o", 3, seed=7)
    run_cli("pack", tmp_path / "o", "-o", other, check=True)
    proc = run_cli("unpack", report["volumes"][0], other, "-o", tmp_path / "out")
    assert proc.returncode == 4 and b"another package" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_split_folders(tmp_path):
    src = tmp_path / "src"
    synthetic.make_conformant_tree(src, 40, rows=64, columns=64, patients=2)
    report = json.loads(run_cli("pack", src, "-o", tmp_path / "cd", "--split", "150K", "--json", check=True).stdout)
    assert len(report["volumes"]) >= 2
    for v in report["volumes"]:
        assert json.loads(run_cli("check", v, "--json").stdout)["ok"]
        assert (Path(v) / "DICOMPACK.JSON").is_file()
