"""Re-identification payloads under attack (the Encrypted Attributes
Sequence, PS3.3 C.12.1.1.4.1): a padding oracle on CBC payloads, payloads
forged by anyone holding the recipient's (public) certificate, payloads cut
from one instance and pasted into another, and malformed payloads of every
shape.  Everything goes through the real CLI; hostile CMS is made with the
real openssl where an outsider would use it."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicompack.container.cms import CertRecipient, envelope_bytes
from dicompack.deid import reid
from dicompack.errors import DicompackError
from tests.support import synthetic
from tests.support.pki import make_recipient
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import require_tool, run_cli

ROOT = "1.2.826.0.1.3680043.2.778"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
ROWS: list[tuple] = []          # input | exit | peak RSS MB | wall s, for the report


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("reidpki")
    cert, key = make_recipient(d / "reid")
    other_cert, other_key = make_recipient(d / "other")
    yield {"cert": cert, "key": key, "other_cert": other_cert, "other_key": other_key,
           "x509": x509.load_pem_x509_certificate(cert.read_bytes()),
           "private": load_pem_private_key(key.read_bytes(), None)}
    if os.environ.get("REID_ROWS"):
        Path(os.environ["REID_ROWS"]).write_text(json.dumps(ROWS, indent=1))


@pytest.fixture(scope="module")
def sealed(keys, tmp_path_factory) -> Path:
    """A de-identified File-set of two instances (one series) with
    re-identification payloads sealed for ``keys``."""
    src = tmp_path_factory.mktemp("reidsrc")
    for n in (1, 2):
        ds = synthetic.make_instance(study_uid=f"{ROOT}.1", series_uid=f"{ROOT}.1.1", sop_uid=f"{ROOT}.1.1.{n}",
                                     patient_name="Doe^Jane", patient_id="SECRET-ID", instance_number=n,
                                     rows=8, columns=8)
        ds.save_as(src / f"i{n}.dcm", enforce_file_format=True)
    out = tmp_path_factory.mktemp("reidpkg") / "fs"
    run_cli("pack", src, "-o", out, "--deidentify", "--reid-recipient", keys["cert"], "-q", check=True)
    return out


def _instances(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("IM*") if p.is_file())


def _copy(sealed: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the File-set and its first instance."""
    case = tmp_path / "case"
    shutil.copytree(sealed, case)
    return case, _instances(case)[0]


def _set_item(path: Path, mutate) -> None:
    """Rewrite the Encrypted Attributes Sequence of the instance at ``path``."""
    ds = pydicom.dcmread(path)
    mutate(ds)
    ds.save_as(path, enforce_file_format=True)


def _set_blob(path: Path, blob: bytes) -> None:
    def put(ds):
        ds.EncryptedAttributesSequence[0].EncryptedContent = blob
    _set_item(path, put)


def _blob(path: Path) -> bytes:
    return bytes(pydicom.dcmread(path).EncryptedAttributesSequence[0].EncryptedContent)


def _payload(originals: Dataset | list, *, added=(0,), bound: str | None, creator: bool = True) -> bytes:
    """A payload in the format ``seal`` writes (PS3.3 C.12.1.1.4.1 Modified
    Attributes Sequence, our private block with the added tags and the
    bound SOP Instance UID), as an outsider can make it."""
    payload = Dataset()
    payload.ModifiedAttributesSequence = Sequence(originals if isinstance(originals, list) else [originals])
    if creator:
        block = payload.private_block(0x0009, "DICOMPACK REID", create=True)
        block.add_new(0x01, "UL", list(added))
        if bound is not None:
            block.add_new(0x02, "UI", bound)
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, payload)
    return buf.getvalue()


