"""Loading of certificates, private keys, PKCS#12 bundles and password files.

Every failure becomes ``KeyMaterialError(where=path)``; messages never carry
key material or passwords (only the path and a generic reason).
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from dicompack.errors import KeyMaterialError

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

_MAX_KEY_FILE = 16 << 20        # certificates / keys / PKCS#12 bundles
_MAX_PASSWORD_FILE = 64 << 10


def _read(path, limit: int) -> bytes:
    where = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise KeyMaterialError(f"cannot read file ({exc.strerror or type(exc).__name__})",
                               where=where) from None
    if len(data) > limit:
        raise KeyMaterialError("file is too large for key material", where=where)
    if not data:
        raise KeyMaterialError("file is empty", where=where)
    return data


def load_certificates(path) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, or the single certificate of a DER file."""
    where = os.fspath(path)
    data = _read(path, _MAX_KEY_FILE)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise KeyMaterialError("not a PEM or DER X.509 certificate", where=where) from None
    if not certs:
        raise KeyMaterialError("no certificate found", where=where)
    return certs


def load_certificate(path) -> x509.Certificate:
    """The first certificate of ``path`` (PEM or DER)."""
    return load_certificates(path)[0]


def _check_key_type(key, where: str | None):
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyMaterialError("unsupported key type (RSA or EC keys only)", where=where)
    return key


def load_private_key(path, password: bytes | None = None) -> PrivateKey:
    """An RSA or EC private key: PEM (PKCS#8, encrypted PKCS#8, traditional
    RSA/EC, encrypted traditional) or DER (PKCS#8 / traditional)."""
    where = os.fspath(path)
    data = _read(path, _MAX_KEY_FILE)
    if isinstance(password, str):
        password = password.encode("utf-8")
    pem = b"-----BEGIN" in data
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    try:
        key = loader(data, password=password or None)
    except TypeError:
        # Raised both for "password needed" and "password given but key not encrypted".
        if password:
            try:
                key = loader(data, password=None)
            except (TypeError, ValueError):
                raise KeyMaterialError("private key is encrypted: a password is required",
                                       where=where) from None
        else:
            raise KeyMaterialError("private key is encrypted: a password is required",
                                   where=where) from None
    except ValueError:
        raise KeyMaterialError("cannot load private key (wrong password, corrupt file or "
                               "unsupported format)", where=where) from None
    except Exception:  # noqa: BLE001 - e.g. UnsupportedAlgorithm
        raise KeyMaterialError("cannot load private key (unsupported format)",
                               where=where) from None
    return _check_key_type(key, where)


def load_pkcs12(path, password: bytes | None):
    """``(key, cert, chain)`` from a PKCS#12 bundle."""
    where = os.fspath(path)
    data = _read(path, _MAX_KEY_FILE)
    if isinstance(password, str):
        password = password.encode("utf-8")
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(data, password or None)
    except (ValueError, TypeError):
        raise KeyMaterialError("cannot open PKCS#12 bundle (wrong password or corrupt file)",
                               where=where) from None
    except Exception:  # noqa: BLE001
        raise KeyMaterialError("cannot open PKCS#12 bundle (unsupported format)",
                               where=where) from None
    if key is not None and cert is None and chain:
        # OpenSSL pairs the key with the certificate holding its public key.
        raise KeyMaterialError("no certificate in the PKCS#12 bundle matches its private key",
                               where=where)
    if key is None or cert is None:
        raise KeyMaterialError("PKCS#12 bundle lacks a private key or its certificate",
                               where=where)
    return _check_key_type(key, where), cert, list(chain or [])


def check_pwri_password(password: bytes, where: str | None = None) -> bytes:
    """PS3.15 D.1: the PBKDF2 password is an octet string in the DICOM Default
    Character Repertoire; we accept printable ASCII (0x20-0x7E)."""
    if isinstance(password, str):
        try:
            password = password.encode("ascii")
        except UnicodeEncodeError:
            raise KeyMaterialError("password must be printable ASCII (PS3.15 D.1 Default "
                                   "Character Repertoire)", where=where) from None
    if not password:
        raise KeyMaterialError("password is empty", where=where)
    if any(b < 0x20 or b > 0x7E for b in password):
        raise KeyMaterialError("password must be printable ASCII (PS3.15 D.1 Default "
                               "Character Repertoire)", where=where)
    return bytes(password)


