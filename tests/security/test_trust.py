"""Trust in the signers of a secure package, attacked through the real CLI.

Packages are signed and enveloped by the real openssl (``cms -sign`` then
``cms -encrypt`` to the recipient), around a real ZIP package that verifies:
each attack differs from an accepted package only in its certificates or
signers.  Certificates are made at test time (tests/support/pki.py)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from dicompack.container import trust
from tests.support.pki import make_cert, rsa_key, save
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import require_tool, run_cli

UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), True)
ID_CT_TSTINFO = "1.2.840.113549.1.9.16.1.4"     # a non-data eContentType openssl can write


@pytest.fixture(scope="module")
def ca(pki):
    key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    return key, x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())


@pytest.fixture(scope="module")
def content(example_corpus, tmp_path_factory) -> Path:
    """A real package ZIP: what an attacker signs so that only trust can refuse it."""
    out = tmp_path_factory.mktemp("trust-zip") / "study.zip"
    run_cli("pack", example_corpus[0], "-o", out, "-q", check=True)
    return out


def _openssl(*args) -> bytes:
    proc = subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _issue(folder: Path, stem: str, issuer, **kwargs) -> tuple[Path, Path]:
    """A key and a certificate named ``stem`` issued by ``issuer`` = (key, cert)."""
    key = kwargs.pop("key", None) or rsa_key()
    ikey, icert = issuer
    return save(folder, stem, key, make_cert(stem, key, ikey, icert.subject, **kwargs))


def _package(pki: Path, content: Path, out: Path, signers: list[tuple[Path, Path]], *extra) -> Path:
    """openssl cms -sign (every signer) then -encrypt to ``recip`` (AES-GCM, RSA-OAEP)."""
    signed = out.with_suffix(".signed")
    sign_args = [a for key, cert in signers for a in ("-signer", cert, "-inkey", key)]
    _openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-in", content, "-out", signed,
             *sign_args, *extra)
    _envelope(pki, signed, out)
    return out


def _envelope(pki: Path, inner: Path, out: Path) -> None:
    _openssl("cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER", "-in", inner, "-out", out,
             "-recip", pki / "recip.pem", "-keyopt", "rsa_padding_mode:oaep")


def _verify(pki: Path, pkg: Path, *extra) -> subprocess.CompletedProcess:
    return run_cli("verify", pkg, "--key", pki / "recip.key", "--cert", pki / "recip.pem",
                   "--trust", pki / "ca.pem", *extra)


def _refused(proc, code: int, *words: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err, proc.stdout.decode())
    assert len(err.strip().splitlines()) == 1 and err.startswith("dicompack: "), err
    for w in words:
        assert w in err, err


# ---------------------------------------------------------------- accepted

def test_trusted_signer_is_reported(pki, content, tmp_path):
    pkg = _package(pki, content, tmp_path / "ok.p7m", [(pki / "signer.key", pki / "signer.pem")])
    proc = _verify(pki, pkg, "--json")
    assert proc.returncode == 0, proc.stderr
    sec = json.loads(proc.stdout)["secure"]
    assert sec["signer_subject"] == "CN=signer"
    assert [s["subject"] for s in sec["signers"]] == ["CN=signer"]
    assert sec["signers"][0]["chain"] == ["CN=signer", "CN=Test CA"] == sec["chain"]
    assert sec["signers"][0]["digest"] == "sha256" and sec["signers"][0]["signing_time"]


def test_signer_without_eku_or_san_and_a_ca_without_key_usage_are_accepted(pki, content, tmp_path):
    """RFC 5280 readings kept on purpose: no EKU = any purpose; no SAN needed;
    a CA made like `openssl req -x509` (no keyUsage) may issue signers."""
    root_key = rsa_key()
    root = make_cert("Plain CA", root_key, ca=True, key_usage=False)
    save(tmp_path, "plainca", root_key, root)
    key, cert = _issue(tmp_path, "noeku", (root_key, root), eku=None)
    pkg = _package(pki, content, tmp_path / "p.p7m", [(key, cert)])
    proc = run_cli("verify", pkg, "--key", pki / "recip.key", "--trust", tmp_path / "plainca.pem")
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- refused signer certificates

def _signer_case(case: str) -> dict:
    return {
        "tls-server-only": {"eku": [ExtendedKeyUsageOID.SERVER_AUTH]},
        "unknown-critical-extension": {"extra": [UNKNOWN_CRITICAL]},
        "rsa-1024": {"key": rsa_key(1024)},
        "secp256k1": {"key": ec.generate_private_key(ec.SECP256K1())},
        "key-encipherment-only": {"key_usage": False, "extra": [(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=True, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False), True)]},
    }[case]


@pytest.mark.parametrize("case,words", [
    ("tls-server-only", ["emailProtection"]),
    ("unknown-critical-extension", ["1.3.6.1.4.1.55555.1", "critical"]),
    ("rsa-1024", ["1024-bit RSA key"]),
    ("secp256k1", ["secp256k1"]),
    ("key-encipherment-only", ["digitalSignature"]),
])
def test_signer_certificate_refused(pki, ca, content, tmp_path, case, words):
    """A certificate from the trusted CA, but not fit to sign a package."""
    key, cert = _issue(tmp_path, case, ca, **_signer_case(case))
    pkg = _package(pki, content, tmp_path / f"{case}.p7m", [(key, cert)])
    _refused(_verify(pki, pkg), 8, *words)
    out = tmp_path / "never"
    assert run_cli("unpack", pkg, "-o", out, "--key", pki / "recip.key",
                   "--trust", pki / "ca.pem").returncode == 8
    assert not out.exists()


# ---------------------------------------------------------------- refused issuers (chains)

def _intermediate(tmp_path: Path, ca, **kwargs):
    key = rsa_key()
    cert = make_cert("Inter CA", key, ca[0], ca[1].subject, ca=True, **kwargs)
    save(tmp_path, "inter", key, cert)
    return key, cert


@pytest.mark.parametrize("case,code", [
    ("email-constrained, signer inside", 0),
    ("email-constrained, signer outside", 8),
    ("intermediate for TLS only", 8),
    ("intermediate with unknown critical extension", 8),
])
def test_chain_through_intermediate(pki, ca, content, tmp_path, case, code):
    """Name constraints and EKU of an intermediate bind what it issues;
    the intermediate is embedded by the sender (openssl -certfile)."""
    extra = {"email-constrained, signer inside": [(x509.NameConstraints(
                 permitted_subtrees=[x509.RFC822Name("hospital-a.example")], excluded_subtrees=None), True)],
             "intermediate for TLS only": [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)],
             "intermediate with unknown critical extension": [UNKNOWN_CRITICAL]}
    extra["email-constrained, signer outside"] = extra["email-constrained, signer inside"]
    inter = _intermediate(tmp_path, ca, extra=extra[case])
    mail = "mallory@evil.example" if "outside" in case else "alice@hospital-a.example"
    key, cert = _issue(tmp_path, "leaf", inter, extra=[(x509.SubjectAlternativeName([x509.RFC822Name(mail)]), False)])
    pkg = _package(pki, content, tmp_path / "chain.p7m", [(key, cert)], "-certfile", tmp_path / "inter.pem")
    if code == 0:
        proc = _verify(pki, pkg, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["secure"]["chain"] == ["CN=leaf", "CN=Inter CA", "CN=Test CA"]
    else:
        _refused(_verify(pki, pkg), code, "CN=leaf")


# ---------------------------------------------------------------- every SignerInfo

def test_every_signer_is_verified_and_reported(pki, content, tmp_path):
    both = [(pki / "signer.key", pki / "signer.pem"), (pki / "ecsigner.key", pki / "ecsigner.pem")]
    pkg = _package(pki, content, tmp_path / "two.p7m", both)
    proc = _verify(pki, pkg, "--json")
    assert proc.returncode == 0, proc.stderr
    signers = {s["subject"]: s for s in json.loads(proc.stdout)["secure"]["signers"]}
    assert set(signers) == {"CN=signer", "CN=ecsigner"}      # SignerInfos is a SET: DER order
    assert signers["CN=ecsigner"]["signature_algorithm"].startswith("ecdsa")
    assert all(s["chain"][-1] == "CN=Test CA" and s["signing_time"] for s in signers.values())
    text = _verify(pki, pkg).stdout.decode()
    assert "signed by CN=" in text and "also signed by CN=" in text
    assert "CN=signer (" in text and "CN=ecsigner (" in text


def test_untrusted_second_signer_refuses_the_package(pki, content, tmp_path):
    """A valid first signer does not vouch for a second one from another CA."""
    pkg = _package(pki, content, tmp_path / "rogue2.p7m",
                   [(pki / "signer.key", pki / "signer.pem"), (pki / "rogue.key", pki / "rogue.pem")])
    _refused(_verify(pki, pkg), 8, "CN=rogue", "not trusted")


def test_invalid_second_signature_refuses_the_package(pki, content, tmp_path):
    """Only the second SignerInfo's signature is altered: no invalid
    signature is ignored, whatever the first one says."""
    from asn1crypto import cms as acms
    signed = tmp_path / "two.signed"
    _openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-in", content, "-out", signed,
             "-signer", pki / "signer.pem", "-inkey", pki / "signer.key",
             "-signer", pki / "stranger.pem", "-inkey", pki / "stranger.key")
    der = bytearray(signed.read_bytes())
    second = acms.ContentInfo.load(bytes(der))["content"]["signer_infos"][1]["signature"].native
    at = der.index(second) + len(second) // 2
    der[at] ^= 0x01
    signed.write_bytes(bytes(der))
    pkg = tmp_path / "bad2.p7m"
    _envelope(pki, signed, pkg)
    _refused(_verify(pki, pkg), 7)


# ---------------------------------------------------------------- signing time

def _signed_at(content: bytes, key, cert: x509.Certificate, when: dt.datetime) -> bytes:
    """ContentInfo(SignedData) whose signing-time attribute says ``when``
    (openssl always writes the present time), built with asn1crypto."""
    from asn1crypto import cms as acms
    from asn1crypto import core
    from asn1crypto import x509 as ax509
    attrs = acms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [acms.Time(name="utc_time", value=core.UTCTime(when))]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
    ])
    signature = key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
    acert = ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    signer_info = acms.SignerInfo({
        "version": "v1", "sid": acms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": acert.issuer, "serial_number": acert.serial_number}),
        "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"}, "signature": signature})
    signed = acms.SignedData({
        "version": "v1", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "data", "content": content},
        "certificates": [acert], "signer_infos": [signer_info]})
    return acms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


@pytest.mark.parametrize("days_ago,code", [(0, 0), (10, 8)])
def test_signing_time_must_fall_in_the_validity_period(pki, ca, content, tmp_path, days_ago, code):
    """The signer's certificate (valid from yesterday) must be valid now and at
    the signing time it states."""
    key = rsa_key()
    cert = make_cert("signer", key, ca[0], ca[1].subject, start=-1)
    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)).replace(microsecond=0)
    inner = tmp_path / "signed.der"
    inner.write_bytes(_signed_at(content.read_bytes(), key, cert, when))
    pkg = tmp_path / "timed.p7m"
    _envelope(pki, inner, pkg)
    proc = _verify(pki, pkg)
    if code:
        _refused(proc, code, "its signing time")
    else:
        assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- signed content type

@pytest.mark.parametrize("attrs", [["-noattr"], []], ids=["without signedAttrs", "with signedAttrs"])
def test_non_data_content_type_refused(pki, content, tmp_path, attrs):
    """RFC 5652 5.3: signedAttrs are required for a non-data eContentType; our
    packages carry id-data only, so any other type is refused outright."""
    pkg = _package(pki, content, tmp_path / "tst.p7m", [(pki / "signer.key", pki / "signer.pem")],
                   "-econtent_type", ID_CT_TSTINFO, *attrs)
    proc = _verify(pki, pkg)
    assert proc.returncode in (4, 7), proc.stderr       # malformed (or, uniformly, not authentic)
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    out = tmp_path / "never"
    assert run_cli("unpack", pkg, "-o", out, "--key", pki / "recip.key", "--trust", pki / "ca.pem").returncode in (4, 7)
    assert not out.exists()


# ---------------------------------------------------------------- CPU before trust

class _PublicOnly:
    """A 'key' make_cert can certify: only its public half exists."""

    def __init__(self, public):
        self._public = public

    def public_key(self):
        return self._public


def _fake_rsa(bits: int, e: int = 65537) -> _PublicOnly:
    """An RSA public key of any size without generating one (minutes at 16384 bits):
    verifying with it costs what a real key of that size costs."""
    n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    return _PublicOnly(rsa.RSAPublicNumbers(e, n).public_key())


def _bundle(path: Path, certs: list) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def _measured(pki: Path, pkg: Path):
    start = time.monotonic()
    m = run_cli_measured("verify", pkg, "--key", pki / "recip.key", "--cert", pki / "recip.pem",
                         "--trust", pki / "ca.pem")
    wall = time.monotonic() - start
    print(f"MEASURE {pkg.name}: exit {m.returncode}, peak RSS {m.peak_rss_mb:.0f} MB, wall {wall:.2f} s: "
          f"{m.stderr.decode().strip()}")
    assert m.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
    return m, wall


@pytest.mark.parametrize("case,code", [("33 certificates", 8), ("16384-bit keys named like the CA", 8),
                                       ("oversized set", 7)])
def test_embedded_certificates_are_bounded(pki, ca, content, tmp_path, case, code):
    """The sender decides what SignedData.certificates holds: its count and
    key sizes are refused before any path search (exit 8, once a signature
    has shown the content authentic); a set over the byte limit is not even
    read, so the content cannot be shown authentic: the one integrity
    failure (exit 7), never a distinct answer an oracle could use."""
    ca_key, ca_cert = ca
    if case == "33 certificates":
        key = rsa_key()
        extra = [make_cert(f"filler {i}", key, ca_key, ca_cert.subject) for i in range(trust.MAX_EMBEDDED_CERTIFICATES)]
        words = ["33 certificates"]
    elif case == "16384-bit keys named like the CA":
        extra = [make_cert("Test CA", _fake_rsa(16384), ca_key, ca_cert.subject, ca=True) for _ in range(8)]
        words = ["16384-bit RSA key"]
    else:
        blob = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.2"), b"\x04" * (300 << 10))
        extra = [make_cert("fat", rsa_key(), ca_key, ca_cert.subject, extra=[(blob, False)])]
        words = ["larger than"]
    pkg = _package(pki, content, tmp_path / "flood.p7m", [(pki / "signer.key", pki / "signer.pem")],
                   "-certfile", _bundle(tmp_path / "extra.pem", extra))
    m, wall = _measured(pki, pkg)
    _refused(m, code, *(words if code == 8 else []))
    assert wall < 30


def _maze(case: str, ca_name: x509.Name, tmp_path: Path) -> tuple[list, list]:
    """(signers, embedded certificates): 32 certificates in all, every one
    named like the CA, none leading to it."""
    if case == "cross-signed twins":
        # 14 + 14 certificates of two attacker keys signing each other: every
        # one verifies every certificate of the other key, so a path search
        # that tries each combination meets 14^8 paths (cryptography 48 alone
        # takes over a minute with 4 + 4, and never ends with these).
        k0, k1 = rsa_key(), rsa_key()
        extra = [make_cert("Test CA", k, signer_key, ca_name, ca=True, ski=False)
                 for _ in range(14) for k, signer_key in ((k0, k1), (k1, k0))]
        issuer_keys = [k0] * 4
    else:
        # A deep dead end (7 attacker CAs in a row) with 21 decoys holding
        # 8192-bit keys with a 64-bit exponent (the costliest check the
        # limits let through) tried at every step.
        chain_keys = [rsa_key() for _ in range(8)]
        decoys = [make_cert("Test CA", _fake_rsa(8192, (1 << 64) - 1), chain_keys[0], ca_name, ca=True, ski=False)
                  for _ in range(21)]
        chain = [make_cert("Test CA", chain_keys[i], chain_keys[i + 1], ca_name, ca=True, ski=False)
                 for i in range(7)]
        extra, issuer_keys = decoys + chain, [chain_keys[0]] * 4
    signers = []
    for i, issuer_key in enumerate(issuer_keys):
        key = rsa_key()
        signers.append(save(tmp_path, f"s{i}", key, make_cert(f"s{i}", key, issuer_key, ca_name, ski=False)))
    return signers, extra


@pytest.mark.parametrize("case", ["cross-signed twins", "deep chain with costly decoys"])
def test_chain_building_is_bounded(pki, ca, content, tmp_path, case):
    """Worst cases within the limits (4 signers, 32 certificates): every path
    search is bounded and the package is refused as untrusted."""
    signers, extra = _maze(case, ca[1].subject, tmp_path)
    assert len(signers) + len(extra) == trust.MAX_EMBEDDED_CERTIFICATES
    pkg = _package(pki, content, tmp_path / "maze.p7m", signers, "-certfile", _bundle(tmp_path / "maze.pem", extra))
    m, wall = _measured(pki, pkg)
    _refused(m, 8, "not trusted")
    assert wall < 30


def test_signer_count_is_bounded(pki, content, tmp_path):
    """Five SignerInfos (one more than verified): refused while reading, before
    any signature is checked, hence as the one integrity failure."""
    stems = ["signer", "ecsigner", "stranger", "recip", "rogue"]
    assert len(stems) == trust.MAX_SIGNER_INFOS + 1
    pkg = _package(pki, content, tmp_path / "five.p7m", [(pki / f"{s}.key", pki / f"{s}.pem") for s in stems])
    m, wall = _measured(pki, pkg)
    _refused(m, 7)
    assert wall < 30
