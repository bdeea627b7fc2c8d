"""Packing mistakes a sender cannot see are refused at pack time (exit 2,
before any work), never turned into a clear package or a "tampered"
verdict at the receiver: keys for an output that is not secure, a signer
key that is not its certificate's, weak or unusable certificates, short
package passwords."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from asn1crypto import keys as akeys
from asn1crypto import pkcs12 as apkcs12
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import pkcs12

import dicompack.api as dp
from dicompack import keys
from dicompack.container import cms
from dicompack.errors import UsageError
from tests.support.pki import make_cert, rsa_key, save, standard_pki
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import run_cli


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = standard_pki(tmp_path_factory.mktemp("pki"))
    ca_key = keys.load_private_key(d / "ca.key")
    ca = keys.load_certificate(d / "ca.pem")
    weak = rsa_key(1024)
    save(d, "weak", weak, make_cert("weak", weak, ca_key, ca.subject))
    small_ec = ec.generate_private_key(ec.SECP192R1())
    save(d, "smallec", small_ec, make_cert("smallec", small_ec, ca_key, ca.subject))
    ed = ed25519.Ed25519PrivateKey.generate()
    (d / "ed.pem").write_bytes(make_cert("ed", ed, ca_key, ca.subject).public_bytes(serialization.Encoding.PEM))
    signing_only = rsa_key()
    cert = make_cert("signing only", signing_only, ca_key, ca.subject, key_usage=False,
                     extra=[(_key_usage(digital_signature=True), True)])
    save(d, "signonly", signing_only, cert)
    (d / "short.txt").write_text("hunter2\n")
    (d / "eleven.txt").write_text("a" * 11 + "\n")
    (d / "twelve.txt").write_text("correct hors\n")
    _mismatched_p12(d)
    return d


def _key_usage(**allowed):
    from cryptography import x509
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: allowed.get(n, False) for n in names})


def _mismatched_p12(d: Path) -> None:
    """A PKCS#12 bundle whose key and certificate bags claim to belong
    together (same localKeyID) but do not: the signer's key with the
    recipient's certificate.  Tools refuse to write one; asn1crypto will."""
    key = keys.load_private_key(d / "signer.key")
    cert = keys.load_certificate(d / "recip.pem")
    der_key = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())

    def attrs():
        return apkcs12.Attributes([{"type": "local_key_id", "values": [b"\x01\x02"]}])
    bags = apkcs12.SafeContents([
        apkcs12.SafeBag({"bag_id": "key_bag", "bag_value": akeys.PrivateKeyInfo.load(der_key),
                         "bag_attributes": attrs()}),
        apkcs12.SafeBag({"bag_id": "cert_bag", "bag_attributes": attrs(), "bag_value": apkcs12.CertBag({
            "cert_id": "x509",
            "cert_value": core.ParsableOctetString(cert.public_bytes(serialization.Encoding.DER))})}),
    ])
    safe = apkcs12.AuthenticatedSafe([acms.ContentInfo({"content_type": "data",
                                                        "content": core.OctetString(bags.dump())})])
    pfx = apkcs12.Pfx({"version": "v3", "auth_safe": acms.ContentInfo(
        {"content_type": "data", "content": core.OctetString(safe.dump())})})
    (d / "mismatch.p12").write_bytes(pfx.dump())


