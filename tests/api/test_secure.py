"""Secure packages against the real openssl, with keys made at test time."""
from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from dicompack.container import cms
from dicompack.errors import DicompackError
from tests.support.pki import make_cert, name, save, standard_pki
from tests.support.tools import require_tool, run_cli

# Kept under these names for the modules that import them from here.
_cert, _save, _name = make_cert, save, name


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return standard_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def package(pki, example_corpus, tmp_path_factory) -> Path:
    src, _ = example_corpus
    out = tmp_path_factory.mktemp("secure") / "study.p7m"
    run_cli("pack", src, "-o", out, "--recipient", pki / "recip.pem", "--password-file", pki / "pw.txt",
            "--pbkdf2-iterations", "20000", "--sign-key", pki / "signer.key", "--sign-cert",
            pki / "signer.pem", "-q", check=True)
    return out


def _openssl(*args, input: bytes | None = None) -> bytes:
    proc = subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, input=input)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


RECIP = ("--key", "recip.key", "--cert", "recip.pem", "--trust", "ca.pem")


def _recip_args(pki: Path) -> list:
    return [pki / a if a.endswith((".key", ".pem")) else a for a in RECIP]


def test_openssl_decrypts_and_verifies_ours(pki, package, tmp_path):
    inner = _openssl("cms", "-decrypt", "-inform", "DER", "-in", package, "-recip", pki / "recip.pem",
                     "-inkey", pki / "recip.key", "-binary")
    zipped = _openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem", input=inner)
    assert zipped[:4] == b"PK\x03\x04"
    (tmp_path / "x.zip").write_bytes(zipped)
    assert run_cli("verify", tmp_path / "x.zip").returncode == 0
    by_password = _openssl("cms", "-decrypt", "-inform", "DER", "-in", package, "-pwri_password",
                           "correct horse battery", "-binary")
    assert _openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem",
                    input=by_password) == zipped


def test_verify_and_unpack_ours(pki, package, tmp_path):
    proc = run_cli("verify", package, *_recip_args(pki), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] and report["kind"] == "secure"
    assert report["secure"]["signer_subject"] == "CN=signer"
    assert report["secure"]["content_encryption"] == "aes-256-cbc"
    assert "rsaes_oaep" in report["secure"]["recipient_used"]
    out = tmp_path / "restored"
    run_cli("unpack", package, "-o", out, "--password-file", pki / "pw.txt", "--trust", pki / "ca.pem", check=True)
    assert json.loads(run_cli("check", out, "--json").stdout)["ok"]


