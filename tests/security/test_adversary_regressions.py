"""Regressions for the adversarial review (/tmp/helpers/adversary.md):

F1  `reidentify` of a plain folder bypassed the receive policy; a payload
    could restore whole sequences carrying Pixel Data or graphics.
F6  SIGKILL during `unpack` left the decrypted File-set beside the
    destination, where only a later run into the same folder swept it.
F9  private staging paths in messages and reports; staging in the folder a
    symlinked destination points into.
F10 library code changed the process-wide warning filters.
F13 SIGTERM after the final rename: the process died by the signal although
    the destination was replaced.

Everything runs the real CLI (subprocess) and real signals.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicompack import output
from dicompack.deid import reid
from dicompack.fileset.records import text as records
from dicompack.receiving.unpack import require_parent
from tests.security.test_reid import _gcm, _instances, _payload, _set_blob, _sop_uid
from tests.support import synthetic
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import run_cli

ROOT = "1.2.826.0.1.3680043.2.778.9"
ROWS: list[tuple] = []


def keys(pki: Path) -> list:
    return ["--key", pki / "recip.key", "--cert", pki / "recip.pem", "--trust", pki / "ca.pem"]


def signed(pki: Path) -> list:
    return ["--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key", "--sign-cert", pki / "signer.pem"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("advsrc")
    for n in range(1, 25):
        ds = synthetic.make_instance(study_uid=f"{ROOT}.1", series_uid=f"{ROOT}.1.1", sop_uid=f"{ROOT}.1.1.{n}",
                                     patient_name="Doe^Jane", patient_id="SECRET-ID", instance_number=n,
                                     rows=64, columns=64)
        ds.save_as(src / f"i{n}.dcm", enforce_file_format=True)
    return src


@pytest.fixture(scope="module")
def deid_folder(source, pki, tmp_path_factory) -> Path:
    """De-identified plain File-set; payloads sealed for the (public) recipient certificate."""
    out = tmp_path_factory.mktemp("advdeid") / "fs"
    run_cli("pack", source, "-o", out, "--deidentify", "--reid-recipient", pki / "recip.pem", "-q", check=True)
    return out


@pytest.fixture(scope="module")
def secure_package(source, pki, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("advpkg") / "study.p7m"
    run_cli("pack", source, "-o", out, *signed(pki), "-q", check=True)
    return out


def _row(label: str, proc) -> None:
    ROWS.append((label, proc.returncode, round(proc.peak_rss_mb, 1)))
    assert proc.peak_rss_mb < HOSTILE_RSS_LIMIT_MB


# ------------------------------------------------------------------ F1: reidentify under the receive policy

def test_reidentify_plain_folder_with_keys_refused(deid_folder, pki, tmp_path):
    """An outsider reseals an instance's payload with the public certificate
    (attacker-chosen identity) in a plain folder: with --key/--trust the
    folder is refused like `verify` refuses it (exit 9), nothing restored."""
    case = tmp_path / "evil"
    shutil.copytree(deid_folder, case)
    first = _instances(case)[0]
    forged = Dataset()
    forged.PatientName, forged.PatientID = "ATTACKER^CHOSEN", "EVIL-0001"
    _set_blob(first, _gcm(_payload(forged, bound=_sop_uid(first)), pki / "recip.pem"))
    out = tmp_path / "restored"
    proc = run_cli_measured("reidentify", case, "-o", out, *keys(pki))
    _row("reidentify forged plain folder, --key --trust", proc)
    assert proc.returncode == 9, proc.stderr
    assert b"--allow-plain" in proc.stderr and not out.exists()


def test_reidentify_plain_folder_allow_plain_named_in_report(deid_folder, pki, tmp_path):
    out = tmp_path / "restored"
    proc = run_cli("reidentify", deid_folder, "-o", out, "--key", pki / "recip.key", "--cert", pki / "recip.pem",
                   "--allow-plain", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "--allow-plain" in json.loads(proc.stdout)["stages"]["receive"]["relaxed"]
    assert {str(pydicom.dcmread(p).PatientName) for p in _instances(out)} == {"Doe^Jane"}


def test_reidentify_secure_dicom_files_folder(source, pki, tmp_path):
    """A folder of Secure DICOM Files is verified and decrypted like by
    `unpack` (it used to be scanned as if it were plain and found empty)."""
    deid = tmp_path / "deid"
    run_cli("pack", source, "-o", deid, "--deidentify", "--reid-recipient", pki / "recip.pem", "-q", check=True)
    secure = tmp_path / "secure"
    run_cli("pack", deid, "-o", secure, "--per-file", *signed(pki), "-q", check=True)
    out = tmp_path / "restored"
    proc = run_cli("reidentify", secure, "-o", out, *keys(pki))
    assert proc.returncode == 0, proc.stderr
    assert {str(pydicom.dcmread(p).PatientName) for p in _instances(out)} == {"Doe^Jane"}


def _sq(tag: int, *items: Dataset):
    return pydicom.DataElement(tag, "SQ", Sequence(list(items)))


def _icon() -> Dataset:
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 4, 4, 1
    icon.PhotometricInterpretation, icon.BitsAllocated, icon.BitsStored = "MONOCHROME2", 8, 8
    icon.HighBit, icon.PixelRepresentation, icon.PixelData = 7, 0, b"\xff" * 16
    return icon


def _graphic() -> Dataset:
    layer = Dataset()
    layer.GraphicLayer = "EVIL"
    text = Dataset()
    text.UnformattedTextValue = "forged annotation"
    layer.TextObjectSequence = Sequence([text])
    return layer


def _other_ids() -> Dataset:
    item = Dataset()
    item.PatientID, item.IssuerOfPatientID = "OLD-ID", "HOSPITAL"
    return item


def _private_with_pixels() -> Dataset:
    item = Dataset()
    item.PixelData = b"\x00" * 16
    return item


@pytest.mark.parametrize("label, element, allowed", [
    ("Icon Image Sequence with its own Pixel Data", lambda: _sq(0x00880200, _icon()), False),
    ("Graphic Annotation Sequence (draws on the image)", lambda: _sq(0x00700001, _graphic()), False),
    ("private sequence holding Pixel Data", lambda: _sq(0x00091010, _private_with_pixels()), False),
    ("Pixel Data nested two sequences deep", lambda: _sq(0x00101002, Dataset.from_json(
        {"00400275": {"vr": "SQ", "Value": [{"7FE00010": {"vr": "OB", "InlineBinary": "AAAA"}}]}})), False),
    ("Other Patient IDs Sequence (identity)", lambda: _sq(0x00101002, _other_ids()), True),
])
def test_restorable_checks_items_of_wholesale_sequences(label, element, allowed):
    """The "never" rules hold inside items of sequences de-identification
    replaces as a whole: a forged payload cannot bring pixels or graphics."""
    elem = element()
    assert reid.restorable(int(elem.tag), elem, None) is allowed, label


def test_reidentify_forged_icon_payload_refused_even_with_allow_plain(deid_folder, pki, tmp_path):
    case = tmp_path / "evil"
    shutil.copytree(deid_folder, case)
    first = _instances(case)[0]
    forged = Dataset()
    forged.PatientName = "ATTACKER^CHOSEN"
    forged.IconImageSequence = Sequence([_icon()])
    _set_blob(first, _gcm(_payload(forged, bound=_sop_uid(first)), pki / "recip.pem"))
    out = tmp_path / "restored"
    proc = run_cli_measured("reidentify", case, "-o", out, "--key", pki / "recip.key", "--cert",
                            pki / "recip.pem", "--allow-plain")
    _row("reidentify forged Icon Image Sequence payload, --allow-plain", proc)
    assert proc.returncode == 7 and b"IconImageSequence" in proc.stderr and not out.exists()


# ------------------------------------------------------------------ F6: SIGKILL, then any command sweeps

def _env(tmpdir: Path) -> dict:
    return dict(os.environ, TMPDIR=str(tmpdir))


def _kill_while_staging(cmd: list, parent: Path, env: dict) -> list[Path]:
    """Start ``cmd``, SIGKILL it as soon as its staging folder in ``parent``
    holds extracted plaintext; return what it left there."""
    for _ in range(6):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            staged = [p for p in parent.iterdir() if output.TMP_MARK in p.name and (p / "fileset").exists()]
            if staged:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                left = [p for p in parent.iterdir() if output.TMP_MARK in p.name]
                if left:
                    return left
            time.sleep(0.001)
        proc.wait()
        for p in parent.iterdir():
            shutil.rmtree(p, ignore_errors=True)
    pytest.fail("never caught unpack while it was staging")


def test_sigkill_during_unpack_swept_by_next_command_anywhere(secure_package, pki, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    cmd = [sys.executable, "-m", "dicompack.cli", "unpack", str(secure_package), "-o", str(incoming / "study"),
           "-q", *map(str, keys(pki))]
    left = _kill_while_staging(cmd, incoming, _env(tmpdir))
    assert any(list(p.rglob("DICOMDIR")) for p in left)      # decrypted plaintext was left there
    # The next run of any command, elsewhere, removes it (and the marker).
    other = tmp_path / "other"
    other.mkdir()
    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "ls", str(other)], capture_output=True,
                          env=_env(tmpdir))
    assert proc.returncode != 0          # an empty folder is no File-set: the sweep ran anyway
    assert not [p for p in incoming.iterdir()], list(incoming.iterdir())
    assert not [p for p in tmpdir.iterdir() if output.TMP_MARK in p.name]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_marker_cannot_be_turned_against_other_folders(tmp_path):
    """A marker only removes a folder carrying our mark and the dead run's PID."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    pid = _dead_pid()
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "keep").write_text("data")
    other_pid = tmp_path / f".x{output.TMP_MARK}{os.getpid()}-abc"     # a live PID's folder
    other_pid.mkdir()
    link = tmp_path / f".y{output.TMP_MARK}{pid}-lnk"
    link.symlink_to(victim)
    for n, target in enumerate((victim, other_pid, link)):
        (tmpdir / f".dicompack-staged{output.TMP_MARK}{pid}-{n}").write_bytes(os.fsencode(target))
    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "ls", str(tmp_path / "nothing")],
                          capture_output=True, env=_env(tmpdir))
    assert proc.returncode == 2
    assert (victim / "keep").read_text() == "data" and other_pid.is_dir() and link.is_symlink()
    assert not list(tmpdir.iterdir())