@pytest.fixture(scope="module")
def good_p12(pki, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("p12") / "signer.p12"
    out.write_bytes(pkcs12.serialize_key_and_certificates(
        b"signer", keys.load_private_key(pki / "signer.key"), keys.load_certificate(pki / "signer.pem"),
        None, serialization.NoEncryption()))
    return out


def _nothing_written(dest: Path) -> None:
    assert not dest.exists(), f"{dest} was written"
    leftovers = [p.name for p in dest.parent.iterdir() if p.name.startswith((dest.name, ".dicompack"))]
    assert not leftovers, leftovers


# ------------------------------------------------------------ 1. keys for a clear output

CLEAR_OUTPUTS = {
    "zip + recipient": ("study.zip", ["--recipient", "recip.pem"]),
    "zip + password": ("study.zip", ["--password-file", "pw.txt"]),
    "zip + signer": ("study.zip", ["--sign-key", "signer.key", "--sign-cert", "signer.pem"]),
    "zip + p12": ("study.zip", ["--p12", "P12"]),
    "folder + recipient": ("fileset", ["--recipient", "recip.pem"]),
    "folder + signer": ("fileset", ["--sign-key", "signer.key", "--sign-cert", "signer.pem"]),
    "folder + aead": ("fileset", ["--aead"]),
    "format zip on .p7m name": ("study.p7m", ["--format", "zip", "--recipient", "recip.pem"]),
}


def _args(pki: Path, p12: Path, args: list[str]) -> list:
    return [p12 if a == "P12" else pki / a if a.endswith((".pem", ".key", ".txt")) else a for a in args]


@pytest.mark.parametrize("case", CLEAR_OUTPUTS)
def test_keys_for_a_clear_output_are_refused(case, pki, good_p12, example_corpus, tmp_path):
    src, _ = example_corpus
    name_, args = CLEAR_OUTPUTS[case]
    dest = tmp_path / name_
    proc = run_cli("pack", src, "-o", dest, *_args(pki, good_p12, args), "-q")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.decode()
    assert err.startswith("dicompack: ") and len(err.strip().splitlines()) == 1, err
    assert "neither encrypted nor signed" in err and ".p7m" in err and "--per-file" in err, err
    _nothing_written(dest)


def test_keys_for_stdout_zip_are_refused(pki, example_corpus):
    src, _ = example_corpus
    proc = run_cli("pack", src, "-o", "-", "--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
                   "--sign-cert", pki / "signer.pem")
    assert proc.returncode == 2 and proc.stdout == b"", proc.stderr
    assert b"--format secure" in proc.stderr


def test_refusal_comes_before_any_work(pki, tmp_path):
    """A source that does not exist would fail the scan with exit 3; a
    recipient file that is garbage would fail loading; the transport
    refusal comes first, and no password prompt is shown."""
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate")
    proc = run_cli("pack", tmp_path / "missing", "-o", tmp_path / "out.zip", "--recipient",
                   tmp_path / "garbage.pem", "--password-prompt", input=b"")
    assert proc.returncode == 2 and b"neither encrypted nor signed" in proc.stderr, proc.stderr
    assert b"Package password" not in proc.stdout + proc.stderr


def test_secure_outputs_still_work(pki, example_corpus, tmp_path):
    """The same keys with a secure destination: .p7m, --format secure on
    stdout, and --per-file for a folder."""
    src, _ = example_corpus
    keys_ = ["--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key", "--sign-cert",
             pki / "signer.pem", "-q"]
    run_cli("pack", src, "-o", tmp_path / "a.p7m", *keys_, check=True)
    proc = run_cli("pack", src, "-o", "-", "--format", "secure", *keys_)
    assert proc.returncode == 0 and proc.stdout[:1] == b"\x30", proc.stderr
    run_cli("pack", src, "-o", tmp_path / "per-file", "--per-file", *keys_, check=True)
    assert (tmp_path / "per-file" / "DICOMDIR").read_bytes()[:1] == b"\x30"


def test_reid_recipient_is_not_transport(pki, example_corpus, tmp_path):
    """--reid-recipient seals originals inside each instance (de-identification):
    a plain ZIP with it is legitimate."""
    src, _ = example_corpus
    (tmp_path / "deid.key").write_bytes(b"k" * 32)
    dest = tmp_path / "deid.zip"
    proc = run_cli("pack", src, "-o", dest, "--deidentify", "--deid-key-file", tmp_path / "deid.key",
                   "--burned-in", "keep", "--reid-recipient", pki / "recip.pem", "-q")
    assert proc.returncode == 0, proc.stderr
    assert dest.is_file()


def test_library_refuses_keys_for_a_clear_output(pki, example_corpus, tmp_path):
    src, _ = example_corpus
    recipient = cms.CertRecipient(keys.load_certificate(pki / "recip.pem"))
    signer = cms.Signer(keys.load_private_key(pki / "signer.key"), keys.load_certificate(pki / "signer.pem"))
    for dest, options in [
            (tmp_path / "a.zip", dp.PackOptions(recipients=(recipient,), format="zip")),
            (tmp_path / "b.zip", dp.PackOptions(signer=signer)),
            (tmp_path / "c", dp.PackOptions(recipients=(cms.PasswordRecipient(b"correct horse battery"),))),
            (io.BytesIO(), dp.PackOptions(recipients=(recipient,)))]:
        with pytest.raises(UsageError, match="neither encrypted nor signed"):
            dp.pack([src], dest, options)
        if isinstance(dest, Path):
            _nothing_written(dest)
        else:
            assert dest.getvalue() == b""


# ------------------------------------------------------------ 2. signer and certificates

def _secure_pack(pki, src, dest, *args):
    return run_cli_measured("pack", src, "-o", dest, "--recipient", pki / "recip.pem", *args, "-q")


def test_signer_key_not_matching_certificate(pki, example_corpus, tmp_path):
    """The receiver would report "the package was altered" (exit 7)."""
    src, _ = example_corpus
    dest = tmp_path / "study.p7m"
    proc = _secure_pack(pki, src, dest, "--sign-key", pki / "signer.key", "--sign-cert", pki / "ecsigner.pem")
    assert proc.returncode == 2, proc.stderr
    assert b"does not match" in proc.stderr and b"signer.key" in proc.stderr and b"ecsigner.pem" in proc.stderr
    _nothing_written(dest)
    proc = _secure_pack(pki, src, dest, "--sign-key", pki / "signer.key", "--sign-cert", pki / "stranger.pem")
    assert proc.returncode == 2 and b"does not match" in proc.stderr, proc.stderr
    _nothing_written(dest)


def test_pkcs12_bundle_with_foreign_certificate(pki, example_corpus, tmp_path):
    src, _ = example_corpus
    dest = tmp_path / "study.p7m"
    proc = _secure_pack(pki, src, dest, "--p12", pki / "mismatch.p12")
    assert proc.returncode == 2, proc.stderr
    assert b"mismatch.p12" in proc.stderr and b"matches its private key" in proc.stderr, proc.stderr
    _nothing_written(dest)
    assert proc.peak_rss_mb < HOSTILE_RSS_LIMIT_MB


def test_library_refuses_mismatched_signer(pki, example_corpus, tmp_path):
    """The library checks what the CLI checks (a Signer built by hand)."""
    src, _ = example_corpus
    signer = cms.Signer(keys.load_private_key(pki / "signer.key"), keys.load_certificate(pki / "stranger.pem"))
    recipient = cms.CertRecipient(keys.load_certificate(pki / "recip.pem"))
    with pytest.raises(UsageError, match="does not match"):
        dp.pack([src], tmp_path / "x.p7m", dp.PackOptions(recipients=(recipient,), signer=signer))
    _nothing_written(tmp_path / "x.p7m")


BAD_RECIPIENTS = {
    "weak.pem": "1024 bits is too weak",
    "smallec.pem": "too weak",
    "ed.pem": "not usable",
    "signonly.pem": "keyEncipherment",
    "expired.pem": "expired",
}


@pytest.mark.parametrize("cert", BAD_RECIPIENTS)
def test_weak_or_unusable_recipient(cert, pki, example_corpus, tmp_path):
    src, _ = example_corpus
    dest = tmp_path / "study.p7m"
    proc = run_cli("pack", src, "-o", dest, "--recipient", pki / cert, "-q")
    assert proc.returncode == 2, proc.stderr
    assert cert.encode() in proc.stderr and BAD_RECIPIENTS[cert].encode() in proc.stderr, proc.stderr
    _nothing_written(dest)


@pytest.mark.parametrize("cert", ["weak.pem", "ed.pem"])
def test_weak_reid_recipient(cert, pki, example_corpus, tmp_path):
    src, _ = example_corpus
    (tmp_path / "deid.key").write_bytes(b"k" * 32)
    proc = run_cli("pack", src, "-o", tmp_path / "deid.zip", "--deidentify", "--deid-key-file",
                   tmp_path / "deid.key", "--reid-recipient", pki / cert, "-q")
    assert proc.returncode == 2 and cert.encode() in proc.stderr, proc.stderr


@pytest.mark.parametrize("stem,why", [("weak", "1024 bits is too weak"), ("expired", "expired")])
def test_weak_or_expired_signer(stem, why, pki, example_corpus, tmp_path):
    src, _ = example_corpus
    dest = tmp_path / "study.p7m"
    proc = run_cli("pack", src, "-o", dest, "--recipient", pki / "recip.pem", "--sign-key", pki / f"{stem}.key",
                   "--sign-cert", pki / f"{stem}.pem", "-q")
    assert proc.returncode == 2 and why.encode() in proc.stderr and f"{stem}.pem".encode() in proc.stderr, \
        proc.stderr
    _nothing_written(dest)


# ------------------------------------------------------------ 3. package passwords

@pytest.mark.parametrize("pw_file", ["short.txt", "eleven.txt"])
def test_short_password_refused_when_packing(pw_file, pki, example_corpus, tmp_path):
    src, _ = example_corpus
    dest = tmp_path / "study.p7m"
    proc = run_cli("pack", src, "-o", dest, "--password-file", pki / pw_file, "--json")
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    secret = (pki / pw_file).read_text().strip().encode()
    assert secret not in out
    assert json.loads(proc.stdout)["where"] == str(pki / pw_file)
    assert b"at least 12" in out
    _nothing_written(dest)


def test_short_password_from_prompt_refused(example_corpus, tmp_path):
    """Typed at the prompt (read from stdin: the child has no terminal)."""
    src, _ = example_corpus
    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", "pack", str(src), "-o", str(tmp_path / "s.p7m"),
                           "--password-prompt"], input=b"hunter2\nhunter2\n", capture_output=True,
                          start_new_session=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert b"hunter2" not in proc.stdout + proc.stderr and b"at least 12" in proc.stderr
    _nothing_written(tmp_path / "s.p7m")