@pytest.mark.parametrize("variant", ["gcm", "ec", "pss", "pkcs1v15"])
def test_variants_round_trip(pki, example_corpus, tmp_path, variant):
    src, _ = example_corpus
    args = {"gcm": ["--recipient", pki / "recip.pem", "--aead", "--sign-key", pki / "signer.key",
                    "--sign-cert", pki / "signer.pem"],
            "ec": ["--recipient", pki / "ecrecip.pem", "--sign-key", pki / "ecsigner.key",
                   "--sign-cert", pki / "ecsigner.pem"],
            "pss": ["--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
                    "--sign-cert", pki / "signer.pem", "--sign-pss", "--digest", "sha384"],
            "pkcs1v15": ["--recipient", pki / "recip.pem", "--rsa-pkcs1v15", "--sign-key", pki / "signer.key",
                         "--sign-cert", pki / "signer.pem"]}[variant]
    out = tmp_path / "v.p7m"
    run_cli("pack", src, "-o", out, *args, "-q", check=True)
    stem = "ecrecip" if variant == "ec" else "recip"
    proc = run_cli("verify", out, "--key", pki / f"{stem}.key", "--cert", pki / f"{stem}.pem",
                   "--trust", pki / "ca.pem", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inner = _openssl("cms", "-decrypt", "-inform", "DER", "-in", out, "-recip", pki / f"{stem}.pem",
                     "-inkey", pki / f"{stem}.key", "-binary")
    assert _openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem", input=inner)[:2] == b"PK"


@pytest.mark.parametrize("how", ["rsa", "oaep", "password", "gcm"])
def test_openssl_made_packages_are_read(pki, package, tmp_path, how):
    zipped = tmp_path / "in.zip"
    inner = _openssl("cms", "-decrypt", "-inform", "DER", "-in", package, "-recip", pki / "recip.pem",
                     "-inkey", pki / "recip.key", "-binary")
    zipped.write_bytes(_openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem", input=inner))
    signed = tmp_path / "signed.der"
    _openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-signer", pki / "signer.pem",
             "-inkey", pki / "signer.key", "-in", zipped, "-out", signed)
    theirs = tmp_path / "theirs.p7m"
    extra = {"rsa": ["-aes256", pki / "recip.pem"], "gcm": ["-aes-256-gcm", pki / "recip.pem"],
             "oaep": ["-aes256", "-recip", pki / "recip.pem", "-keyopt", "rsa_padding_mode:oaep"],
             "password": ["-aes256", "-pwri_password", "correct horse battery"]}[how]
    _openssl("cms", "-encrypt", "-binary", "-outform", "DER", "-in", signed, "-out", theirs, *extra)
    # openssl's PWRI is PBKDF2-HMAC-SHA1 with 2,048 iterations, not configurable: --legacy accepts it.
    keys = (["--password-file", pki / "pw.txt", "--legacy"] if how == "password"
            else ["--key", pki / "recip.key", "--cert", pki / "recip.pem"])
    out = tmp_path / "restored"
    run_cli("unpack", theirs, "-o", out, *keys, "--trust", pki / "ca.pem", check=True)
    assert (out / "DICOMDIR").is_file()


def _regions(data: bytes) -> dict[str, int]:
    """Byte offsets of each region of our package, found in its structure."""
    enc_key = data.index(b"\x04\x82\x01\x00") + 4          # 2048-bit RSA encrypted key
    iv_at = data.rindex(bytes.fromhex("060960864801650304012a")) + 13   # aes256-CBC OID, then the IV
    content = data.index(b"\xa0\x80", iv_at) + 2          # first ciphertext segment
    end = len(data) - 10                                   # before the closing EOCs
    return {"recipient info": data.index(b"Test CA") + 2, "encrypted key": enc_key + 100,
            "IV": iv_at + 3, "ciphertext start": content + 8, "ciphertext middle": (content + end) // 2,
            "ciphertext end": end - 5}


def test_tampering_each_region_is_detected(pki, package, tmp_path):
    data = package.read_bytes()
    for region, offset in _regions(data).items():
        bad = bytearray(data)
        bad[offset] ^= 0x01
        damaged = tmp_path / "damaged.p7m"
        damaged.write_bytes(bytes(bad))
        proc = run_cli("verify", damaged, *_recip_args(pki))
        assert proc.returncode in (4, 6, 7), (region, proc.returncode, proc.stderr)
        out = tmp_path / "never"
        assert run_cli("unpack", damaged, "-o", out, *_recip_args(pki)).returncode in (4, 6, 7), region
        assert not out.exists()
        assert len(proc.stderr.decode().strip().splitlines()) == 1, region


@pytest.mark.parametrize("region", ["signature", "signed attributes", "embedded certificate"])
def test_tampered_signed_layer_is_detected(pki, package, tmp_path, region):
    """Flip a byte inside the SignedData itself, then re-encrypt with openssl."""
    inner = bytearray(_openssl("cms", "-decrypt", "-inform", "DER", "-in", package, "-recip", pki / "recip.pem",
                               "-inkey", pki / "recip.key", "-binary"))
    if region == "signature":
        at = len(inner) - 40
    elif region == "signed attributes":
        at = inner.rindex(bytes.fromhex("06092a864886f70d010904")) + 16     # inside the message digest
    else:
        at = inner.index(b"signer") + 2                                      # subject CN of the signer cert
    inner[at] ^= 0x01
    (tmp_path / "inner.der").write_bytes(bytes(inner))
    bad = tmp_path / "bad.p7m"
    _openssl("cms", "-encrypt", "-aes256", "-binary", "-outform", "DER", "-in", tmp_path / "inner.der",
             "-out", bad, pki / "recip.pem")
    proc = run_cli("verify", bad, *_recip_args(pki))
    assert proc.returncode in (7, 8), (region, proc.returncode, proc.stderr)
    assert run_cli("unpack", bad, "-o", tmp_path / "out", *_recip_args(pki)).returncode in (7, 8)
    assert not (tmp_path / "out").exists()


def _signed_then_enveloped(pki, tmp_path, signer: str) -> Path:
    zipped = tmp_path / "z.zip"
    zipped.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    signed = tmp_path / f"{signer}.der"
    _openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-signer", pki / f"{signer}.pem",
             "-inkey", pki / f"{signer}.key", "-in", zipped, "-out", signed)
    out = tmp_path / f"{signer}.p7m"
    # AES-GCM: openssl writes no signingCertificateV2, so under AES-CBC an
    # untrusted signer is the uniform exit 7 (tests/security/test_cert_binding.py).
    _openssl("cms", "-encrypt", "-aes-256-gcm", "-binary", "-outform", "DER", "-in", signed, "-out", out,
             pki / "recip.pem")
    return out


