"""RFC 3211 password recipients (PWRI): the PBKDF2-derived key-encryption
key, the RFC 3211 key wrap of the content-encryption key, and the policy on
the derivation parameters a package may ask of us."""
from __future__ import annotations

import hmac
import os

from asn1crypto import algos, core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ciphers import CIPHERS, HASHES, block_cipher
from dicompack.container.cms.limits import LEGACY_MIN_PBKDF2_ITERATIONS, MAX_PBKDF2_ITERATIONS, MIN_PBKDF2_ITERATIONS
from dicompack.errors import PackageInvalidError


def pwri_wrap(kek_name: str, kek: bytes, iv: bytes, cek: bytes) -> bytes:
    """RFC 3211 2.3.1: length byte, the first three key bytes inverted (the
    check), the key, random padding to at least two blocks; encrypted twice
    in CBC, the second pass chained from the first's last block."""
    block = CIPHERS[kek_name][1]
    body = bytes([len(cek)]) + bytes(b ^ 0xFF for b in cek[:3]) + cek
    total = max(2 * block, -(-len(body) // block) * block)
    body += os.urandom(total - len(body))
    c = Cipher(block_cipher(kek_name, kek), modes.CBC(iv)).encryptor()
    first = c.update(body) + c.finalize()
    c = Cipher(block_cipher(kek_name, kek), modes.CBC(first[-block:])).encryptor()
    return c.update(first) + c.finalize()


def pwri_unwrap(kek_name: str, kek: bytes, iv: bytes, wrapped: bytes) -> bytes | None:
    """RFC 3211 2.3.2; the key, or None when the length or the check bytes
    are wrong (a wrong password, almost always)."""
    block = CIPHERS[kek_name][1]
    n = len(wrapped)
    if n < 2 * block or n % block:
        return None
    ecb = Cipher(block_cipher(kek_name, kek), modes.ECB()).decryptor()
    last = ecb.update(wrapped[-block:]) + ecb.finalize()
    prev = wrapped[-2 * block:-block]
    iv2 = bytes(a ^ b for a, b in zip(last, prev))
    d = Cipher(block_cipher(kek_name, kek), modes.CBC(iv2)).decryptor()
    inner = d.update(wrapped) + d.finalize()
    d = Cipher(block_cipher(kek_name, kek), modes.CBC(iv)).decryptor()
    plain = d.update(inner) + d.finalize()
    klen = plain[0]
    if klen < 3 or klen > n - 4:
        return None
    cek = plain[4:4 + klen]
    check = bytes(b ^ 0xFF for b in plain[1:4])
    if not hmac.compare_digest(check, cek[:3]):
        return None
    return cek


def build_pwri(password: bytes, iterations: int, cek: bytes) -> A.RecipientInfo:
    salt = os.urandom(16)
    kek = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(password)
    iv = os.urandom(16)
    wrapped = pwri_wrap("aes256_cbc", kek, iv, cek)
    kdf = algos.KdfAlgorithm({"algorithm": "pbkdf2", "parameters": algos.Pbkdf2Params({
        "salt": algos.Pbkdf2Salt(name="specified", value=salt),
        "iteration_count": iterations,
        "prf": {"algorithm": "sha256", "parameters": core.Null()},
    })})
    kea = A.KeyEncryptionAlgorithm({"algorithm": "pwri_kek", "parameters": A.EncryptionAlgorithm(
        {"algorithm": "aes256_cbc", "parameters": core.OctetString(iv)})})
    return A.RecipientInfo(name="pwri", value=A.PasswordRecipientInfo({
        "version": "v0", "key_derivation_algorithm": kdf,
        "key_encryption_algorithm": kea, "encrypted_key": wrapped}))


# Cost of one PBKDF2 iteration relative to HMAC-SHA256, measured with
# cryptography 48 on x86-64 (SHA-256 has CPU instructions, SHA-1 and SHA-512
# do not): MAX_PBKDF2_ITERATIONS is a budget of SHA-256 iterations, so a
# package cannot ask ~5x the work by naming HMAC-SHA512 (F15: 4 x 5,000,000
# SHA-512 iterations took 11 s).  Limits: SHA-256 5,000,000, SHA-1 (--legacy)
# 1,666,666, SHA-384/512 1,000,000 (OWASP recommends 210,000 for SHA-512).
_PBKDF2_PRF_COST = {"sha256": 1, "sha1": 3, "sha384": 5, "sha512": 5}


def _pbkdf2_policy(prf: str, iterations: int, salt: bytes, legacy: bool, where: str) -> None:
    """Refuse, before deriving, parameters that cost us too much or that a
    sender should not have chosen (the caller's --legacy relaxes the latter)."""
    most = MAX_PBKDF2_ITERATIONS // _PBKDF2_PRF_COST.get(prf, 5)
    if iterations > most:
        raise PackageInvalidError(f"PBKDF2 iteration count {iterations:,} above the limit of "
                                  f"{most:,} for HMAC-{prf.upper()}", where=where)
    floor = LEGACY_MIN_PBKDF2_ITERATIONS if legacy else MIN_PBKDF2_ITERATIONS
    if iterations < floor:
        raise PackageInvalidError(f"PBKDF2 iteration count {iterations:,} is too weak (at least "
                                  f"{floor:,}" + ("" if legacy else "; --legacy accepts 1,000") + ")",
                                  where=where)
    if prf == "sha1" and not legacy:
        raise PackageInvalidError("PBKDF2 with HMAC-SHA1 (openssl's default) is accepted only "
                                  "with --legacy", where=where)
    if len(salt) < 8:
        raise PackageInvalidError("PBKDF2 salt shorter than 8 bytes", where=where)


def unwrap_pwri(pwri, password: bytes, legacy: bool = False,
                where: str = "EnvelopedData.recipientInfos") -> bytes | None:
    """The CEK, or None when the password is wrong."""
    kea = pwri["key_encryption_algorithm"]
    if kea["algorithm"].native != "pwri_kek":
        raise ValueError("unsupported password key-encryption algorithm")
    inner = kea["parameters"].parsed if hasattr(kea["parameters"], "parsed") else kea["parameters"]
    if not isinstance(inner, A.EncryptionAlgorithm):
        inner = A.EncryptionAlgorithm.load(kea["parameters"].dump())
    kek_name = inner["algorithm"].native
    if kek_name not in CIPHERS or CIPHERS[kek_name][2] != "cbc":
        raise ValueError(f"unsupported PWRI key-encryption cipher {kek_name}")
    iv = inner["parameters"].native
    keylen, block, _ = CIPHERS[kek_name]
    if not isinstance(iv, bytes) or len(iv) != block:
        raise ValueError("bad PWRI IV")
    kda = pwri["key_derivation_algorithm"]
    if kda.native is None or kda["algorithm"].native != "pbkdf2":
        raise ValueError("unsupported or missing PWRI key-derivation algorithm")
    p = kda["parameters"]
    if p["salt"].name != "specified":
        raise ValueError("unsupported PBKDF2 salt source")
    iters = p["iteration_count"].native
    if p["key_length"].native not in (None, keylen):
        raise ValueError("PBKDF2 key length does not match the KEK cipher")
    prf = p["prf"]["algorithm"].native
    if prf not in HASHES or prf == "sha224":
        raise ValueError(f"unsupported PBKDF2 PRF {prf}")
    salt = p["salt"].chosen.native
    _pbkdf2_policy(prf, iters, salt, legacy, where)
    kek = PBKDF2HMAC(HASHES[prf](), keylen, salt, iters).derive(password)
    return pwri_unwrap(kek_name, kek, iv, pwri["encrypted_key"].native)
