"""The embedded certificates are bound to the signature (ESS
signingCertificateV2, RFC 5035), and under AES-CBC nothing about unbound
certificate bytes reaches the user but the one integrity answer.

Why: with AES-CBC EnvelopedData (PS3.15 D.1, our default) nothing
authenticates SignedData.certificates.  Splicing ciphertext blocks puts
secret-derived plaintext inside an embedded certificate; whether it still
parses, passes the key limits or chains used to decide between exit 7, exit 8
and success: a format oracle on the plaintext.  AES-GCM has no such gap.

Packages are made by ``dicompack pack`` and by the real ``openssl cms
-sign`` / ``-encrypt``; alterations are made on the ciphertext of a real
package, at offsets found in the plaintext openssl decrypts."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from dicompack import keys
from dicompack.container import cms
from tests.security.cms_edit import flip, layout, openssl
from tests.support.pki import standard_pki
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import run_cli

INTEGRITY_LINE = f"dicompack: {cms.INTEGRITY_WHERE}: {cms.INTEGRITY_FAILURE}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = standard_pki(tmp_path_factory.mktemp("binding-pki"))
    # A certificate the sender embeds that is on no signer's path.
    (d / "extra.pem").write_bytes((d / "stranger.pem").read_bytes())
    return d


@pytest.fixture(scope="module")
def content(example_corpus, tmp_path_factory) -> Path:
    """A real package ZIP (what a signer signs)."""
    out = tmp_path_factory.mktemp("binding-zip") / "study.zip"
    run_cli("pack", example_corpus[0], "-o", out, "-q", check=True)
    return out


def _ok(proc) -> bytes:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _pack(pki: Path, src: Path, out: Path, signer: str = "signer", *extra) -> Path:
    run_cli("pack", src, "-o", out, "--recipient", pki / "recip.pem", "--sign-key", pki / f"{signer}.key",
            "--sign-cert", pki / f"{signer}.pem", *extra, "-q", check=True)
    return out


@pytest.fixture(scope="module")
def ours(pki, example_corpus, tmp_path_factory) -> Path:
    """Our default (AES-CBC) package, signer plus one non-path certificate embedded."""
    return _pack(pki, example_corpus[0], tmp_path_factory.mktemp("binding") / "ours.p7m", "signer",
                 "--sign-chain", pki / "extra.pem")


def _decrypted(pki: Path, pkg: Path) -> bytes:
    return _ok(openssl("cms", "-decrypt", "-inform", "DER", "-in", pkg, "-recip", pki / "recip.pem",
                       "-inkey", pki / "recip.key", "-binary"))


def _der(pem: Path) -> bytes:
    return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(Encoding.DER)


def _openssl_package(pki: Path, content: Path, out: Path, signer: str, cipher: str, *sign_extra) -> Path:
    """openssl cms -sign (no signingCertificateV2) then -encrypt with ``cipher``."""
    signed = out.with_suffix(".signed")
    _ok(openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-in", content, "-out", signed,
                "-signer", pki / f"{signer}.pem", "-inkey", pki / f"{signer}.key", *sign_extra))
    _ok(openssl("cms", "-encrypt", "-binary", cipher, "-outform", "DER", "-in", signed, "-out", out,
                pki / "recip.pem"))
    return out


def _keys(pki: Path) -> list:
    return ["--key", pki / "recip.key", "--cert", pki / "recip.pem", "--trust", pki / "ca.pem"]


def _answers(pki: Path, data: bytes, work: Path) -> tuple:
    """(verify --json, unpack) of ``data``, always from the same path and
    destination, with bounded memory and nothing restored."""
    pkg = work / "in" / "study.p7m"
    pkg.parent.mkdir(exist_ok=True)
    pkg.write_bytes(data)
    dest = work / "out" / "study"
    dest.parent.mkdir(exist_ok=True)
    got = []
    for args in (["verify", pkg, *_keys(pki), "--json"], ["unpack", pkg, "-o", dest, *_keys(pki), "-q"]):
        started = time.monotonic()
        m = run_cli_measured(*args, timeout=120)
        print(f"{args[0]}: exit {m.returncode}, {m.peak_rss_mb:.0f} MB, {time.monotonic() - started:.2f} s")
        assert m.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
        assert not dest.exists() or m.returncode == 0
        shutil.rmtree(dest, ignore_errors=True)
        got.append((m.returncode, m.stdout, m.stderr))
    return tuple(got)


# ---------------------------------------------------------------- the writer binds the set

def test_our_signer_info_binds_every_embedded_certificate(pki, ours):
    inner = _decrypted(pki, ours)
    signed = acms.ContentInfo.load(inner)["content"]
    embedded = [c.dump() for c in signed["certificates"]]
    assert embedded == [_der(pki / "signer.pem"), _der(pki / "extra.pem")]
    (si,) = signed["signer_infos"]
    (attr,) = [a for a in si["signed_attrs"] if a["type"].dotted == "1.2.840.113549.1.9.16.2.47"]
    (value,) = attr["values"]
    ids = [(c["hash_algorithm"]["algorithm"].native, c["cert_hash"].native) for c in value["certs"]]
    assert ids == [("sha256", hashlib.sha256(der).digest()) for der in embedded]   # signer first
    # openssl (which checks ESS signing certificates since 3.0) still verifies it.
    zipped = _ok(openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem",
                         input=inner))
    assert zipped[:2] == b"PK"
    assert run_cli("verify", ours, *_keys(pki)).returncode == 0


# ---------------------------------------------------------------- CBC: no answer from unbound bytes

def _cbc_variants(pki: Path, data: bytes, probe: Path) -> dict[str, int]:
    """Ciphertext offsets whose flip garbles one plaintext block (and flips a
    bit of the next) at chosen places of the plaintext."""
    probe.write_bytes(data)
    plain = _decrypted(pki, probe)
    ct = layout(data).ciphertext

    def garble_block_at(plain_offset: int) -> int:
        return ct[plain_offset - plain_offset % 16]

    def inside_signature_value(der: bytes) -> int:
        # The last 256 bytes of an RSA-2048-signed certificate are its
        # signature value, a primitive BIT STRING: garbling two blocks there
        # leaves a certificate that still parses, with valid key and names.
        start = plain.index(der)
        at = start + len(der) - 256 + 16
        at += -at % 16
        assert at + 32 <= start + len(der)
        return garble_block_at(at)

    extra, signer = _der(pki / "extra.pem"), _der(pki / "signer.pem")
    return {
        "extra certificate, still parses": inside_signature_value(extra),
        "extra certificate, no longer parses": garble_block_at(plain.index(extra) + 20),
        "signer certificate's own signature": inside_signature_value(signer),
        "content digest (any other alteration)": ct[len(ct) // 2],
    }


def test_altered_certificate_bytes_give_the_one_integrity_answer(pki, ours, tmp_path):
    data = ours.read_bytes()
    probe = tmp_path / "probe.p7m"
    variants = _cbc_variants(pki, data, probe)
    answers = {}
    for where, offset in variants.items():
        bad = flip(data, offset)
        if where.startswith("extra certificate, still parses"):
            # Proof the alteration lands where intended: openssl still parses
            # the certificate set and verifies the signature.
            probe.write_bytes(bad)
            inner = _decrypted(pki, probe)
            assert openssl("cms", "-verify", "-inform", "DER", "-binary", "-noverify",
                           input=inner).returncode == 0, where
        answers[where] = _answers(pki, bad, tmp_path)
    first = next(iter(answers.values()))
    for where, got in answers.items():
        assert got == first, (where, got[0][0], got[0][2], first[0][0])
    (vcode, vout, _), (ucode, _, uerr) = first
    assert vcode == ucode == 7
    assert b"integrity check" in vout
    assert uerr.decode().strip() == INTEGRITY_LINE


# ---------------------------------------------------------------- unbound (openssl-made) packages

def test_untrusted_signer_of_an_unbound_package(pki, content, tmp_path):
    """openssl writes no signingCertificateV2: under CBC an untrusted signer
    cannot be told from an alteration (exit 7, the one text); under GCM the
    certificates are authentic and the reason is given (exit 8)."""
    cbc = _openssl_package(pki, content, tmp_path / "rogue-cbc.p7m", "rogue", "-aes256")
    proc = run_cli("verify", cbc, *_keys(pki))
    assert proc.returncode == 7 and proc.stderr.decode().strip() == INTEGRITY_LINE, proc.stderr
    gcm = _openssl_package(pki, content, tmp_path / "rogue-gcm.p7m", "rogue", "-aes-256-gcm")
    proc = run_cli("verify", gcm, *_keys(pki))
    err = proc.stderr.decode().strip()
    assert proc.returncode == 8 and len(err.splitlines()) == 1, err
    assert "CN=rogue is not trusted" in err, err


def test_unbound_certificate_off_every_path(pki, content, tmp_path):
    """A trusted openssl signer that also embeds an unrelated certificate
    (-certfile): under CBC that certificate is bytes nobody vouches for, so the
    package is refused with the one answer whatever those bytes are (a spliced
    certificate answers the same); GCM authenticates it and reads the package."""
    extra = ("-certfile", pki / "extra.pem")
    cbc = _openssl_package(pki, content, tmp_path / "extra-cbc.p7m", "signer", "-aes256", *extra)
    proc = run_cli("verify", cbc, *_keys(pki))
    assert proc.returncode == 7 and proc.stderr.decode().strip() == INTEGRITY_LINE, proc.stderr
    gcm = _openssl_package(pki, content, tmp_path / "extra-gcm.p7m", "signer", "-aes-256-gcm", *extra)
    proc = run_cli("verify", gcm, *_keys(pki))
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- bound: specific trust answers

@pytest.mark.parametrize("signer,words", [("rogue", ["CN=rogue", "no path to a trust anchor"]),
                                          ("expired", ["CN=expired", "expired or not yet valid"])])
def test_bound_package_keeps_the_specific_trust_answer(pki, content, tmp_path, signer, words):
    """Our packages (AES-CBC, bound) name the untrusted or expired signer with
    exit 8; the same signer in an unbound CBC package is the one exit 7.
    (Written by the library: ``pack`` itself refuses an expired signer.)"""
    ours = tmp_path / "ours.p7m"
    with open(content, "rb") as src, open(ours, "wb") as dest:
        cms.write_secure_package(src, dest, recipients=[cms.CertRecipient(keys.load_certificate(pki / "recip.pem"))],
                                 signer=cms.Signer(keys.load_private_key(pki / f"{signer}.key"),
                                                   keys.load_certificate(pki / f"{signer}.pem")))
    proc = run_cli("verify", ours, *_keys(pki))
    err = proc.stderr.decode().strip()
    assert proc.returncode == 8 and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    theirs = _openssl_package(pki, content, tmp_path / "theirs.p7m", signer, "-aes256")
    proc = run_cli("verify", theirs, *_keys(pki))
    assert proc.returncode == 7 and proc.stderr.decode().strip() == INTEGRITY_LINE


# ---------------------------------------------------------------- every signer, in every file

def test_per_file_package_needs_the_same_set_of_signers(pki, example_corpus, tmp_path):
    """A Secure DICOM File signed by [ecsigner, signer] (both trusted) among
    files signed by [ecsigner] does not belong to the File-set: only the
    first signer used to be compared."""
    out = tmp_path / "secure-cd"
    run_cli("pack", example_corpus[0], "-o", out, "--per-file", "--recipient", pki / "recip.pem",
            "--sign-key", pki / "ecsigner.key", "--sign-cert", pki / "ecsigner.pem", "-q", check=True)
    one = next(out.rglob("IM000001"))
    dicom = tmp_path / "one.dcm"
    dicom.write_bytes(_ok(openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem",
                                  input=_decrypted(pki, one))))
    two = _openssl_package(pki, dicom, tmp_path / "two-signers.p7m", "ecsigner", "-aes-256-gcm",
                           "-signer", pki / "signer.pem", "-inkey", pki / "signer.key")
    # Precondition: the DICOMDIR's signer is the file's first SignerInfo
    # (openssl sorts the SET; the shorter ECDSA SignerInfo comes first).
    infos = acms.ContentInfo.load(_decrypted(pki, two))["content"]["signer_infos"]
    serials = [si["sid"].chosen["serial_number"].native for si in infos]
    ec_serial = x509.load_pem_x509_certificate((pki / "ecsigner.pem").read_bytes()).serial_number
    assert len(serials) == 2 and serials[0] == ec_serial
    one.write_bytes(two.read_bytes())
    proc = run_cli("unpack", out, "-o", tmp_path / "never", *_keys(pki))
    err = proc.stderr.decode()
    # The file itself verified and is trusted (both signers): only the
    # comparison with the DICOMDIR's signers refuses it.
    assert proc.returncode == 8 and "IM000001" in err, err
    assert "signed by CN=ecsigner + CN=signer, the DICOMDIR by CN=ecsigner" in err, err
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------- CBC: other unsigned elements

def _with_unsigned_extra(der: bytes, extra: str) -> bytes:
    """A signed message with one benign element no signature covers."""
    info = acms.ContentInfo.load(der)
    signed = info["content"]
    if extra == "digest algorithm no signer uses":
        signed["digest_algorithms"] = acms.DigestAlgorithms([*signed["digest_algorithms"], {"algorithm": "sha512"}])
    elif extra == "unsigned attribute":
        signer = signed["signer_infos"][0]
        signer["unsigned_attrs"] = acms.CMSAttributes([acms.CMSAttribute.load(
            bytes.fromhex("300d0603 2a0304 3106 0404 74657374".replace(" ", "")))])   # 1.2.3.4: {"test"}
        signed["signer_infos"] = acms.SignerInfos([signer])
    else:
        signed["crls"] = acms.RevocationInfoChoices([acms.RevocationInfoChoice(
            name="other", value={"other_rev_info_format": "1.2.3.4", "other_rev_info": core.Null()})])
    info["content"] = signed
    return info.dump()


@pytest.mark.parametrize("extra", ["digest algorithm no signer uses", "unsigned attribute", "CRL"])
def test_unsigned_extras_are_the_integrity_answer_under_cbc(pki, content, tmp_path, extra):
    """A trusted signer's message plus one element outside every signature:
    an attacker could frame secret blocks there, so under CBC it is the one
    integrity answer whatever it holds; GCM authenticates it and reads it."""
    signed = tmp_path / "signed.der"
    _ok(openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-in", content, "-out", signed,
                "-signer", pki / "signer.pem", "-inkey", pki / "signer.key"))
    signed.write_bytes(_with_unsigned_extra(signed.read_bytes(), extra))
    assert openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem",
                   "-in", signed).returncode == 0            # the edit itself is harmless
    answers = {}
    for cipher in ("-aes256", "-aes-256-gcm"):
        pkg = tmp_path / f"pkg{cipher}.p7m"
        _ok(openssl("cms", "-encrypt", "-binary", cipher, "-outform", "DER", "-in", signed, "-out", pkg,
                    pki / "recip.pem"))
        answers[cipher] = run_cli("verify", pkg, *_keys(pki))
    cbc, gcm = answers["-aes256"], answers["-aes-256-gcm"]
    assert cbc.returncode == 7 and cbc.stderr.decode().strip() == INTEGRITY_LINE, cbc.stderr
    assert gcm.returncode == 0, gcm.stderr
