"""Bounded work before any trust decision, weak sender-chosen parameters
refused, and hostile BER always a typed one-line error: every case runs the
real CLI (``unpack``) on a hostile file, with a timeout, a peak-RSS bound and
a check that nothing is left beside the destination or in the temp folder."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from asn1crypto import algos, core
from asn1crypto import cms as acms

from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ber import Reader
from tests.security.cms_edit import layout, nested, openssl, private_env, splice, tlv
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import run_cli

PASSWORD = "correct horse battery"      # standard_pki's pw.txt


@pytest.fixture(scope="module")
def packages(pki, example_corpus, tmp_path_factory) -> dict[str, Path]:
    src, _ = example_corpus
    d = tmp_path_factory.mktemp("packages")
    signer = ["--sign-key", pki / "signer.key", "--sign-cert", pki / "signer.pem", "-q"]
    run_cli("pack", src, "-o", d / "pw.p7m", "--password-file", pki / "pw.txt", "--pbkdf2-iterations", "20000",
            *signer, check=True)
    run_cli("pack", src, "-o", d / "cbc.p7m", "--recipient", pki / "recip.pem", *signer, check=True)
    run_cli("pack", src, "-o", d / "gcm.p7m", "--recipient", pki / "recip.pem", "--aead", *signer, check=True)
    return {"pw": d / "pw.p7m", "cbc": d / "cbc.p7m", "gcm": d / "gcm.p7m"}


def _unpack(pki: Path, data: bytes, work: Path, key_args: list, *extra, timeout: float = 60):
    """``unpack`` of a hostile file: (exit code, one-line stderr)."""
    (work / "in").mkdir(exist_ok=True)
    pkg = work / "in" / "hostile.p7m"
    pkg.write_bytes(data)
    tmp = work / "tmp"
    dest = work / "out" / "restored"
    dest.parent.mkdir(exist_ok=True)
    started = time.monotonic()
    m = run_cli_measured("unpack", pkg, "-o", dest, *key_args, *extra, "-q", env=private_env(tmp), timeout=timeout)
    wall = time.monotonic() - started
    print(f"| {work.name} | {m.returncode} | {m.peak_rss_mb:.0f} | {wall:.2f} |")
    assert m.peak_rss_mb < HOSTILE_RSS_LIMIT_MB
    assert list(tmp.iterdir()) == [] and list(dest.parent.iterdir()) == []
    lines = m.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in m.stderr.decode(), m.stderr.decode()
    return m.returncode, lines[0], wall


def _pw(pki: Path) -> list:
    return ["--password-file", pki / "pw.txt", "--trust", pki / "ca.pem"]


def _key(pki: Path) -> list:
    return ["--key", pki / "recip.key", "--cert", pki / "recip.pem", "--trust", pki / "ca.pem"]


def _pwri(iterations: int, prf: str = "sha256", salt_len: int = 16, wrapped: int = 48) -> A.RecipientInfo:
    """A password recipient info that no password opens (random wrapped key)."""
    kdf = algos.KdfAlgorithm({"algorithm": "pbkdf2", "parameters": algos.Pbkdf2Params({
        "salt": algos.Pbkdf2Salt(name="specified", value=os.urandom(salt_len)),
        "iteration_count": iterations, "prf": {"algorithm": prf, "parameters": core.Null()}})})
    kea = A.KeyEncryptionAlgorithm({"algorithm": "pwri_kek", "parameters": A.EncryptionAlgorithm(
        {"algorithm": "aes256_cbc", "parameters": core.OctetString(os.urandom(16))})})
    return A.RecipientInfo(name="pwri", value=A.PasswordRecipientInfo({
        "version": "v0", "key_derivation_algorithm": kdf, "key_encryption_algorithm": kea,
        "encrypted_key": os.urandom(wrapped)}))


def _with_recipients(data: bytes, infos: list) -> bytes:
    return splice(data, layout(data).recipient_infos, A.RecipientInfos(infos).dump())


# ------------------------------------------------------------------ CPU before trust

@pytest.mark.parametrize("case,infos,code,says", [
    ("70-recipients", lambda: [_pwri(20_000)] * 70, 4, "more than the limit of 64"),
    ("10x3M-iterations", lambda: [_pwri(3_000_000) for _ in range(10)], 6, "tried the first 4"),
    ("6M-iterations", lambda: [_pwri(6_000_000)], 4, "above the limit"),
    ("1-iteration", lambda: [_pwri(1)], 4, "too weak"),
    ("sha1-prf", lambda: [_pwri(20_000, "sha1")], 4, "--legacy"),
    ("4-byte-salt", lambda: [_pwri(20_000, salt_len=4)], 4, "salt"),
    ("2MiB-recipient-infos", lambda: [_pwri(20_000, wrapped=2 << 20)], 4, "larger than 1 MiB"),
])
def test_password_recipients_bounded(pki, packages, tmp_path, case, infos, code, says):
    work = tmp_path / case
    work.mkdir()
    got, line, wall = _unpack(pki, _with_recipients(packages["pw"].read_bytes(), infos()), work, _pw(pki))
    assert got == code and says in line, line
    assert wall < 30


def test_one_iteration_refused_even_with_legacy(pki, packages, tmp_path):
    got, line, _ = _unpack(pki, _with_recipients(packages["pw"].read_bytes(), [_pwri(1)]), tmp_path,
                           _pw(pki), "--legacy")
    assert got == 4 and "too weak" in line


def test_openssl_default_password_package_needs_legacy(pki, packages, tmp_path):
    """openssl cms -pwri_password (3.0) writes PBKDF2-HMAC-SHA1, 2,048 iterations."""
    inner = openssl("cms", "-decrypt", "-inform", "DER", "-in", packages["cbc"], "-recip", pki / "recip.pem",
                    "-inkey", pki / "recip.key", "-binary").stdout
    theirs = openssl("cms", "-encrypt", "-binary", "-outform", "DER", "-aes256", "-pwri_password", PASSWORD,
                     input=inner)
    assert theirs.returncode == 0, theirs.stderr
    got, line, _ = _unpack(pki, theirs.stdout, tmp_path, _pw(pki))
    assert got == 4 and "--legacy" in line
    dest = tmp_path / "restored"
    proc = run_cli("unpack", tmp_path / "in" / "hostile.p7m", "-o", dest, *_pw(pki), "--legacy")
    assert proc.returncode == 0, proc.stderr
    assert (dest / "DICOMDIR").is_file()


# ------------------------------------------------------------------ cipher parameters

def _gcm(nonce: bytes, icvlen: int) -> bytes:
    return A.EncryptionAlgorithm({"algorithm": "aes256_gcm", "parameters": A.GcmParams(
        {"aes_nonce": nonce, "aes_icvlen": icvlen})}).dump()


@pytest.mark.parametrize("case,kind,algorithm", [
    ("gcm-1-byte-nonce", "gcm", lambda: _gcm(b"\x01", 16)),
    ("gcm-8-byte-nonce", "gcm", lambda: _gcm(os.urandom(8), 16)),
    ("gcm-12-byte-tag", "gcm", lambda: _gcm(os.urandom(12), 12)),
    ("cbc-8-byte-iv", "cbc", lambda: A.EncryptionAlgorithm(
        {"algorithm": "aes256_cbc", "parameters": core.OctetString(os.urandom(8))}).dump()),
])
def test_weak_cipher_parameters_refused(pki, packages, tmp_path, case, kind, algorithm):
    data = packages[kind].read_bytes()
    work = tmp_path / case
    work.mkdir()
    got, line, _ = _unpack(pki, splice(data, layout(data).algorithm, algorithm()), work, _key(pki))
    assert got == 4 and ("GCM parameters refused" in line or "bad CBC IV" in line), line


# ------------------------------------------------------------------ deep and huge BER

def _signer_infos_span(inner: bytes) -> tuple[int, int]:
    """[start, end) of SignedData.signerInfos in our (BER) ContentInfo(SignedData)."""
    r = Reader(io.BytesIO(inner))
    r.header(), r.oid(), r.header(), r.header()
    r.integer()
    r.element()                 # digestAlgorithms
    r.element()                 # encapContentInfo
    h = r.header()
    if h.is_(2, 0):             # certificates
        r.element_rest(h)
        h = r.header()
    start = h.start
    r.element_rest(h)
    return start, r.pos


def test_deep_signed_attribute_is_typed(pki, packages, tmp_path):
    """A 5,000-deep signed attribute (asn1crypto recursed until RecursionError)."""
    inner = openssl("cms", "-decrypt", "-inform", "DER", "-in", packages["cbc"], "-recip", pki / "recip.pem",
                    "-inkey", pki / "recip.key", "-binary").stdout
    span = _signer_infos_span(inner)
    si = acms.SignerInfos.load(inner[span[0]:span[1]])[0]
    deep = acms.CMSAttribute.load(tlv(0x30, core.ObjectIdentifier("1.2.3.4.5").dump() + tlv(0x31, nested(5000))))
    hostile_si = acms.SignerInfo({
        "version": si["version"], "sid": si["sid"], "digest_algorithm": si["digest_algorithm"],
        "signed_attrs": acms.CMSAttributes(list(si["signed_attrs"]) + [deep]),
        "signature_algorithm": si["signature_algorithm"], "signature": si["signature"]})
    hostile_inner = splice(inner, span, acms.SignerInfos([hostile_si]).dump())
    assert nested(5000) in hostile_inner
    enc = openssl("cms", "-encrypt", "-binary", "-outform", "DER", "-aes256", "-recip", pki / "recip.pem",
                  input=hostile_inner)
    assert enc.returncode == 0, enc.stderr
    got, line, _ = _unpack(pki, enc.stdout, tmp_path, _key(pki))
    assert got == 7 and "integrity check" in line, line


@pytest.mark.parametrize("case,edit,says", [
    ("deep-recipient-info", lambda d: splice(d, layout(d).recipient_infos,
                                             tlv(0x31, tlv(0xA4, core.ObjectIdentifier("1.2.3").dump()
                                                           + nested(5000)))), "nesting too deep"),
    ("deep-algorithm", lambda d: splice(d, layout(d).algorithm, nested(5000)), "malformed CMS"),
    ("deep-octet-string", lambda d: d[:layout(d).algorithm[1]] + b"\xa0\x80" + b"\x24\x80" * 60,
     "nesting too deep"),
    ("huge-recipient-infos-length", lambda d: splice(d, layout(d).recipient_infos,
                                                     b"\x31\x88\x7f\xff\xff\xff\xff\xff\xff\xff"),
     "larger than 1 MiB"),
])
def test_hostile_ber_is_typed(pki, packages, tmp_path, case, edit, says):
    work = tmp_path / case
    work.mkdir()
    got, line, _ = _unpack(pki, edit(packages["cbc"].read_bytes()), work, _key(pki))
    assert got == 4 and says in line, line


def test_sha1_signature_needs_legacy_on_receipt(pki, example_corpus, tmp_path):
    src, _ = example_corpus
    pkg = tmp_path / "sha1.p7m"
    run_cli("pack", src, "-o", pkg, "--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
            "--sign-cert", pki / "signer.pem", "--digest", "sha1", "--legacy", "-q", check=True)
    got, line, _ = _unpack(pki, pkg.read_bytes(), tmp_path, _key(pki))
    assert got == 4 and "SHA-1" in line and "--legacy" in line, line
    assert run_cli("verify", pkg, *_key(pki), "--legacy").returncode == 0
