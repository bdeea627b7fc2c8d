"""Cryptographic pieces of the CMS layer: content ciphers, recipient key
management (RSA key transport, RFC 3211 PWRI, RFC 5753 ECDH), signatures and
certificate-path checks.  Pure functions over asn1crypto / cryptography
objects; the streaming framing lives in ``cms.py`` and ``cms_ber.py``."""
from __future__ import annotations

import hmac
import os
from datetime import datetime, timezone

from asn1crypto import algos, core
from asn1crypto import cms as acms
from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dicompack.container import cms_asn1 as A
from dicompack.errors import DecryptionError, DicompackError, PackageInvalidError, SignatureInvalidError, UsageError

try:  # cryptography >= 43 moved 3DES to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES

HASHES = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
          "sha384": hashes.SHA384, "sha512": hashes.SHA512}
WRITE_DIGESTS = ("sha256", "sha384", "sha512")

# Work a package may ask of us before anything about it is trusted
# (spec/package.md, "Limits on receipt").  OWASP (2023) recommends 600,000
# PBKDF2-HMAC-SHA256 iterations (our default) and 1,300,000 for HMAC-SHA1;
# 5,000,000 leaves room for future raises while bounding the worst case to
# MAX_PASSWORD_ATTEMPTS x 5,000,000 iterations (about 2 s of SHA-256 here).
MAX_PBKDF2_ITERATIONS = 5_000_000
# Below this a sender chose a password hash an eavesdropper can brute-force
# cheaply; ``openssl cms -pwri_password`` (3.0) writes 2,048 iterations of
# HMAC-SHA1, readable with ``--legacy`` only (floor LEGACY_MIN_PBKDF2_ITERATIONS,
# the RFC 8018 minimum).
MIN_PBKDF2_ITERATIONS = 10_000
LEGACY_MIN_PBKDF2_ITERATIONS = 1_000
MAX_RECIPIENTS = 64            # recipient infos (each kari's recipientEncryptedKeys counted)
MAX_PASSWORD_ATTEMPTS = 4      # password recipient infos we derive a key for

# name -> (asn1 name, key size, block size, mode)
CIPHERS = {
    "aes128_cbc": (16, 16, "cbc"), "aes192_cbc": (24, 16, "cbc"), "aes256_cbc": (32, 16, "cbc"),
    "tripledes_3key": (24, 8, "cbc"),
    "aes128_gcm": (16, 16, "gcm"), "aes192_gcm": (24, 16, "gcm"), "aes256_gcm": (32, 16, "gcm"),
}
CIPHER_LABELS = {"aes128_cbc": "aes-128-cbc", "aes192_cbc": "aes-192-cbc",
                 "aes256_cbc": "aes-256-cbc", "tripledes_3key": "des-ede3-cbc",
                 "aes128_gcm": "aes-128-gcm", "aes192_gcm": "aes-192-gcm",
                 "aes256_gcm": "aes-256-gcm"}


def _block_cipher(name: str, key: bytes):
    return TripleDES(key) if name == "tripledes_3key" else algorithms.AES(key)


def hash_obj(name: str):
    try:
        return hashes.Hash(HASHES[name]())
    except KeyError:
        raise PackageInvalidError(f"unsupported digest algorithm {name}") from None


# ------------------------------------------------------------ content ciphers

class ContentEncryptor:
    def __init__(self, name: str, key: bytes):
        self.name = name
        _, block, mode = CIPHERS[name]
        if mode == "gcm":
            self.iv = os.urandom(12)
            self.params = A.EncryptionAlgorithm({"algorithm": name, "parameters": A.GcmParams(
                {"aes_nonce": self.iv, "aes_icvlen": 16})})
            self._enc = Cipher(algorithms.AES(key), modes.GCM(self.iv)).encryptor()
            self._pad = None
        else:
            self.iv = os.urandom(block)
            self.params = A.EncryptionAlgorithm({"algorithm": name,
                                                 "parameters": core.OctetString(self.iv)})
            self._enc = Cipher(_block_cipher(name, key), modes.CBC(self.iv)).encryptor()
            self._pad = sympad.PKCS7(block * 8).padder()
        self.tag = None

    def update(self, data: bytes) -> bytes:
        if self._pad is not None:
            data = self._pad.update(data)
        return self._enc.update(data)

    def finalize(self) -> bytes:
        out = b""
        if self._pad is not None:
            out = self._enc.update(self._pad.finalize())
        out += self._enc.finalize()
        if self._pad is None:
            self.tag = self._enc.tag
        return out