# ------------------------------------------------------------------ F9: no private paths; staging where named

def test_require_parent_does_not_follow_a_symlinked_destination(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "target"
    elsewhere.mkdir(parents=True)
    link = tmp_path / "here" / "study"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    assert require_parent(link) == link.parent.absolute()


def test_force_over_symlink_replaces_the_link_not_its_target(secure_package, pki, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("data")
    link = tmp_path / "study"
    link.symlink_to(target)
    proc = run_cli("unpack", secure_package, "-o", link, "--force", *keys(pki))
    assert proc.returncode == 0, proc.stderr
    assert (link / "DICOMDIR").is_file() and not link.is_symlink()
    assert [p.name for p in target.iterdir()] == ["keep"]


def test_force_over_existing_file(secure_package, pki, tmp_path):
    dest = tmp_path / "study"
    dest.write_text("old")
    proc = run_cli("unpack", secure_package, "-o", dest, "--force", *keys(pki))
    assert proc.returncode == 0, proc.stderr
    assert (dest / "DICOMDIR").is_file()
    assert output.TMP_MARK not in proc.stderr.decode()


def test_replace_errors_name_the_destination(tmp_path):
    missing = tmp_path / f".x{output.TMP_MARK}1-gone"
    with pytest.raises(OSError) as info:
        output._replace(missing, tmp_path / "dest")
    assert info.value.filename == str(tmp_path / "dest") and output.TMP_MARK not in str(info.value)


def test_rebuild_reports_entries_by_package_name(source, tmp_path):
    package = tmp_path / "foreign.zip"
    with zipfile.ZipFile(package, "w") as z:
        for f in sorted(source.iterdir())[:3]:
            z.write(f, f"scans/{f.name}")
        z.writestr("scans/notes.txt", "not DICOM")
    proc = run_cli("unpack", package, "-o", tmp_path / "out", "--rebuild", "--json")
    assert proc.returncode == 0, proc.stderr
    skipped = json.loads(proc.stdout)["verify"]["pack"]["skipped"]
    assert [s["path"] for s in skipped] == [f"{package}: scans/notes.txt"]
    assert output.TMP_MARK not in proc.stdout.decode()


# ------------------------------------------------------------------ F10: warning filters untouched

def test_library_calls_leave_warning_filters_alone(deid_folder, pki, tmp_path):
    """records and deid.reid run in the caller's thread: they may not swap
    ``warnings.filters`` (catch_warnings), even for an instant."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    key = load_pem_private_key((pki / "recip.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((pki / "recip.pem").read_bytes())
    instance = _instances(deid_folder)[0]
    before = warnings.filters
    snapshot = list(before)
    seen: set[int] = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.add(id(warnings.filters))

    def work(n: int):
        for i in range(3000):
            records._encodings(b"ISO IR 100")
            records._clip_text("Müller^".encode("latin-1") * 40, b"PN", b"ISO_IR 100")
            if i % 1000 == 0:
                reid.restore_file(instance, tmp_path / f"out{n}-{i}", key=key, cert=cert, where="x")

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    stop.set()
    watcher.join()
    assert warnings.filters is before and warnings.filters == snapshot
    assert seen == {id(before)}


# ------------------------------------------------------------------ F13: SIGTERM after the final rename

def test_sigterm_after_restore_exits_zero_with_report(secure_package, pki, tmp_path):
    """Once the destination is replaced, a SIGTERM no longer cancels: the
    report is printed and the exit code is 0."""
    for attempt in range(3):
        dest = tmp_path / f"study{attempt}"
        dest.mkdir()
        (dest / "OLD").write_text("old")
        proc = subprocess.Popen([sys.executable, "-m", "dicompack.cli", "unpack", str(secure_package), "-o",
                                 str(dest), "--force", *map(str, keys(pki))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not (dest / "DICOMDIR").exists() and proc.poll() is None and time.monotonic() < deadline:
            pass
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate()
        assert (dest / "DICOMDIR").exists() and not (dest / "OLD").exists()
        assert proc.returncode == 0, (proc.returncode, err)
        assert b"restored" in out
