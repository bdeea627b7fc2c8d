"""RFC 3211 password recipients (container/cms/keywrap.py): the key wrap
against an independent reading of RFC 3211 2.3, wrong passwords and
tampered check bytes, and interoperability with ``openssl cms
-pwri_password`` both ways (a stored openssl vector, and live openssl)."""
from __future__ import annotations

import io
import os
import subprocess

import pytest
from asn1crypto import cms as acms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from dicompack.container.cms import PasswordRecipient, write_secure_package
from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ciphers import ContentDecryptor
from dicompack.container.cms.keywrap import build_pwri, pwri_unwrap, pwri_wrap, unwrap_pwri
from dicompack.container.cms.recipients import recover_cek
from dicompack.errors import DecryptionError, PackageInvalidError
from tests.support.tools import require_tool

BLOCK = 16


def _cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def _reference_wrap(kek: bytes, iv: bytes, body: bytes) -> bytes:
    """RFC 3211 2.3.1 steps 3-4 on a caller-made block (so its check bytes
    may be wrong): CBC with ``iv``, then CBC again chained from the first
    pass's last block."""
    first = _cbc(kek, iv, body, True)
    return _cbc(kek, first[-BLOCK:], first, True)


def _reference_unwrap(kek: bytes, iv: bytes, wrapped: bytes) -> bytes:
    """RFC 3211 2.3.2, written from the text: the formatted key block."""
    n = len(wrapped)
    last = Cipher(algorithms.AES(kek), modes.ECB()).decryptor().update(wrapped[n - BLOCK:])
    iv2 = bytes(a ^ b for a, b in zip(last, wrapped[n - 2 * BLOCK:n - BLOCK]))
    return _cbc(kek, iv, _cbc(kek, iv2, wrapped, False), False)


@pytest.mark.parametrize("cek_len", [16, 24, 32])
def test_wrap_round_trip_and_format(cek_len):
    kek, iv, cek = os.urandom(32), os.urandom(16), os.urandom(cek_len)
    wrapped = pwri_wrap("aes256_cbc", kek, iv, cek)
    assert len(wrapped) % BLOCK == 0 and len(wrapped) >= 2 * BLOCK
    assert pwri_unwrap("aes256_cbc", kek, iv, wrapped) == cek
    block = _reference_unwrap(kek, iv, wrapped)
    assert block[0] == cek_len
    assert block[1:4] == bytes(b ^ 0xFF for b in cek[:3])
    assert block[4:4 + cek_len] == cek


def test_unwrap_of_a_reference_wrap():
    kek, iv, cek = os.urandom(32), os.urandom(16), os.urandom(32)
    body = bytes([32]) + bytes(b ^ 0xFF for b in cek[:3]) + cek + os.urandom(12)
    assert pwri_unwrap("aes256_cbc", kek, iv, _reference_wrap(kek, iv, body)) == cek


@pytest.mark.parametrize("tamper", ["check", "length", "length_small"])
def test_tampered_key_block_is_refused(tamper):
    kek, iv, cek = os.urandom(32), os.urandom(16), os.urandom(32)
    check = bytes(b ^ 0xFF for b in cek[:3])
    length = 32
    if tamper == "check":
        check = bytes([check[0] ^ 1]) + check[1:]
    elif tamper == "length":
        length = 60                 # more key bytes than the block holds
    else:
        length = 2                  # shorter than the three check bytes
    body = bytes([length]) + check + cek + os.urandom(12)
    assert pwri_unwrap("aes256_cbc", kek, iv, _reference_wrap(kek, iv, body)) is None


@pytest.mark.parametrize("size", [0, 16, 40])
def test_wrapped_key_of_a_bad_size_is_refused(size):
    assert pwri_unwrap("aes256_cbc", os.urandom(32), os.urandom(16), os.urandom(size)) is None


def test_wrong_kek_is_refused():
    kek, iv, cek = os.urandom(32), os.urandom(16), os.urandom(32)
    wrapped = pwri_wrap("aes256_cbc", kek, iv, cek)
    assert pwri_unwrap("aes256_cbc", os.urandom(32), iv, wrapped) is None


def test_password_round_trip_and_wrong_password():
    cek = os.urandom(32)
    ri = build_pwri(b"correct horse", 10_000, cek)
    assert unwrap_pwri(ri.chosen, b"correct horse") == cek
    assert unwrap_pwri(ri.chosen, b"wrong horse") is None
    with pytest.raises(DecryptionError, match="wrong key or wrong password"):
        recover_cek(A.RecipientInfos([ri]), password=b"wrong horse")
    assert recover_cek(A.RecipientInfos([ri]), password=b"correct horse") == (cek, "pwri pbkdf2")