class ContentDecryptor:
    """Streaming decryption; ``finalize`` raises SignatureInvalidError when the
    CBC padding or the GCM tag is wrong (the ciphertext tail was altered)."""

    def __init__(self, alg: A.EncryptionAlgorithm, key: bytes, where: str):
        name = alg["algorithm"].native
        if name not in CIPHERS:
            raise PackageInvalidError(f"unsupported content-encryption algorithm {name}",
                                      where=where)
        keylen, block, mode = CIPHERS[name]
        self.name = name
        self.keylen = keylen
        if len(key) != keylen:
            raise DecryptionError("content-encryption key has the wrong length: "
                                  "wrong key or not a recipient")
        try:
            params = alg["parameters"]
            if mode == "gcm" and not isinstance(params, A.GcmParams):
                params = A.GcmParams.load(params.dump())
            elif mode != "gcm":
                params = params.native
            if mode == "gcm":
                iv = params["aes_nonce"].native
                self.icvlen = params["aes_icvlen"].native
            else:
                iv = params
        except Exception:  # noqa: BLE001
            raise PackageInvalidError("malformed content-encryption parameters",
                                      where=where) from None
        if mode == "gcm":
            # RFC 5084 allows other sizes, but a short nonce repeats and a short
            # tag is forgeable; 12 and 16 are what we and OpenSSL write.
            if not isinstance(iv, bytes) or len(iv) != 12 or self.icvlen != 16:
                raise PackageInvalidError("GCM parameters refused: the nonce must be 12 bytes and "
                                          "the tag 16 bytes", where=where)
            self._dec = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
            self._unpad = None
        else:
            if not isinstance(iv, bytes) or len(iv) != block:
                raise PackageInvalidError("bad CBC IV", where=where)
            self._dec = Cipher(_block_cipher(name, key), modes.CBC(iv)).decryptor()
            self._unpad = sympad.PKCS7(block * 8).unpadder()
        self.aead = mode == "gcm"
        self.block = block
        self._seen = 0

    def update(self, data: bytes) -> bytes:
        self._seen += len(data)
        out = self._dec.update(data)
        if self._unpad is not None:
            out = self._unpad.update(out)
        return out

    def finalize(self, tag: bytes | None = None) -> bytes:
        try:
            if self.aead:
                if tag is None or len(tag) != self.icvlen:
                    raise SignatureInvalidError("authentication tag missing or of the wrong "
                                                "length", where="AuthEnvelopedData.mac")
                return self._dec.finalize_with_tag(tag)
            if self._seen % self.block or not self._seen:
                raise SignatureInvalidError("ciphertext length is not a multiple of the "
                                            "block size (truncated or altered)",
                                            where="EncryptedContentInfo.encryptedContent")
            out = self._dec.finalize()
            return self._unpad.update(out) + self._unpad.finalize()
        except InvalidTag:
            raise SignatureInvalidError("authentication tag mismatch: the encrypted content "
                                        "was altered", where="AuthEnvelopedData.mac") from None
        except ValueError:
            raise SignatureInvalidError("bad padding at the end of the encrypted content "
                                        "(altered or truncated ciphertext)",
                                        where="EncryptedContentInfo.encryptedContent") from None


# ------------------------------------------------------------ identifiers

def issuer_serial(cert: x509.Certificate) -> acms.IssuerAndSerialNumber:
    return acms.IssuerAndSerialNumber({
        "issuer": ax509.Name.load(cert.issuer.public_bytes()),
        "serial_number": cert.serial_number,
    })


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return None


