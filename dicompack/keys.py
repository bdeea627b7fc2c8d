"""Loading of certificates, private keys, PKCS#12 bundles and password files.

Every failure becomes ``KeyMaterialError(where=path)``; messages never carry
key material or passwords (only the path and a generic reason).
"""
from __future__ import annotations

import os
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from .errors import KeyMaterialError

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


def _check_key_type(key, where: str):
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