def test_derivation_is_pbkdf2_hmac_sha256():
    """The KEK is PBKDF2-HMAC-SHA256 of the password with the stated salt and
    count: unwrapping with a KEK derived here, outside our code, works."""
    cek = os.urandom(32)
    pwri = build_pwri(b"pw", 10_000, cek).chosen
    params = pwri["key_derivation_algorithm"]["parameters"]
    kek = PBKDF2HMAC(hashes.SHA256(), 32, params["salt"].chosen.native, params["iteration_count"].native).derive(b"pw")
    iv = pwri["key_encryption_algorithm"]["parameters"]["parameters"].native
    assert pwri_unwrap("aes256_cbc", kek, iv, pwri["encrypted_key"].native) == cek


# Made once with OpenSSL 3.0: printf 'hello-pwri\n' > msg;
# openssl cms -encrypt -pwri_password secret -aes256 -in msg -binary -outform DER
# (PBKDF2-HMAC-SHA1, 2,048 iterations, 8-byte salt: what openssl writes).
OPENSSL_PWRI = bytes.fromhex(
    "3081d806092a864886f70d010703a081ca3081c7020103318183a38180020100a01b06092a864886f70d01050c300e0408"
    "c065b9710d28817002020800302c060b2a864886f70d0109100309301d060960864801650304012a04102bf88d1b01ce60"
    "80127a770bcddef15d04308c84fd766922222a9d604dc9296214aec8a606a89dda932c302a7a1ddd78926d1df5895ede6a"
    "4dde03d8ae10b8912036303c06092a864886f70d010701301d060960864801650304012a0410a278906a27e08e6a4cdaaf"
    "075cc8b1368010241f10e4e8c2fac517ff84550c8ed7a4")


def _open_openssl_envelope(der: bytes, password: bytes, legacy: bool) -> bytes:
    env = acms.ContentInfo.load(der)["content"]
    pwri = A.RecipientInfo.load(env["recipient_infos"][0].dump())
    assert pwri.name == "pwri"
    cek = unwrap_pwri(pwri.chosen, password, legacy=legacy)
    assert cek is not None
    eci = env["encrypted_content_info"]
    dec = ContentDecryptor(A.EncryptionAlgorithm.load(eci["content_encryption_algorithm"].dump()), cek, "test")
    return dec.update(eci["encrypted_content"].native) + dec.finalize()


def test_known_answer_from_openssl():
    assert _open_openssl_envelope(OPENSSL_PWRI, b"secret", legacy=True) == b"hello-pwri\n"


def test_openssl_parameters_need_legacy():
    pwri = A.RecipientInfo.load(acms.ContentInfo.load(OPENSSL_PWRI)["content"]["recipient_infos"][0].dump())
    with pytest.raises(PackageInvalidError, match="iteration count 2,048 is too weak"):
        unwrap_pwri(pwri.chosen, b"secret")


def test_live_openssl_encrypts_we_decrypt(tmp_path):
    openssl = require_tool("openssl")
    msg = tmp_path / "msg"
    msg.write_bytes(os.urandom(1000))
    out = subprocess.run([openssl, "cms", "-encrypt", "-pwri_password", "pass phrase", "-aes256",
                          "-in", str(msg), "-binary", "-outform", "DER"], capture_output=True, check=True).stdout
    assert _open_openssl_envelope(out, b"pass phrase", legacy=True) == msg.read_bytes()


def test_we_encrypt_live_openssl_decrypts(tmp_path):
    openssl = require_tool("openssl")
    payload = os.urandom(3000)
    package = io.BytesIO()
    write_secure_package(io.BytesIO(payload), package, recipients=[PasswordRecipient(b"pass phrase", 10_000)])
    path = tmp_path / "package.p7m"
    path.write_bytes(package.getvalue())
    proc = subprocess.run([openssl, "cms", "-decrypt", "-pwri_password", "pass phrase", "-inform", "DER",
                           "-in", str(path), "-binary"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    # The plaintext is ContentInfo(DigestedData) holding the payload.
    digested = acms.ContentInfo.load(proc.stdout)
    assert digested["content_type"].native == "digested_data"
    assert digested["content"]["encap_content_info"]["content"].native == payload