@pytest.mark.parametrize("case,code", [("expired", 8), ("rogue", 8)])
def test_untrusted_or_expired_signer(pki, tmp_path, case, code):
    pkg = _signed_then_enveloped(pki, tmp_path, case)
    proc = run_cli("verify", pkg, *_recip_args(pki))
    assert proc.returncode == code, proc.stderr


def test_wrong_key_wrong_password_not_a_recipient(pki, package, tmp_path):
    trust = ["--trust", pki / "ca.pem"]      # without anchors: exit 2 before any work (F7)
    assert run_cli("verify", package, "--password-file", pki / "wrongpw.txt", *trust).returncode == 6
    proc = run_cli("verify", package, "--key", pki / "stranger.key", "--cert", pki / "stranger.pem", *trust)
    assert proc.returncode == 6 and b"not a recipient" in proc.stderr
    proc = run_cli("verify", package, "--key", pki / "stranger.key", *trust)
    assert proc.returncode == 6


def test_swapped_signer_certificate(pki, tmp_path):
    """Signed with the signer's key, but another (valid, trusted) certificate
    embedded as the signer's: the signature must not verify."""
    from dicompack import keys
    src = io.BytesIO(b"PK\x05\x06" + b"\x00" * 18)
    out = io.BytesIO()
    stranger = keys.load_certificate(pki / "stranger.pem")
    cms.write_secure_package(src, out, recipients=[cms.CertRecipient(keys.load_certificate(pki / "recip.pem"))],
                             signer=cms.Signer(keys.load_private_key(pki / "signer.key"), stranger))
    bad = tmp_path / "swapped.p7m"
    bad.write_bytes(out.getvalue())
    assert run_cli("verify", bad, *_recip_args(pki)).returncode == 7