# A package password is the only thing between an outsider holding the
# package and the PHI in it, and it is attacked offline: a guess costs one
# PBKDF2 run, with no lockout.  12 characters is the OWASP ASVS 4.0 V2.1.1
# minimum for user-set passwords; the PS3.15 D.1 repertoire caps the
# alphabet at the 95 printable ASCII characters.  Receiving accepts any
# password (the sender chose it; refusing it would only lock the data out).
MIN_PACKAGE_PASSWORD = 12


def check_new_password(password: bytes, where: str | None = None) -> bytes:
    """A password to encrypt a package with: printable ASCII, at least
    ``MIN_PACKAGE_PASSWORD`` characters.  Never quoted in the error."""
    password = check_pwri_password(password, where=where)
    if len(password) < MIN_PACKAGE_PASSWORD:
        raise KeyMaterialError(f"package password is too short: use at least {MIN_PACKAGE_PASSWORD} "
                               "printable ASCII characters (a passphrase of several words)", where=where)
    return password


def read_password_file(path) -> bytes:
    """The password in ``path`` minus one trailing newline (LF or CRLF)."""
    where = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise KeyMaterialError(f"cannot read password file ({exc.strerror or type(exc).__name__})",
                               where=where) from None
    if len(data) > _MAX_PASSWORD_FILE:
        raise KeyMaterialError("password file is too large", where=where)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return check_pwri_password(data, where=where)


# ---------------------------------------------------------------- packing checks
# Mistakes in the sender's key material are refused when packing (exit 2):
# left alone they reach the receiver as "not a recipient", "signer
# untrusted" or, worse, "the package was altered".

MIN_RSA_BITS = 2048          # NIST SP 800-57 Part 1: 112-bit security and up
MIN_EC_BITS = 256            # P-256 and larger curves


def _check_public_key(key, where: str | None, role: str) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyMaterialError(f"{role} RSA key of {key.key_size} bits is too weak "
                                   f"(at least {MIN_RSA_BITS})", where=where)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            raise KeyMaterialError(f"{role} EC key on {key.curve.name} is too weak "
                                   f"(at least {MIN_EC_BITS}-bit curves)", where=where)
    else:
        raise KeyMaterialError(f"{role} key type {type(key).__name__} is not usable "
                               "(RSA or EC keys only)", where=where)


def _cert_public_key(cert: x509.Certificate, where: str | None, role: str):
    try:
        return cert.public_key()
    except Exception:  # noqa: BLE001 - unsupported or malformed SubjectPublicKeyInfo
        raise KeyMaterialError(f"{role} certificate has an unusable public key", where=where) from None


def _key_usage(cert: x509.Certificate, where: str | None, role: str):
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        raise KeyMaterialError(f"{role} certificate has malformed extensions", where=where) from None


def _check_validity(cert: x509.Certificate, where: str | None, role: str) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    if now > cert.not_valid_after_utc:
        raise KeyMaterialError(f"{role} certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                               where=where)
    if now < cert.not_valid_before_utc:
        raise KeyMaterialError(f"{role} certificate is not valid before "
                               f"{cert.not_valid_before_utc:%Y-%m-%d}", where=where)


def check_recipient_certificate(cert: x509.Certificate, where: str | None = None) -> x509.Certificate:
    """A certificate to encrypt for: a strong RSA or EC key, valid today,
    whose keyUsage (when present) allows key transport (RSA) or key
    agreement (EC)."""
    key = _cert_public_key(cert, where, "recipient")
    _check_public_key(key, where, "recipient")
    _check_validity(cert, where, "recipient")
    usage = _key_usage(cert, where, "recipient")
    if usage is not None:
        if isinstance(key, rsa.RSAPublicKey) and not usage.key_encipherment:
            raise KeyMaterialError("recipient certificate keyUsage does not allow keyEncipherment "
                                   "(is this a signing certificate?)", where=where)
        if isinstance(key, ec.EllipticCurvePublicKey) and not usage.key_agreement:
            raise KeyMaterialError("recipient certificate keyUsage does not allow keyAgreement "
                                   "(is this a signing certificate?)", where=where)
    return cert


def check_signer(key, cert: x509.Certificate, where: str | None = None) -> None:
    """The signer's key must be the private half of its certificate's key
    (else every receiver reports the package as altered), strong, and the
    certificate usable for signing today (else receivers report it untrusted)."""
    _check_key_type(key, where)
    public = _cert_public_key(cert, where, "signer")
    _check_public_key(public, where, "signer")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != public.public_bytes(der, spki):
        raise KeyMaterialError("signer private key does not match the signer certificate", where=where)
    _check_validity(cert, where, "signer")
    usage = _key_usage(cert, where, "signer")
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        raise KeyMaterialError("signer certificate keyUsage allows neither digitalSignature nor "
                               "nonRepudiation", where=where)