def _openssl_envelope(plain: bytes, cert: Path, *args: str) -> bytes:
    """CMS made by the real openssl for the recipient's public certificate."""
    proc = subprocess.run([require_tool("openssl"), "cms", "-encrypt", "-binary", "-outform", "DER",
                           "-recip", str(cert), *args], input=plain, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _gcm(plain: bytes, cert: Path) -> bytes:
    return _openssl_envelope(plain, cert, "-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep",
                             "-keyopt", "rsa_oaep_md:sha256")


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _reidentify(name: str, case: Path, dest: Path, keys: dict, *, expect: int, cli: bool = True) -> str:
    """Run the real CLI on a hostile input; check the exit code, the
    one-line message, that nothing was written and the memory bound.  With
    ``cli=False`` the same through the library (``api.reidentify``), to keep
    the file fast: the CLI adds only its error printing, tested by the rest."""
    if not cli:
        return _reidentify_in_process(case, dest, keys, expect=expect)
    started = time.monotonic()
    proc = run_cli_measured("reidentify", case, "-o", dest, "--key", keys["key"], "--cert", keys["cert"],
                            "--allow-plain")
    wall = time.monotonic() - started
    stderr = proc.stderr.decode()
    ROWS.append((name, proc.returncode, round(proc.peak_rss_mb, 1), round(wall, 2)))
    assert proc.returncode == expect, (name, stderr)
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    assert proc.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
    if expect:
        assert len(stderr.splitlines()) == 1 and stderr.startswith("dicompack: "), stderr
        assert not dest.exists()
        assert ".dicompack" not in stderr and "/tmp/" not in stderr.replace(str(case), "")
    return stderr


def _reidentify_in_process(case: Path, dest: Path, keys: dict, *, expect: int) -> str:
    from dicompack import api
    options = api.ReceiveOptions(key=keys["private"], cert=keys["x509"], jobs=1, allow_plain=True)
    if not expect:
        api.reidentify(case, dest, options)
        return ""
    with pytest.raises(DicompackError) as info:
        api.reidentify(case, dest, options)
    assert info.value.exit_code == expect, str(info.value)
    assert not dest.exists()
    return f"dicompack: {info.value}"


# ------------------------------------------------------------------ round trip, format

def test_payload_is_auth_enveloped_data_openssl_reads(sealed, keys):
    """The payload is RFC 5083 AuthEnvelopedData with AES-256-GCM, which the
    real openssl opens; what it holds is bound to the instance."""
    path = _instances(sealed)[0]
    blob = _blob(path)
    dump = subprocess.run([require_tool("openssl"), "asn1parse", "-inform", "DER"], input=blob,
                          capture_output=True).stdout.decode()
    assert "id-smime-ct-authEnvelopedData" in dump and "aes-256-gcm" in dump.lower()
    plain = subprocess.run([require_tool("openssl"), "cms", "-decrypt", "-inform", "DER", "-binary",
                            "-inkey", keys["key"], "-recip", keys["cert"]], input=blob,
                           capture_output=True).stdout
    payload = pydicom.filereader.read_dataset(DicomBytesIO(plain), is_implicit_VR=False, is_little_endian=True)
    assert payload.private_block(0x0009, "DICOMPACK REID")[0x02].value == _sop_uid(path)
    assert payload.ModifiedAttributesSequence[0].PatientName == "Doe^Jane"


def test_genuine_round_trip(sealed, keys, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("reidentify", sealed, "-o", out, "--key", keys["key"], "--cert", keys["cert"], "--allow-plain")
    assert proc.returncode == 0, proc.stderr
    names = {str(pydicom.dcmread(p).PatientName) for p in _instances(out)}
    uids = {str(pydicom.dcmread(p).SOPInstanceUID) for p in _instances(out)}
    assert names == {"Doe^Jane"} and uids == {f"{ROOT}.1.1.1", f"{ROOT}.1.1.2"}


# ------------------------------------------------------------------ attack 1: padding oracle

def test_cbc_payload_refused_before_decryption_no_padding_oracle(sealed, keys, tmp_path):
    """EnvelopedData (AES-CBC, no integrity) is refused before anything is
    decrypted: good and bad padding give the same answer, exit 7."""
    case, path = _copy(sealed, tmp_path)
    originals = Dataset()
    originals.PatientName = "Forged^Name"
    cbc = _openssl_envelope(_payload(originals, bound=_sop_uid(path)), keys["cert"], "-aes256")
    answers = []
    flipped = cbc[:-40] + bytes([cbc[-40] ^ 0x80]) + cbc[-39:]
    for label, blob in [("CBC EnvelopedData, valid padding", cbc),
                        ("CBC EnvelopedData, last block flipped (bad padding)", cbc[:-1] + bytes([cbc[-1] ^ 1])),
                        ("CBC EnvelopedData, ciphertext byte flipped", flipped)]:
        _set_blob(path, blob)
        answers.append(_reidentify(label, case, tmp_path / "never", keys, expect=7))
    assert len(set(answers)) == 1 and "unauthenticated EnvelopedData" in answers[0]


def test_gcm_tampering_one_uniform_answer(sealed, keys, tmp_path):
    """Altered ciphertext, tag, parameters or framing after the key is
    recovered: one message, exit 7, whatever was altered."""
    case, path = _copy(sealed, tmp_path)
    genuine = _blob(path)
    answers = set()
    for label, blob, cli in [
            ("GCM ciphertext byte flipped", genuine[:-30] + bytes([genuine[-30] ^ 1]) + genuine[-29:], True),
            ("GCM tag byte flipped", genuine[:-1] + bytes([genuine[-1] ^ 1]), True),
            ("GCM blob truncated by 8 bytes", genuine[:-8], False),
            ("GCM blob with trailing bytes", genuine + b"\x00\x00", False)]:
        _set_blob(path, blob)
        stderr = _reidentify(label, case, tmp_path / "never", keys, expect=7, cli=cli)
        answers.add(stderr.strip())
    assert len(answers) == 1, answers


def test_pkcs1v15_key_transport_refused(sealed, keys, tmp_path):
    """openssl's default RSA PKCS#1 v1.5 key transport (a Bleichenbacher
    oracle where padding errors are reported) is refused for payloads."""
    case, path = _copy(sealed, tmp_path)
    originals = Dataset()
    originals.PatientName = "Forged^Name"
    _set_blob(path, _openssl_envelope(_payload(originals, bound=_sop_uid(path)), keys["cert"], "-aes-256-gcm"))
    stderr = _reidentify("AuthEnvelopedData with PKCS#1 v1.5 key transport", case, tmp_path / "never", keys,
                         expect=4)
    assert "PKCS#1 v1.5" in stderr


# ------------------------------------------------------------------ attack 2: forged originals

def _forged(label: str, originals: Dataset, sealed: Path, keys: dict, tmp_path: Path, *, expect: int,
            added=(0,), bound: str | None = "current", cli: bool = True) -> str:
    case, path = _copy(sealed, tmp_path / label.replace(" ", "_").replace("/", "_"))
    uid = _sop_uid(path) if bound == "current" else bound
    _set_blob(path, _gcm(_payload(originals, added=added, bound=uid), keys["cert"]))
    stderr = _reidentify(label, case, tmp_path / "never", keys, expect=expect, cli=cli)
    if expect:
        assert path.name in stderr
    return stderr


@pytest.mark.parametrize("tag, vr, value, shown, cli", [
    (0x7FE00010, "OW", b"\xff\xff" * 64, "(7FE0,0010) PixelData", True),
    (0x00280010, "US", 4, "(0028,0010) Rows", False),
    (0x00281050, "DS", "9999", "(0028,1050) WindowCenter", False),
    (0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.7", "(0008,0016) SOPClassUID", True),
    (0x00020010, "UI", "1.2.840.10008.1.2", "(0002,0010) TransferSyntaxUID", False),
    (0x04000500, "SQ", [], "(0400,0500) EncryptedAttributesSequence", False),
    (0x60003000, "OW", b"\xff\xff" * 8, "(6000,3000) OverlayData", False),
    (0x00180050, "DS", "0.1", "(0018,0050) SliceThickness", False),
], ids=lambda v: v if isinstance(v, str) and v.startswith("(") else None)
def test_forged_payload_out_of_policy_refused(sealed, keys, tmp_path, tag, vr, value, shown, cli):
    """Anyone holding the public certificate can seal a valid payload: one
    that would restore what de-identification never changes is refused
    whole, naming the tag and the file, nothing written."""
    originals = Dataset()
    originals.PatientName = "Forged^Name"
    originals.add_new(tag, vr, value)
    stderr = _forged(f"forged payload restoring {shown}", originals, sealed, keys, tmp_path, expect=7, cli=cli)
    assert shown in stderr


def test_forged_payload_may_not_delete_what_deid_did_not_add(sealed, keys, tmp_path):
    stderr = _forged("forged payload deleting (0008,0060) Modality", Dataset(), sealed, keys, tmp_path,
                     expect=7, added=(0x00080060,), cli=False)
    assert "may not delete (0008,0060) Modality" in stderr


def test_forged_payload_bound_to_another_instance_refused(sealed, keys, tmp_path):
    originals = Dataset()
    originals.PatientName = "Forged^Name"
    stderr = _forged("forged payload bound to another SOP Instance UID", originals, sealed, keys, tmp_path,
                     expect=7, bound="2.25.1234")
    assert "sealed for another instance" in stderr


def test_genuine_payload_pasted_into_another_instance_refused(sealed, keys, tmp_path):
    case = tmp_path / "case"
    shutil.copytree(sealed, case)
    first, second = _instances(case)
    _set_blob(second, _blob(first))
    stderr = _reidentify("genuine payload of instance 1 pasted into instance 2", case, tmp_path / "never", keys,
                         expect=7)
    assert "sealed for another instance" in stderr and second.name in stderr


def test_forged_payload_within_policy_is_what_remains(sealed, keys, tmp_path):
    """The residual risk, kept visible: without a package signature a forged
    payload may still set what de-identification changes (here a name)."""
    originals = Dataset()
    originals.PatientName = "Forged^Name"
    _forged("forged payload within policy (Patient's Name)", originals, sealed, keys, tmp_path, expect=0)
    names = {str(pydicom.dcmread(p).PatientName) for p in _instances(tmp_path / "never")}
    assert "Forged^Name" in names


def test_kept_sequence_may_change_only_inside_by_the_same_rule():
    """A sequence de-identification keeps but walks (not in Table E.1-1):
    its items may differ in UIDs, not in anything else."""
    now = Dataset()
    item = Dataset()
    item.ReferencedSOPInstanceUID, item.SliceThickness = "2.25.1", "1"
    now.add_new(0x00209222, "SQ", Sequence([item]))          # Dimension Index Sequence: unlisted
    uid_changed, thickness_changed = copy.deepcopy(now), copy.deepcopy(now)
    uid_changed[0x00209222].value[0].ReferencedSOPInstanceUID = "1.2.3"
    thickness_changed[0x00209222].value[0].SliceThickness = "5"
    assert reid.restorable(0x00209222, uid_changed[0x00209222], now[0x00209222])
    assert not reid.restorable(0x00209222, thickness_changed[0x00209222], now[0x00209222])
    assert not reid.restorable(0x00209222, None, now[0x00209222])     # nor may it vanish


# ------------------------------------------------------------------ attack 3: malformed payloads

def _no_items(ds):
    ds.EncryptedAttributesSequence = Sequence()


def _no_content(ds):
    del ds.EncryptedAttributesSequence[0].EncryptedContent


def _two_items(ds):
    ds.EncryptedAttributesSequence.append(copy.deepcopy(ds.EncryptedAttributesSequence[0]))


def _implicit_syntax(ds):
    ds.EncryptedAttributesSequence[0].EncryptedContentTransferSyntaxUID = "1.2.840.10008.1.2"


def _no_sequence(ds):
    del ds.EncryptedAttributesSequence


@pytest.mark.parametrize("label, mutate, expect, cli", [
    ("empty Encrypted Attributes Sequence", _no_items, 3, True),
    ("item without Encrypted Content", _no_content, 3, True),
    ("two items", _two_items, 3, False),
    ("Encrypted Content Transfer Syntax implicit VR", _implicit_syntax, 3, False),
    ("no Encrypted Attributes Sequence", _no_sequence, 3, False),
    ("Encrypted Content random bytes", lambda ds: setattr(ds.EncryptedAttributesSequence[0], "EncryptedContent",
                                                          os.urandom(300)), 4, True),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_item_typed_error(sealed, keys, tmp_path, label, mutate, expect, cli):
    case, path = _copy(sealed, tmp_path)
    _set_item(path, mutate)
    assert path.name in _reidentify(label, case, tmp_path / "never", keys, expect=expect, cli=cli)


def _nested(depth: int) -> Dataset:
    ds = Dataset()
    inner = ds
    for _ in range(depth):
        child = Dataset()
        inner.add_new(0x00081115, "SQ", Sequence([child]))
        inner = child
    return ds


def _name() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Forged^Name"
    return ds


def _bare(uid: str) -> bytes:
    payload = Dataset()
    payload.private_block(0x0009, "DICOMPACK REID", create=True).add_new(0x02, "UI", uid)
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, payload)
    return buf.getvalue()


@pytest.mark.parametrize("label, plain, cli", [
    ("authenticated plaintext that is not a data set", lambda uid: os.urandom(200), True),
    ("authenticated empty plaintext", lambda uid: b"", False),
    ("no Modified Attributes Sequence", _bare, True),
    ("Modified Attributes Sequence without items", lambda uid: _payload([], bound=uid), False),
    ("Modified Attributes Sequence with two items", lambda uid: _payload([_name(), _name()], bound=uid), False),
    ("no private block", lambda uid: _payload(_name(), bound=uid, creator=False), False),
    ("no bound SOP Instance UID", lambda uid: _payload(_name(), bound=None), True),
    ("sequences nested 200 deep", lambda uid: _payload(_nested(200), bound=uid), True),
    ("data set cut in the middle", lambda uid: _payload(_name(), bound=uid)[:60], False),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_authenticated_payload_uniform_error(sealed, keys, tmp_path, label, plain, cli):
    case, path = _copy(sealed, tmp_path)
    _set_blob(path, envelope_bytes(plain(_sop_uid(path)), [CertRecipient(keys["x509"])]))
    stderr = _reidentify(label, case, tmp_path / "never", keys, expect=7, cli=cli)
    assert path.name in stderr and reid.NOT_AUTHENTIC in stderr


# ------------------------------------------------------------------ generated payloads, in process

@pytest.fixture(scope="module")
def genuine(sealed, keys) -> tuple[Dataset, bytes]:
    """A sealed instance and the plaintext of its payload."""
    path = _instances(sealed)[0]
    ds = pydicom.dcmread(path)
    from dicompack.container.cms import open_envelope_bytes
    plain = open_envelope_bytes(_blob(path), key=keys["private"], cert=keys["x509"])
    return ds, plain


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_payloads_never_escape_as_tracebacks(genuine, keys, data):
    """Mutated authenticated plaintexts (flips, cuts, insertions) and
    mutated envelopes: a typed error or a restore within policy, nothing
    else."""
    ds, plain = genuine
    buf = bytearray(plain)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if kind == "flip" and buf:
            buf[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del buf[at:at + data.draw(st.integers(1, 16))]
        else:
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=12))
    blob = envelope_bytes(bytes(buf), [CertRecipient(keys["x509"])])
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([blob[at] ^ data.draw(st.integers(1, 255))]) + blob[at + 1:]
    target = copy.deepcopy(ds)
    target.EncryptedAttributesSequence[0].EncryptedContent = blob
    try:
        reid.restore(target, key=keys["private"], cert=keys["x509"], where="generated")
    except DicompackError as err:
        assert err.exit_code in (3, 4, 6, 7) and err.where and err.where.startswith("generated")
        return
    for elem in target:                  # restored: only what the policy allows differs
        assert elem == ds.get(elem.tag) or reid.restorable(int(elem.tag), elem, ds.get(elem.tag))


def test_lossy_instance_payload_bound_to_its_final_uid(keys, tmp_path):
    """Lossy JPEG 2000 gives the instance a new SOP Instance UID after
    de-identification (PS3.3 C.7.6.1.1.5.1); the payload is sealed after
    that, so it stays bound to the UID the instance carries."""
    from dicompack.deid import Deidentifier
    from dicompack.deid.options import DeidOptions
    from dicompack.transform import lossy_uid
    src = tmp_path / "src"
    src.mkdir()
    ds = synthetic.make_instance(study_uid=f"{ROOT}.2", series_uid=f"{ROOT}.2.1", sop_uid=f"{ROOT}.2.1.1",
                                 patient_name="Doe^Jane", rows=32, columns=32)
    ds.save_as(src / "i.dcm", enforce_file_format=True)
    secret = tmp_path / "deid.key"
    secret.write_bytes(b"k" * 32)
    packed = tmp_path / "lossy"
    run_cli("pack", src, "-o", packed, "--deidentify", "--deid-key-file", secret, "--j2k", "ratio:10",
            "--reid-recipient", keys["cert"], "-q", check=True)
    expected = lossy_uid(Deidentifier(DeidOptions(key=b"k" * 32)).map_uid(f"{ROOT}.2.1.1"))
    assert _sop_uid(_instances(packed)[0]) == expected
    out = tmp_path / "out"
    proc = run_cli("reidentify", packed, "-o", out, "--key", keys["key"], "--cert", keys["cert"], "--allow-plain")
    assert proc.returncode == 0, proc.stderr
    assert _sop_uid(_instances(out)[0]) == f"{ROOT}.2.1.1"
