"""Volume sets, rebuilds and what receive reports, through the real CLI.

Attacks a reviewer reproduced (adversary findings F2, F7, F8, F12):
volumes of two packings of one study merged into one "verified" restore;
one volume of a set restored alone (a man in the middle drops the rest);
--rebuild accepting any subset or mixture of volumes; a plain volume
joining a signed set under --allow-plain; a sender's manifest counting
instances the volumes do not hold; --rebuild of a folder of Secure DICOM
Files with files deleted; a key without --trust reported as tampering; a
plain ZIP reported as "verified"."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.support import synthetic
from tests.support.secure import plain_volume_zip
from tests.support.secure import receiver_keys as _keys
from tests.support.secure import run_hostile as _hostile
from tests.support.secure import seal_options as _seal
from tests.support.tools import run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("corpus") / "src"
    synthetic.make_conformant_tree(src, 24, rows=64, columns=64, patients=3, series_per_patient=2)
    return src


@pytest.fixture
def work(tmp_path) -> Path:
    (tmp_path / "w").mkdir()
    return tmp_path / "w"


def _split(pki: Path, corpus: Path, out: Path, *extra) -> list[Path]:
    report = json.loads(run_cli("pack", corpus, "-o", out, "--split", "80K", *extra, "--json",
                                check=True).stdout)
    assert len(report["volumes"]) >= 3
    return [Path(v) for v in report["volumes"]]


@pytest.fixture(scope="module")
def packings(pki, corpus, tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """The same study packed twice by the same signer, the same way."""
    root = tmp_path_factory.mktemp("packings")
    a = _split(pki, corpus, root / "a.p7m", *_seal(pki))
    b = _split(pki, corpus, root / "b.p7m", *_seal(pki))
    assert [v.name.split("-")[-1] for v in a] == [v.name.split("-")[-1] for v in b]
    return a, b


def test_every_packing_gets_its_own_package_uid(pki, packings):
    a, b = packings
    uids = {json.loads(run_cli("verify", v, *_keys(pki), "--json", check=True).stdout)["package_uid"]
            for v in (a[0], b[0], a[1])}
    assert len(uids) == 2


def test_volumes_of_two_packings_never_merge(pki, packings, work):
    a, b = packings
    assert run_cli("unpack", *a, "-o", work / "ok", *_keys(pki)).returncode == 0
    mixed = [a[0], b[1], *a[2:]]
    for extra in ([], ["--rebuild"]):
        code, err, _ = _hostile("unpack", *mixed, "-o", work / "out", *_keys(pki), *extra)
        assert code == 4 and b[1].name in err and "another package" in err, (extra, err)
        assert not (work / "out").exists()


@pytest.mark.parametrize("rebuild", [False, True])
def test_part_of_a_set_is_refused(pki, packings, work, rebuild):
    a, _ = packings
    extra = ["--rebuild"] if rebuild else []
    for given in ([a[0]], [a[0], a[2]]):
        code, err, _ = _hostile("unpack", *given, "-o", work / "out", *_keys(pki), *extra)
        assert code == 4 and "missing volume(s) 2" in err, (given, err)
        assert not (work / "out").exists()


def test_rebuild_refuses_a_set_plus_another_package(pki, packings, corpus, work):
    a, _ = packings
    single = work / "single.p7m"
    run_cli("pack", corpus, "-o", single, *_seal(pki), "-q", check=True)
    code, err, _ = _hostile("unpack", *a, single, "-o", work / "out", *_keys(pki), "--rebuild")
    assert code == 4 and "single.p7m" in err
    assert not (work / "out").exists()


def test_plain_volume_never_joins_a_signed_set(pki, packings, corpus, work):
    """Even with --allow-plain: it accepts a plain package, not a plain part
    of a secure one (the package UID is no secret to a partner in transit)."""
    a, _ = packings
    plain = _split(pki, corpus, work / "c.zip")
    uid = json.loads(run_cli("verify", a[0], *_keys(pki), "--json", check=True).stdout)["package_uid"]
    (work / "forged").mkdir()
    forged = _with_package_uid(plain[1], uid, work / "forged" / plain[1].name)
    code, err, _ = _hostile("unpack", a[0], forged, *a[2:], "-o", work / "out", *_keys(pki), "--allow-plain")
    assert code == 9 and forged.name in err and "plain volume" in err
    assert not (work / "out").exists()


def _with_package_uid(volume: Path, uid: str, out: Path) -> Path:
    """A plain volume whose manifest claims another package UID."""
    with zipfile.ZipFile(volume) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "DICOMPACK.JSON":
                doc = json.loads(data)
                doc["package_uid"] = uid
                data = json.dumps(doc).encode()
            dst.writestr(info.filename, data)
    return out


# ---------------------------------------------------------------- instance counts

def _subset(corpus: Path, files: list[Path], folder: Path) -> Path:
    for p in files:
        dest = folder / p.relative_to(corpus)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    return folder


def test_a_restore_never_drops_instances(corpus, work):
    """Two volumes that together hold 23 of the 24 instances their manifests
    promise (each volume's own count is consistent)."""
    files = sorted(p for p in corpus.rglob("IM*"))
    assert len(files) == 24
    halves = (files[:12], files[12:23])
    volumes = [plain_volume_zip(_subset(corpus, part, work / f"v{n}"), work / f"v-{n}of2.zip",
                                package_uid="2.25.7", volume=(n, 2),
                                summary={"instances": 24, "volume_instances": len(part)})
               for n, part in enumerate(halves, 1)]
    code, err, _ = _hostile("unpack", *volumes, "-o", work / "out")
    assert code == 4 and "24 instances" in err and "23" in err, err
    assert not (work / "out").exists()


def test_a_volume_holding_fewer_instances_than_its_manifest_counts(corpus, work):
    files = sorted(p for p in corpus.rglob("IM*"))
    single = plain_volume_zip(_subset(corpus, files[:-1], work / "v"), work / "one.zip", package_uid="2.25.8",
                              volume=(1, 1), summary={"instances": 24, "volume_instances": 24})
    for extra in ([], ["--rebuild"]):
        code, err, _ = _hostile("unpack", single, "-o", work / "out", *extra)
        assert code == 4 and "counts 24 instances" in err and "23" in err, (extra, err)
        assert not (work / "out").exists()


# ---------------------------------------------------------------- folders of Secure DICOM Files (F8)

def test_rebuild_of_a_secure_folder_with_files_dropped(pki, corpus, work):
    folder = work / "cd"
    run_cli("pack", corpus, "-o", folder, "--per-file", *_seal(pki), "-q", check=True)
    dropped = sorted(folder.rglob("IM*"))[:3]
    for p in dropped:
        p.unlink()
    for extra in (["--rebuild"], []):
        code, err, _ = _hostile("unpack", folder, "-o", work / "out", *_keys(pki), *extra)
        assert code == 4 and "referenced file does not exist" in err, (extra, err)
        assert dropped[0].relative_to(folder).as_posix() in err
        assert not (work / "out").exists()


# ---------------------------------------------------------------- keys without anchors (F7)

@pytest.fixture(scope="module")
def signed(pki, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("signed") / "study.p7m"
    run_cli("pack", corpus, "-o", out, *_seal(pki), "-q", check=True)
    return out


@pytest.mark.parametrize("command", ["verify", "unpack"])
def test_keys_without_trust_is_a_usage_error(pki, signed, work, command):
    out = ["-o", work / "out"] if command == "unpack" else []
    for given in (["--key", pki / "recip.key", "--cert", pki / "recip.pem"],
                  ["--password-file", pki / "pw.txt"]):
        code, err, _ = _hostile(command, signed, *out, *given)
        assert code == 2 and "no --trust anchors" in err and "--allow-unsigned" in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (work / "out").exists()


# ---------------------------------------------------------------- what the report says (F12)

@pytest.fixture(scope="module")
def plain_zip(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "study.zip"
    run_cli("pack", corpus, "-o", out, "-q", check=True)
    return out


def test_plain_zip_says_it_is_neither_encrypted_nor_signed(plain_zip, work):
    proc = run_cli("verify", plain_zip)
    assert proc.returncode == 0 and "OK (integrity only: not encrypted, not signed)" in proc.stdout.decode()
    assert json.loads(run_cli("verify", plain_zip, "--json").stdout)["protection"] == "none"
    proc = run_cli("unpack", plain_zip, "-o", work / "out")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "(integrity checked; not encrypted, not signed)" in out and "(verified)" not in out
    report = json.loads(run_cli("unpack", plain_zip, "-o", work / "out2", "--json").stdout)
    assert report["protection"] == "none"


def test_secure_package_reports_its_protection(pki, signed, work):
    proc = run_cli("verify", signed, *_keys(pki), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["protection"] == "encrypted+signed"
    proc = run_cli("unpack", signed, "-o", work / "out", *_keys(pki))
    assert proc.returncode == 0 and "(verified)" in proc.stdout.decode() and "not encrypted" not in proc.stdout.decode()
