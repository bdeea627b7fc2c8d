"""Receive policy and receiving attacks, through the real CLI.

Attacks a reviewer reproduced: forged/extra plaintext and symlinks in a
folder of Secure DICOM Files; downgrade to a plain ZIP (alone or as one
volume of a signed split set); extra sources ignored by unpack; conflicting
instances dropped silently when merging; --force deleting the old
destination before the new one is in place."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.support import synthetic
from tests.support.secure import plain_volume_zip
from tests.support.secure import receiver_keys as _keys
from tests.support.secure import run_hostile as _hostile
from tests.support.secure import seal_options as _seal
from tests.support.tools import require_tool, run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("corpus") / "src"
    synthetic.make_conformant_tree(src, 12, patients=3, series_per_patient=2)
    return src


def _openssl_open(pki: Path, path: Path) -> bytes:
    """Decrypt and verify with the real openssl: the plaintext a receiver sees."""
    openssl = require_tool("openssl")
    inner = subprocess.run([openssl, "cms", "-decrypt", "-inform", "DER", "-in", str(path), "-recip",
                            str(pki / "recip.pem"), "-inkey", str(pki / "recip.key"), "-binary"],
                           capture_output=True, check=True).stdout
    return subprocess.run([openssl, "cms", "-verify", "-inform", "DER", "-binary", "-CAfile",
                           str(pki / "ca.pem")], input=inner, capture_output=True, check=True).stdout


def _nothing_left(folder: Path, *expected: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


# ---------------------------------------------------------------- folders of Secure DICOM Files

@pytest.fixture(scope="module")
def per_file(pki, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("perfile") / "secure-cd"
    run_cli("pack", corpus, "-o", out, "--per-file", *_seal(pki), "-q", check=True)
    return out


@pytest.fixture
def work(tmp_path) -> Path:
    (tmp_path / "w").mkdir()
    return tmp_path / "w"


def _copy(per_file: Path, work: Path) -> Path:
    folder = work / "cd"
    shutil.copytree(per_file, folder)
    return folder


def test_per_file_round_trip_still_works(pki, per_file, work):
    out = work / "restored"
    proc = run_cli("unpack", per_file, "-o", out, *_keys(pki), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["policy"] == {"require_encrypted": True, "require_signed": True, "relaxed": []}
    assert report["verify"]["secure"]["signed"] and report["unverified"] == [] and report["files"] == 12
    assert json.loads(run_cli("check", out, "--json").stdout)["ok"]


def test_forged_plaintext_instance_is_refused(pki, per_file, work):
    """A Secure DICOM File replaced by plaintext with the same UIDs and
    another patient name."""
    folder = _copy(per_file, work)
    victim = folder / "PA000001" / "ST000001" / "SE000001" / "IM000001"
    plain = work / "plain.dcm"
    plain.write_bytes(_openssl_open(pki, victim))
    ds = dcmread(plain)
    ds.PatientName = "FORGED^PATIENT"
    ds.save_as(victim, enforce_file_format=True)
    out = work / "out"
    for command in (["unpack", folder, "-o", out], ["verify", folder, "--json"]):
        code, err, report = _hostile(*command, *_keys(pki))
        assert code == 5, (command, err)
        assert "PA000001/ST000001/SE000001/IM000001" in err + json.dumps(report)
    assert not out.exists()
    _nothing_left(work, "cd", "plain.dcm")


def test_extra_plaintext_instance_is_refused(pki, per_file, corpus, work):
    folder = _copy(per_file, work)
    shutil.copyfile(next(corpus.rglob("IM000001")), folder / "PA000001" / "EXTRA")
    code, err, _ = _hostile("unpack", folder, "-o", work / "out", *_keys(pki))
    assert code == 5 and "PA000001/EXTRA" in err and "not referenced" in err
    assert not (work / "out").exists()


def test_extra_verified_file_not_in_the_dicomdir_is_refused(pki, per_file, work):
    """A genuine Secure DICOM File moved in under a name the DICOMDIR does not reference."""
    folder = _copy(per_file, work)
    shutil.copyfile(folder / "PA000001" / "ST000001" / "SE000001" / "IM000001",
                    folder / "PA000001" / "ST000001" / "SE000001" / "IM000099")
    code, err, _ = _hostile("unpack", folder, "-o", work / "out", *_keys(pki))
    assert code == 5 and "IM000099" in err


@pytest.mark.parametrize("where", ["PA000001/SECRET", "DICOMDIR"])
def test_symlink_is_refused(pki, per_file, work, where):
    folder = _copy(per_file, work)
    secret = work / "secret.txt"
    secret.write_text("local secret\n")
    link = folder / where
    if where == "DICOMDIR":    # the DICOMDIR itself swapped for a link to a genuine one
        shutil.move(str(link), str(work / "real-dicomdir"))
        secret = work / "real-dicomdir"
    link.symlink_to(secret)
    out = work / "out"
    code, err, _ = _hostile("unpack", folder, "-o", out, *_keys(pki))
    # A DICOMDIR link makes the folder not a secure one: a plain folder with keys given.
    assert code == (5 if where != "DICOMDIR" else 9), err
    assert (where in err) if where != "DICOMDIR" else ("--allow-plain" in err)
    assert not out.exists()
    code, err, _ = _hostile("verify", folder, *_keys(pki))
    assert code in (5, 9), err


def test_fifo_is_refused(pki, per_file, work):
    folder = _copy(per_file, work)
    os.mkfifo(folder / "PA000001" / "PIPE")
    code, err, _ = _hostile("unpack", folder, "-o", work / "out", *_keys(pki))
    assert code == 5 and "PA000001/PIPE" in err and "special file" in err


def test_plain_descriptor_is_restored_and_named_unverified(pki, corpus, work):
    readme = work / "readme.txt"
    readme.write_text("Study for Dr. Smith\n")
    folder = work / "cd"
    run_cli("pack", corpus, "-o", folder, "--per-file", *_seal(pki), "--fileset-descriptor", readme, "-q",
            check=True)
    assert (folder / "README").read_bytes() == readme.read_bytes()    # PS3.10 does not secure it
    proc = run_cli("unpack", folder, "-o", work / "out", *_keys(pki), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["unverified"] == ["README"]
    assert (work / "out" / "README").read_bytes() == readme.read_bytes()
    assert b"unverified (no signature covers it): README" in run_cli("verify", folder, *_keys(pki)).stdout
    (folder / "README").write_bytes(b"x" * (64 * 1024 + 1))
    code, err, _ = _hostile("unpack", folder, "-o", work / "out2", *_keys(pki))
    assert code == 5 and "README" in err and not (work / "out2").exists()


# ---------------------------------------------------------------- downgrade to plain

@pytest.fixture(scope="module")
def plain_zip(corpus, tmp_path_factory) -> Path:
    """What an outsider makes: a plain ZIP (consistent manifest) named .p7m."""
    out = tmp_path_factory.mktemp("plain") / "study.zip"
    run_cli("pack", corpus, "-o", out, "-q", check=True)
    return out.rename(out.with_suffix(".p7m"))


@pytest.mark.parametrize("keys", ["cert", "password", "trust-only"])
def test_plain_zip_is_refused_when_keys_are_given(pki, plain_zip, work, keys):
    given = {"cert": _keys(pki), "password": ["--password-file", pki / "pw.txt", "--trust", pki / "ca.pem"],
             "trust-only": ["--trust", pki / "ca.pem"]}[keys]
    code, err, _ = _hostile("verify", plain_zip, *given)
    assert code == 9 and "--allow-plain" in err and str(plain_zip) in err
    out = work / "out"
    code, err, report = _hostile("unpack", plain_zip, "-o", out, *given, "--json")
    assert code == 9 and report["error"] == "UnsignedPackageError"
    assert not out.exists()
    _nothing_left(work)


def test_allow_plain_accepts_and_is_named(pki, plain_zip, work):
    proc = run_cli("unpack", plain_zip, "-o", work / "out", *_keys(pki), "--allow-plain", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["policy"] == {"require_encrypted": False, "require_signed": True, "relaxed": ["--allow-plain"]}
    proc = run_cli("verify", plain_zip, *_keys(pki), "--allow-plain", "--allow-unsigned")
    assert proc.returncode == 0 and b"policy relaxed: --allow-plain, --allow-unsigned" in proc.stdout


def test_plain_zip_without_keys_behaves_as_before(plain_zip, work):
    proc = run_cli("verify", plain_zip, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["kind"] == "zip"
    assert report["policy"] == {"require_encrypted": False, "require_signed": False, "relaxed": []}


@pytest.fixture(scope="module")
def secure_volumes(pki, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("secsplit")
    synthetic.make_conformant_tree(root / "src", 24, rows=64, columns=64, patients=3, series_per_patient=2)
    report = json.loads(run_cli("pack", root / "src", "-o", root / "study.p7m", "--split", "80K", *_seal(pki),
                                "--json", check=True).stdout)
    assert len(report["volumes"]) >= 2
    return [Path(v) for v in report["volumes"]]


def test_plain_volume_in_a_signed_split_set_is_refused(pki, secure_volumes, work):
    volumes = [work / v.name for v in secure_volumes]
    for v, copy in zip(secure_volumes, volumes):
        shutil.copyfile(v, copy)
    assert run_cli("unpack", *volumes, "-o", work / "ok", *_keys(pki)).returncode == 0
    volumes[-1].write_bytes(_openssl_open(pki, volumes[-1]))       # the same volume, decrypted
    code, err, _ = _hostile("unpack", *volumes, "-o", work / "out", *_keys(pki))
    assert code == 9 and volumes[-1].name in err and "--allow-plain" in err
    assert not (work / "out").exists()


# ---------------------------------------------------------------- several sources

@pytest.fixture(scope="module")
def per_file_volumes(pki, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("pfsplit")
    synthetic.make_conformant_tree(root / "src", 24, rows=64, columns=64, patients=3, series_per_patient=2)
    report = json.loads(run_cli("pack", root / "src", "-o", root / "cd", "--split", "80K", "--per-file",
                                *_seal(pki), "--json", check=True).stdout)
    assert len(report["volumes"]) >= 2
    return [Path(v) for v in report["volumes"]]


def test_every_per_file_volume_is_used_and_verified(pki, per_file_volumes, work):
    proc = run_cli("unpack", *per_file_volumes, "-o", work / "all", *_keys(pki), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"] == 24
    last = work / "last"
    shutil.copytree(per_file_volumes[-1], last)
    victim = sorted(last.rglob("IM*"))[0]
    victim.write_bytes(b"\0" * 128 + b"DICM")                       # plaintext in the last volume
    code, err, _ = _hostile("unpack", *per_file_volumes[:-1], last, "-o", work / "out", *_keys(pki))
    assert code == 5 and victim.relative_to(last).as_posix() in err
    assert not (work / "out").exists()


def test_rebuild_uses_every_source(corpus, work):
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    halves = []
    for n, part in enumerate((files[:6], files[6:])):
        z = work / f"foreign{n}.zip"
        with zipfile.ZipFile(z, "w") as zf:
            for i, p in enumerate(part):
                zf.write(p, f"export/{n}-{i}.dcm")
        halves.append(z)
    proc = run_cli("unpack", *halves, "-o", work / "out", "--rebuild", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"] == 12


def test_rebuild_still_checks_a_dicompack_manifest(plain_zip, work):
    with zipfile.ZipFile(plain_zip) as zf:
        items = [(i, zf.read(i)) for i in zf.infolist()]
    forged = work / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        for info, data in items:
            if info.filename.endswith("IM000002"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            zf.writestr(info.filename, data)
    code, err, _ = _hostile("unpack", forged, "-o", work / "out", "--rebuild")
    assert code == 4 and "IM000002" in err and "SHA-256" in err
    assert not (work / "out").exists()


@pytest.mark.parametrize("same_bytes", [False, True])
def test_volumes_carrying_one_instance(corpus, work, same_bytes):
    files = sorted(p for p in corpus.rglob("IM*"))
    a, b = work / "a", work / "b"
    for folder, part in ((a, files[:6]), (b, files[6:])):
        for p in part:
            dest = folder / p.relative_to(corpus)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
    twin = b / files[0].relative_to(corpus)         # volume 2 carries volume 1's first instance too
    twin.parent.mkdir(parents=True, exist_ok=True)
    ds = dcmread(files[0])
    if not same_bytes:
        ds.PatientName = "OTHER^PATIENT"
    ds.save_as(twin, enforce_file_format=True)
    if same_bytes:
        shutil.copyfile(a / files[0].relative_to(corpus), twin)
    v1 = plain_volume_zip(a, work / "v-1of2.zip", package_uid="2.25.1", volume=(1, 2))
    v2 = plain_volume_zip(b, work / "v-2of2.zip", package_uid="2.25.1", volume=(2, 2))
    code, err, report = _hostile("unpack", v1, v2, "-o", work / "out", "--json")
    if same_bytes:
        assert code == 0 and report["files"] == 12
        assert len(report["verify"]["duplicates_collapsed"]) == 1
    else:
        assert code == 4 and report["error"] == "PackageInvalidError"
        assert "v-1of2.zip" in report["message"] + report["where"] and "v-2of2.zip" in report["where"]
        assert not (work / "out").exists()


# ---------------------------------------------------------------- --force

def _chattr(flag: str, path: Path) -> bool:
    tool = shutil.which("chattr")
    return bool(tool) and subprocess.run([tool, flag, str(path)], capture_output=True).returncode == 0


def test_force_swaps_before_deleting(plain_zip, work):
    """The old destination cannot be deleted (an immutable file in it): the
    new File-set must still be in place, nothing lost."""
    dest = work / "dest"
    (dest / "old").mkdir(parents=True)
    stuck = dest / "old" / "stuck"
    stuck.write_text("old data\n")
    if not _chattr("+i", stuck):
        pytest.skip("chattr +i not permitted here")
    try:
        proc = run_cli("unpack", plain_zip, "-o", dest, "--force")
        assert proc.returncode == 0, proc.stderr
        assert (dest / "DICOMDIR").is_file() and not (dest / "old").exists()
    finally:
        for leftover in work.rglob("stuck"):
            _chattr("-i", leftover)


def test_force_keeps_the_old_destination_when_verification_fails(pki, plain_zip, work):
    dest = work / "dest"
    dest.mkdir()
    (dest / "keep").write_text("old data\n")
    code, _, _ = _hostile("unpack", plain_zip, "-o", dest, "--force", *_keys(pki))
    assert code == 9 and (dest / "keep").read_text() == "old data\n"
    _nothing_left(work, "dest")


def test_volume_from_another_trusted_signer_is_refused(pki, secure_volumes, work):
    """Each volume verifies on its own (the other signer is trusted too),
    but a set comes from one signer."""
    src = secure_volumes[0].parent / "src"
    other = json.loads(run_cli("pack", src, "-o", work / "study.p7m", "--split", "80K", "--recipient",
                               pki / "recip.pem", "--sign-key", pki / "ecsigner.key", "--sign-cert",
                               pki / "ecsigner.pem", "--json", check=True).stdout)["volumes"]
    volumes = secure_volumes[:-1] + [Path(other[-1])]
    code, err, _ = _hostile("unpack", *volumes, "-o", work / "out", *_keys(pki))
    assert code == 8 and Path(other[-1]).name in err and "CN=ecsigner" in err
    assert not (work / "out").exists()
