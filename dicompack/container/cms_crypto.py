"""Cryptographic pieces of the CMS layer: content ciphers, recipient key
management (RSA key transport, RFC 3211 PWRI, RFC 5753 ECDH), signatures and
certificate-path checks.  Pure functions over asn1crypto / cryptography
objects; the streaming framing lives in ``cms.py`` and ``cms_ber.py``."""
from __future__ import annotations

import hmac
import os
from datetime import datetime, timezone

from asn1crypto import algos, cms as acms, core, keys as akeys, x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding as sympad
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils as asym_utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from ..errors import (DecryptionError, PackageInvalidError, SignatureInvalidError,
                      SignerUntrustedError, UsageError)
from . import cms_asn1 as A

try:  # cryptography >= 43 moved 3DES to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES

HASHES = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
          "sha384": hashes.SHA384, "sha512": hashes.SHA512}
WRITE_DIGESTS = ("sha256", "sha384", "sha512")
MAX_PBKDF2_ITERATIONS = 10_000_000

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
            if not iv or len(iv) > 64 or self.icvlen not in (12, 13, 14, 15, 16):
                raise PackageInvalidError("bad GCM parameters", where=where)
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


def unwrap_ktri(ktri, key: rsa.RSAPrivateKey) -> bytes:
    alg = ktri["key_encryption_algorithm"]
    name = alg["algorithm"].native
    enc = ktri["encrypted_key"].native
    if name == "rsaes_oaep":
        pad = _oaep(alg["parameters"])
    elif name in ("rsaes_pkcs1v15", "rsa"):
        pad = padding.PKCS1v15()
    else:
        raise ValueError(f"unsupported key-transport algorithm {name}")
    return key.decrypt(enc, pad)


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


def unwrap_pwri(pwri, password: bytes) -> bytes | None:
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
    if not 1 <= iters <= MAX_PBKDF2_ITERATIONS:
        raise ValueError("PBKDF2 iteration count out of range")
    if p["key_length"].native not in (None, keylen):
        raise ValueError("PBKDF2 key length does not match the KEK cipher")
    prf = p["prf"]["algorithm"].native
    if prf not in HASHES:
        raise ValueError(f"unsupported PBKDF2 PRF {prf}")
    kek = PBKDF2HMAC(HASHES[prf](), keylen, p["salt"].chosen.native, iters).derive(password)
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

def recover_cek(rinfos, *, key=None, cert=None, password=None) -> tuple[bytes, str]:
    """Try every RecipientInfo that ``key``/``cert``/``password`` can open.
    Returns (cek, description) or raises DecryptionError."""
    tried = 0
    for i, ri in enumerate(rinfos):
        where = f"EnvelopedData.recipientInfos[{i}]"
        kind = ri.name
        try:
            info = ri.chosen
            if kind == "ktri" and isinstance(key, rsa.RSAPrivateKey):
                if cert is not None and not rid_matches(info["rid"], cert):
                    continue
                tried += 1
                try:
                    cek = unwrap_ktri(info, key)
                except ValueError:
                    continue
                alg = info["key_encryption_algorithm"]["algorithm"].native
                return cek, f"ktri {alg} {describe_cert(cert) if cert else '(private key)'}"
            if kind == "kari" and isinstance(key, ec.EllipticCurvePrivateKey):
                for rek in info["recipient_encrypted_keys"]:
                    if cert is not None and not rid_matches(rek["rid"], cert):
                        continue
                    tried += 1
                    try:
                        cek = unwrap_kari(info, rek, key)
                    except (ValueError, InvalidUnwrap):
                        continue
                    alg = info["key_encryption_algorithm"]["algorithm"].native
                    return cek, f"kari {alg} {describe_cert(cert) if cert else '(private key)'}"
            if kind == "pwri" and password is not None:
                tried += 1
                cek = unwrap_pwri(info, password)
                if cek is not None:
                    return cek, "pwri pbkdf2"
        except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
            raise PackageInvalidError(f"unusable recipient info ({type(exc).__name__}: "
                                      f"{_safe(exc)})", where=where) from None
        except Exception as exc:  # noqa: BLE001 - asn1crypto lazy parse errors
            raise PackageInvalidError(f"malformed recipient info ({type(exc).__name__})",
                                      where=where) from None
    if key is None and password is None:
        raise DecryptionError("no private key or password given to open the package")
    if not tried:
        raise DecryptionError("not a recipient of this package (no matching recipient info)",
                              where="EnvelopedData.recipientInfos")
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
                     signature: bytes, data: bytes | None, prehashed: bytes | None) -> str:
    """Verify; returns a label of the signature algorithm.  Raises
    SignatureInvalidError on mismatch, PackageInvalidError if unsupported."""
    where = "SignedData.signerInfos[0].signature"
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

def _valid_at(cert: x509.Certificate, when: datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def _ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def validate_chain(signer: x509.Certificate, pool: list[x509.Certificate],
                   trust: list[x509.Certificate], times: list[datetime]) -> list[x509.Certificate]:
    """Path signer -> ... -> trust anchor; raises SignerUntrustedError."""
    where = "SignedData.certificates"
    if not trust:
        raise SignerUntrustedError("no trust anchors given: cannot establish trust in "
                                   "the signer", where=where)
    trust_der = {c.public_bytes(_DER) for c in trust}
    try:
        ku = _ext(signer, x509.KeyUsage)
    except ValueError:
        raise SignerUntrustedError("signer certificate has malformed extensions",
                                   where=where) from None
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        raise SignerUntrustedError("signer certificate keyUsage allows neither "
                                   "digitalSignature nor nonRepudiation", where=where)
    path = [signer]
    cur = signer
    anchored = signer.public_bytes(_DER) in trust_der
    while not anchored:
        if len(path) > 10:
            raise SignerUntrustedError("certificate path too long", where=where)
        nxt = None
        for cand, is_anchor in [(c, True) for c in trust] + [(c, False) for c in pool]:
            if any(cand.public_bytes(_DER) == p.public_bytes(_DER) for p in path):
                continue
            if cand.subject != cur.issuer:
                continue
            try:
                cur.verify_directly_issued_by(cand)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            nxt = cand
            anchored = is_anchor or cand.public_bytes(_DER) in trust_der
            break
        if nxt is None:
            raise SignerUntrustedError(
                f"no chain from signer {signer.subject.rfc4514_string()} to a trust anchor",
                where=where)
        path.append(nxt)
        cur = nxt
    for cert in path:
        for when in times:
            if not _valid_at(cert, when):
                raise SignerUntrustedError(
                    f"certificate {cert.subject.rfc4514_string()} is not valid at "
                    f"{when.isoformat()} (expired or not yet valid)", where=where)
    for depth, ca in enumerate(path[1:]):
        try:
            bc = _ext(ca, x509.BasicConstraints)
            cku = _ext(ca, x509.KeyUsage)
        except ValueError:
            raise SignerUntrustedError("issuer certificate has malformed extensions",
                                       where=where) from None
        name = ca.subject.rfc4514_string()
        if bc is None or not bc.ca:
            raise SignerUntrustedError(f"issuer {name} is not a CA (basicConstraints)",
                                       where=where)
        if bc.path_length is not None and depth > bc.path_length:
            raise SignerUntrustedError(f"issuer {name} pathLenConstraint exceeded", where=where)
        if cku is not None and not cku.key_cert_sign:
            raise SignerUntrustedError(f"issuer {name} keyUsage lacks keyCertSign", where=where)
    return path


from cryptography.hazmat.primitives.serialization import Encoding as _Enc  # noqa: E402

_DER = _Enc.DER


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