def rid_matches(rid, cert: x509.Certificate) -> bool:
    """RecipientIdentifier / SignerIdentifier / KeyAgreementRecipientIdentifier."""
    try:
        if rid.name == "issuer_and_serial_number":
            ias = rid.chosen
            return (ias["serial_number"].native == cert.serial_number and
                    ias["issuer"].dump() == ax509.Name.load(cert.issuer.public_bytes()).dump())
        if rid.name in ("subject_key_identifier",):
            return rid.chosen.native == _ski(cert)
        if rid.name == "r_key_id":
            return rid.chosen["subject_key_identifier"].native == _ski(cert)
    except Exception:  # noqa: BLE001
        return False
    return False


def describe_cert(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:#x})"


# ------------------------------------------------------------ RSA key transport

def _oaep(params: algos.RSAESOAEPParams) -> padding.OAEP:
    h = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise ValueError("unsupported OAEP mask generation function")
    mh = mgf["parameters"]["algorithm"].native
    label = params["p_source_algorithm"]["parameters"].native or None
    return padding.OAEP(mgf=padding.MGF1(HASHES[mh]()), algorithm=HASHES[h](), label=label)


def build_ktri(cert: x509.Certificate, cek: bytes, mode: str) -> A.RecipientInfo:
    pub = cert.public_key()
    if mode == "oaep":
        params = algos.RSAESOAEPParams({
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        })
        alg = A.KeyEncryptionAlgorithm({"algorithm": "rsaes_oaep", "parameters": params})
        enc = pub.encrypt(cek, _oaep(params))
    elif mode == "pkcs1v15":
        alg = A.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"})
        enc = pub.encrypt(cek, padding.PKCS1v15())
    else:
        raise UsageError(f"unknown RSA padding {mode!r} (use 'oaep' or 'pkcs1v15')")
    return A.RecipientInfo(name="ktri", value=A.KeyTransRecipientInfo({
        "version": "v0", "rid": acms.RecipientIdentifier(
            name="issuer_and_serial_number", value=issuer_serial(cert)),
        "key_encryption_algorithm": alg, "encrypted_key": enc}))


def is_pkcs1v15(ktri) -> bool:
    return ktri["key_encryption_algorithm"]["algorithm"].native in ("rsaes_pkcs1v15", "rsa")


def unwrap_ktri(ktri, key: rsa.RSAPrivateKey, key_length: int = 32) -> bytes:
    """The CEK.  OAEP: raises ValueError for a wrong key (OpenSSL's OAEP
    decoding fails as one constant-time error, so this exit-6 answer tells an
    attacker only that the ciphertext was not made for this key: no Manger
    oracle).  PKCS#1 v1.5: never fails (RFC 3218 2.3.2 against Bleichenbacher):
    a bad padding or a key of the wrong length yields a random CEK, so the
    failure surfaces later as the same integrity error as any wrong CEK.
    (cryptography 48 / OpenSSL 3.2+ already do implicit rejection, returning
    a pseudo-random message of pseudo-random length, and still raise for
    some inputs; the length check would be an oracle on its own.)"""
    alg = ktri["key_encryption_algorithm"]
    name = alg["algorithm"].native
    enc = ktri["encrypted_key"].native
    if name == "rsaes_oaep":
        return key.decrypt(enc, _oaep(alg["parameters"]))
    if not is_pkcs1v15(ktri):
        raise ValueError(f"unsupported key-transport algorithm {name}")
    fallback = os.urandom(key_length)       # drawn first: same work on both paths
    try:
        cek = key.decrypt(enc, padding.PKCS1v15())
    except ValueError:
        return fallback
    return cek if len(cek) == key_length else fallback


# ------------------------------------------------------------ RFC 3211 PWRI

def _pwri_wrap(kek_name: str, kek: bytes, iv: bytes, cek: bytes) -> bytes:
    block = CIPHERS[kek_name][1]
    body = bytes([len(cek)]) + bytes(b ^ 0xFF for b in cek[:3]) + cek
    total = max(2 * block, -(-len(body) // block) * block)
    body += os.urandom(total - len(body))
    c = Cipher(_block_cipher(kek_name, kek), modes.CBC(iv)).encryptor()
    first = c.update(body) + c.finalize()
    c = Cipher(_block_cipher(kek_name, kek), modes.CBC(first[-block:])).encryptor()
    return c.update(first) + c.finalize()


def _pwri_unwrap(kek_name: str, kek: bytes, iv: bytes, wrapped: bytes) -> bytes | None:
    block = CIPHERS[kek_name][1]
    n = len(wrapped)
    if n < 2 * block or n % block:
        return None
    ecb = Cipher(_block_cipher(kek_name, kek), modes.ECB()).decryptor()
    last = ecb.update(wrapped[-block:]) + ecb.finalize()
    prev = wrapped[-2 * block:-block]
    iv2 = bytes(a ^ b for a, b in zip(last, prev))
    d = Cipher(_block_cipher(kek_name, kek), modes.CBC(iv2)).decryptor()
    inner = d.update(wrapped) + d.finalize()
    d = Cipher(_block_cipher(kek_name, kek), modes.CBC(iv)).decryptor()
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
    wrapped = _pwri_wrap("aes256_cbc", kek, iv, cek)
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
    return _pwri_unwrap(kek_name, kek, iv, pwri["encrypted_key"].native)


# ------------------------------------------------------------ RFC 5753 ECDH

_ECDH_KDF = {"dh_std_sha1kdf": "sha1", "dh_std_sha256kdf": "sha256",
             "dh_std_sha384kdf": "sha384", "dh_std_sha512kdf": "sha512"}
_WRAP_LEN = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}


def _ecdh_kek(shared: bytes, hname: str, wrap_name: str, ukm: bytes | None) -> bytes:
    klen = _WRAP_LEN[wrap_name]
    info = {"key_info": {"algorithm": wrap_name}, "supp_pub_info": (klen * 8).to_bytes(4, "big")}
    if ukm is not None:
        info["entity_u_info"] = ukm
    sinfo = A.EccCmsSharedInfo(info).dump()
    return X963KDF(HASHES[hname](), klen, sinfo).derive(shared)


def build_kari(cert: x509.Certificate, cek: bytes) -> A.RecipientInfo:
    from cryptography.hazmat.primitives import serialization
    pub = cert.public_key()
    eph = ec.generate_private_key(pub.curve)
    shared = eph.exchange(ec.ECDH(), pub)
    kek = _ecdh_kek(shared, "sha256", "aes256_wrap", None)
    spki = eph.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return A.RecipientInfo(name="kari", value=A.KeyAgreeRecipientInfo({
        "version": "v3",
        "originator": acms.OriginatorIdentifierOrKey(
            name="originator_key", value=akeys.PublicKeyInfo.load(spki)),
        "key_encryption_algorithm": A.KeyEncryptionAlgorithm({
            "algorithm": "dh_std_sha256kdf",
            "parameters": A.KeyWrapAlgorithm({"algorithm": "aes256_wrap"})}),
        "recipient_encrypted_keys": [{
            "rid": acms.KeyAgreementRecipientIdentifier(
                name="issuer_and_serial_number", value=issuer_serial(cert)),
            "encrypted_key": aes_key_wrap(kek, cek)}],
    }))


def unwrap_kari(kari, rek, key: ec.EllipticCurvePrivateKey) -> bytes:
    kea = kari["key_encryption_algorithm"]
    name = kea["algorithm"].native
    if name not in _ECDH_KDF:
        raise ValueError(f"unsupported key-agreement algorithm {name}")
    wrap = kea["parameters"]
    if not isinstance(wrap, acms.KeyEncryptionAlgorithm):
        wrap = A.KeyWrapAlgorithm.load(wrap.dump())
    wrap_name = wrap["algorithm"].native
    if wrap_name not in _WRAP_LEN:
        raise ValueError(f"unsupported key-wrap algorithm {wrap_name}")
    orig = kari["originator"]
    if orig.name != "originator_key":
        raise ValueError("only originatorKey (ephemeral-static ECDH) is supported")
    point = orig.chosen["public_key"].native
    peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
    shared = key.exchange(ec.ECDH(), peer)
    ukm = kari["ukm"].native
    kek = _ecdh_kek(shared, _ECDH_KDF[name], wrap_name, ukm)
    return aes_key_unwrap(kek, rek["encrypted_key"].native)


# ------------------------------------------------------------ recipients (read)

def _count_recipients(rinfos) -> int:
    total = 0
    for ri in rinfos:
        total += len(ri.chosen["recipient_encrypted_keys"]) if ri.name == "kari" else 1
    return total


def recover_cek(rinfos, *, key=None, cert=None, password=None, content_key_length: int | None = None,
                legacy: bool = False) -> tuple[bytes, str]:
    """Try every RecipientInfo that ``key``/``cert``/``password`` can open.
    Returns (cek, description) or raises DecryptionError.

    ``content_key_length`` (the content cipher's key size) lets PKCS#1 v1.5
    key transport substitute a random CEK of the right size on failure
    (RFC 3218 2.3.2), see ``unwrap_ktri``.  Work is bounded before anything
    is trusted: at most MAX_RECIPIENTS recipients and MAX_PASSWORD_ATTEMPTS
    PBKDF2 derivations, each within the iteration limits."""
    key_length = content_key_length or 32
    try:
        count = _count_recipients(rinfos)
    except Exception:  # noqa: BLE001 - asn1crypto lazy parse errors
        raise PackageInvalidError("malformed recipient infos", where="EnvelopedData.recipientInfos") from None
    if count > MAX_RECIPIENTS:
        raise PackageInvalidError(f"{count} recipients: more than the limit of {MAX_RECIPIENTS}",
                                  where="EnvelopedData.recipientInfos")
    tried = passwords_tried = 0
    implicit_rejection = None           # random CEK of a PKCS#1 v1.5 recipient that did not open
    for i, ri in enumerate(rinfos):
        where = f"EnvelopedData.recipientInfos[{i}]"
        kind = ri.name
        try:
            info = ri.chosen
            if kind == "ktri" and isinstance(key, rsa.RSAPrivateKey):
                if cert is not None and not rid_matches(info["rid"], cert):
                    continue
                tried += 1
                alg = info["key_encryption_algorithm"]["algorithm"].native
                label = f"ktri {alg} {describe_cert(cert) if cert else '(private key)'}"
                if is_pkcs1v15(info):
                    cek = unwrap_ktri(info, key, key_length)
                    if cert is not None:
                        return cek, label       # ours by rid: success and failure look the same
                    # No certificate to pick our recipient info: try the others
                    # first, fall back on this (possibly random) key.
                    implicit_rejection = implicit_rejection or (cek, label)
                    continue
                try:
                    cek = unwrap_ktri(info, key, key_length)
                except ValueError:
                    continue
                return cek, label
            if kind == "kari" and isinstance(key, ec.EllipticCurvePrivateKey):
                for rek in info["recipient_encrypted_keys"]:
                    if cert is not None and not rid_matches(rek["rid"], cert):
                        continue
                    tried += 1
                    try:
                        cek = unwrap_kari(info, rek, key)
                    except (ValueError, InvalidUnwrap):
                        continue      # AES key wrap is authenticated: no oracle to hide
                    alg = info["key_encryption_algorithm"]["algorithm"].native
                    return cek, f"kari {alg} {describe_cert(cert) if cert else '(private key)'}"
            if kind == "pwri" and password is not None:
                if passwords_tried >= MAX_PASSWORD_ATTEMPTS:
                    break
                tried += 1
                passwords_tried += 1
                cek = unwrap_pwri(info, password, legacy, where)
                if cek is not None:
                    return cek, "pwri pbkdf2"
        except DicompackError:
            raise
        except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
            raise PackageInvalidError(f"unusable recipient info ({type(exc).__name__}: "
                                      f"{_safe(exc)})", where=where) from None
        except Exception as exc:  # noqa: BLE001 - asn1crypto lazy parse errors
            raise PackageInvalidError(f"malformed recipient info ({type(exc).__name__})",
                                      where=where) from None
    if implicit_rejection is not None:
        return implicit_rejection
    if key is None and password is None:
        raise DecryptionError("no private key or password given to open the package")
    if not tried:
        raise DecryptionError("not a recipient of this package (no matching recipient info)",
                              where="EnvelopedData.recipientInfos")
    if passwords_tried >= MAX_PASSWORD_ATTEMPTS:
        raise DecryptionError(f"wrong key or wrong password (tried the first {MAX_PASSWORD_ATTEMPTS} "
                              "password recipient infos)", where="EnvelopedData.recipientInfos")
    raise DecryptionError("wrong key or wrong password: no recipient info could be opened",
                          where="EnvelopedData.recipientInfos")


def _safe(exc: Exception) -> str:
    s = str(exc)
    return s[:120] if s.isprintable() else "invalid value"


# ------------------------------------------------------------ signatures

def signature_params(key, digest: str, rsa_padding: str):
    """(asn1 SignedDigestAlgorithm, sign(data) callable)."""
    h = HASHES[digest]
    if isinstance(key, rsa.RSAPrivateKey):
        if rsa_padding == "pkcs1v15":
            alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
            return alg, lambda data: key.sign(data, padding.PKCS1v15(), h())
        if rsa_padding == "pss":
            params = algos.RSASSAPSSParams({
                "hash_algorithm": {"algorithm": digest},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest}},
                "salt_length": h.digest_size,
            })
            alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
            pss = padding.PSS(mgf=padding.MGF1(h()), salt_length=h.digest_size)
            return alg, lambda data: key.sign(data, pss, h())
        raise UsageError(f"unknown RSA signature padding {rsa_padding!r} (use 'pkcs1v15' or 'pss')")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})
        return alg, lambda data: key.sign(data, ec.ECDSA(h()))
    raise UsageError("signer key must be an RSA or EC private key")


