"""Recipient key management: building RecipientInfos for writing (RSA key
transport, RFC 3211 passwords, RFC 5753 ECDH) and recovering the
content-encryption key from them on reading (recover_cek)."""
from __future__ import annotations

import os

from asn1crypto import algos
from asn1crypto import cms as acms
from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ciphers import HASHES
from dicompack.container.cms.keywrap import build_pwri, unwrap_pwri
from dicompack.container.cms.limits import MAX_PASSWORD_ATTEMPTS, MAX_RECIPIENTS
from dicompack.container.cms.model import CertRecipient, PasswordRecipient
from dicompack.errors import DecryptionError, DicompackError, PackageInvalidError, UsageError

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
    if not isinstance(pub, rsa.RSAPublicKey):
        raise UsageError("recipient certificate must hold an RSA or EC key")
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
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise UsageError("recipient certificate must hold an RSA or EC key")
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
                opened = unwrap_pwri(info, password, legacy, where)
                if opened is not None:
                    return opened, "pwri pbkdf2"
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

# ------------------------------------------------------------ recipients (write)

def build_recipient_infos(recipients: list, cek: bytes) -> tuple[list, list[str]]:
    infos, labels = [], []
    for r in recipients:
        if isinstance(r, PasswordRecipient):
            if r.iterations < 10_000:
                raise UsageError("PBKDF2 iteration count below 10,000 is too weak")
            infos.append(build_pwri(r.password, r.iterations, cek))
            labels.append(f"password (PBKDF2-HMAC-SHA256, {r.iterations} iterations, AES-256 key wrap)")
        elif isinstance(r, CertRecipient):
            pub = r.cert.public_key()
            if isinstance(pub, rsa.RSAPublicKey):
                infos.append(build_ktri(r.cert, cek, r.rsa_padding))
                padding_name = "OAEP-SHA256" if r.rsa_padding == "oaep" else "PKCS#1 v1.5"
                labels.append(f"{describe_cert(r.cert)} RSA {padding_name}")
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                infos.append(build_kari(r.cert, cek))
                labels.append(f"{describe_cert(r.cert)} ECDH (RFC 5753, outside PS3.15 D.1)")
            else:
                raise UsageError("recipient certificate must hold an RSA or EC key")
        else:
            raise UsageError(f"unknown recipient type {type(r).__name__}")
    if not infos:
        raise UsageError("a secure package needs at least one recipient or password")
    return infos, labels