def test_password_of_minimum_length_accepted(pki, example_corpus, tmp_path):
    src, _ = example_corpus
    run_cli("pack", src, "-o", tmp_path / "study.p7m", "--password-file", pki / "twelve.txt",
            "--pbkdf2-iterations", "10000", "-q", check=True)


def test_library_refuses_short_password(example_corpus, tmp_path):
    src, _ = example_corpus
    with pytest.raises(UsageError, match="at least 12") as err:
        dp.pack([src], tmp_path / "x.p7m", dp.PackOptions(recipients=(cms.PasswordRecipient(b"abc12"),)))
    assert "abc12" not in str(err.value)


def test_receiving_accepts_any_password(pki, example_corpus, tmp_path):
    """Another tool may have encrypted with a short password: we still open it."""
    src, _ = example_corpus
    zipped = tmp_path / "plain.zip"
    run_cli("pack", src, "-o", zipped, "-q", check=True)
    package = tmp_path / "short.p7m"
    with open(zipped, "rb") as inp, open(package, "wb") as out:
        cms.write_secure_package(inp, out, recipients=[cms.PasswordRecipient(b"abc", 10_000)])
    (tmp_path / "abc.txt").write_text("abc\n")
    proc = run_cli("verify", package, "--password-file", tmp_path / "abc.txt", "--allow-unsigned")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("iterations", ["100", "6000000"])
def test_pbkdf2_iterations_receivers_refuse(iterations, pki, example_corpus, tmp_path):
    """Too few is brute-forceable, too many is refused by receivers as a
    denial-of-service: either way, say so before packing."""
    src, _ = example_corpus
    dest = tmp_path / "study.p7m"
    proc = run_cli("pack", src, "-o", dest, "--password-file", pki / "pw.txt", "--pbkdf2-iterations", iterations)
    assert proc.returncode == 2 and b"--pbkdf2-iterations" in proc.stderr, proc.stderr
    _nothing_written(dest)