def verify_signature(pub, sig_alg: algos.SignedDigestAlgorithm, digest_name: str,
                     signature: bytes, data: bytes | None, prehashed: bytes | None,
                     where: str = "SignedData.signerInfos[0].signature") -> str:
    """Verify; returns a label of the signature algorithm.  Raises
    SignatureInvalidError on mismatch, PackageInvalidError if unsupported.
    ``pub`` must have passed trust.check_public_key (bounded cost)."""
    try:
        salgo = sig_alg.signature_algo
    except ValueError:
        raise PackageInvalidError("unsupported signature algorithm "
                                  f"{sig_alg['algorithm'].dotted}", where=where) from None
    try:
        hname = sig_alg.hash_algo
    except ValueError:
        hname = digest_name
    if hname not in HASHES:
        raise PackageInvalidError(f"unsupported signature hash {hname}", where=where)
    if prehashed is not None and hname != digest_name:
        raise PackageInvalidError("signature hash differs from the digest algorithm", where=where)
    h = HASHES[hname]()
    hh = asym_utils.Prehashed(h) if prehashed is not None else h
    payload = prehashed if prehashed is not None else data
    try:
        if salgo == "rsassa_pkcs1v15" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, payload, padding.PKCS1v15(), hh)
            label = f"{hname}WithRSAEncryption"
        elif salgo == "rsassa_pss" and isinstance(pub, rsa.RSAPublicKey):
            p = sig_alg["parameters"]
            hname = p["hash_algorithm"]["algorithm"].native
            mh = p["mask_gen_algorithm"]["parameters"]["algorithm"].native
            h = HASHES[hname]()
            pss = padding.PSS(mgf=padding.MGF1(HASHES[mh]()), salt_length=p["salt_length"].native)
            if prehashed is not None:
                pub.verify(signature, payload, pss, asym_utils.Prehashed(h))
            else:
                pub.verify(signature, payload, pss, h)
            label = f"rsassa-pss-{hname}"
        elif salgo == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(signature, payload, ec.ECDSA(hh))
            label = f"ecdsa-with-{hname}"
        else:
            raise SignatureInvalidError(f"signature algorithm {salgo} does not match the "
                                        "signer's key type", where=where)
    except InvalidSignature:
        raise SignatureInvalidError("signature does not verify: the package was altered "
                                    "or the signer certificate was swapped", where=where) from None
    except (ValueError, TypeError, KeyError):
        raise SignatureInvalidError("signature cannot be verified (malformed signature or "
                                    "parameters)", where=where) from None
    return label


# ------------------------------------------------------------ certificate path
# Signer trust (path validation, key limits, EKU) lives in trust.py.


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