def test_truncated_and_plain_zip(pki, package, tmp_path):
    cut = tmp_path / "cut.p7m"
    cut.write_bytes(package.read_bytes()[:len(package.read_bytes()) // 2])
    assert run_cli("verify", cut, *_recip_args(pki)).returncode in (4, 7)
    plain = tmp_path / "plain.p7m"
    run_cli("pack", tmp_path.parent, "-o", tmp_path / "p.zip", "-q")
    zipped = _openssl("cms", "-decrypt", "-inform", "DER", "-in", package, "-recip", pki / "recip.pem",
                      "-inkey", pki / "recip.key", "-binary")
    plain.write_bytes(b"PK\x03\x04" + zipped[:100])
    proc = run_cli("verify", plain, *_recip_args(pki))
    assert proc.returncode == 4 and len(proc.stderr.decode().strip().splitlines()) == 1


def test_unsigned_needs_allow_unsigned(pki, example_corpus, tmp_path):
    src, _ = example_corpus
    out = tmp_path / "unsigned.p7m"
    run_cli("pack", src, "-o", out, "--recipient", pki / "recip.pem", "-q", check=True)
    trust = ["--trust", pki / "ca.pem"]      # without anchors: exit 2 before any work (F7)
    assert run_cli("verify", out, "--key", pki / "recip.key", "--cert", pki / "recip.pem", *trust).returncode == 9
    dest = tmp_path / "u"
    assert run_cli("unpack", out, "-o", dest, "--key", pki / "recip.key", *trust).returncode == 9
    assert not dest.exists()
    proc = run_cli("verify", out, "--key", pki / "recip.key", "--allow-unsigned", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["secure"]["signed"] is False


def test_no_spool_left_behind(pki, package, tmp_path):
    """An altered package fails at the digest check, after its whole
    plaintext was spooled: the spool goes with the failure.  The exit code
    and message prove the run got that far (a CLI dying on import leaves
    nothing behind either)."""
    import os
    import sys
    bad = bytearray(package.read_bytes())
    bad[len(bad) // 2] ^= 1
    (tmp_path / "bad.p7m").write_bytes(bytes(bad))
    env = dict(os.environ, TMPDIR=str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "unpack", str(tmp_path / "bad.p7m"), "-o",
                           str(tmp_path / "o"), *map(str, _recip_args(pki))], env=env, capture_output=True)
    # The CLI ran up to the digest check: a SignatureInvalidError (exit 7)
    # as one line naming the integrity failure, nothing on stdout.
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.startswith(b"dicompack: encrypted content: "), proc.stderr
    assert b"failed its integrity check" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stdout == b""
    assert list((tmp_path / "t").iterdir()) == [] and not (tmp_path / "o").exists()


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_mutated_cms_only_raises_dicompack_errors(at, junk):
    data = bytearray(_SMALL_PACKAGE)
    at %= len(data)
    data[at:at + len(junk)] = junk
    try:
        cms.open_secure_package(io.BytesIO(bytes(data)), io.BytesIO(), password=b"pw-for-fuzzing",
                                allow_unsigned=True)
    except DicompackError:
        pass


_SMALL_PACKAGE = io.BytesIO()
cms.write_secure_package(io.BytesIO(b"zip bytes" * 50), _SMALL_PACKAGE,
                         recipients=[cms.PasswordRecipient(b"pw-for-fuzzing", 10_000)])
_SMALL_PACKAGE = _SMALL_PACKAGE.getvalue()


def test_encrypted_key_and_pkcs12(pki, example_corpus, tmp_path):
    from cryptography.hazmat.primitives.serialization import pkcs12

    from dicompack import keys
    src, _ = example_corpus
    signer_key = keys.load_private_key(pki / "signer.key")
    (tmp_path / "kpw.txt").write_text("key password\n")
    (tmp_path / "signer-enc.key").write_bytes(signer_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key password")))
    out = tmp_path / "a.p7m"
    run_cli("pack", src, "-o", out, "--recipient", pki / "recip.pem", "--sign-key", tmp_path / "signer-enc.key",
            "--sign-cert", pki / "signer.pem", "--key-password-file", tmp_path / "kpw.txt", "-q", check=True)
    bundle = pkcs12.serialize_key_and_certificates(
        b"recip", keys.load_private_key(pki / "recip.key"), keys.load_certificate(pki / "recip.pem"), None,
        serialization.BestAvailableEncryption(b"key password"))
    (tmp_path / "recip.p12").write_bytes(bundle)
    proc = run_cli("verify", out, "--p12", tmp_path / "recip.p12", "--key-password-file", tmp_path / "kpw.txt",
                   "--trust", pki / "ca.pem")
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "bad.txt").write_text("nope\n")
    proc = run_cli("verify", out, "--p12", tmp_path / "recip.p12", "--key-password-file", tmp_path / "bad.txt")
    assert proc.returncode == 2 and b"key password" not in proc.stderr and b"nope" not in proc.stderr


def test_per_file_secure_dicom_files(pki, example_corpus, tmp_path):
    """PS3.10 7.4: every file, DICOMDIR included, is its own CMS envelope."""
    src, info = example_corpus
    out = tmp_path / "secure-cd"
    run_cli("pack", src, "-o", out, "--per-file", "--recipient", pki / "recip.pem", "--sign-key",
            pki / "signer.key", "--sign-cert", pki / "signer.pem", "-q", check=True)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == len(info["instances"]) + 1 and all(p.read_bytes()[:1] == b"\x30" for p in files)
    one = next(out.rglob("IM000001"))
    inner = _openssl("cms", "-decrypt", "-inform", "DER", "-in", one, "-recip", pki / "recip.pem",
                     "-inkey", pki / "recip.key", "-binary")
    verified = _openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem", input=inner)
    assert verified[128:132] == b"DICM"
    proc = run_cli("verify", out, *_recip_args(pki), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["kind"] == "secure-fileset"
    restored = tmp_path / "restored"
    run_cli("unpack", out, "-o", restored, *_recip_args(pki), check=True)
    assert json.loads(run_cli("check", restored, "--json").stdout)["ok"]
    bad = bytearray(one.read_bytes())
    bad[len(bad) // 2] ^= 1
    one.write_bytes(bytes(bad))
    proc = run_cli("unpack", out, "-o", tmp_path / "never", *_recip_args(pki))
    assert proc.returncode == 7 and b"IM000001" in proc.stderr
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if "dicompack" in p.name]
