"""Test PKI made at test time: keys and certificates for signers, recipients
and CAs, with the knobs attacks need (extended key usage, unknown critical
extensions, key sizes).  Never committed as files: generated per run."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(cn, key, issuer_key=None, issuer=None, *, ca=False, start=-1, days=30,
              eku: list | None = (ExtendedKeyUsageOID.EMAIL_PROTECTION,), extra: list | None = None,
              key_usage: bool = True, ski: bool = True) -> x509.Certificate:
    """A certificate for ``key`` signed by ``issuer_key`` (self-signed when
    None).  End-entity certificates carry emailProtection EKU by default (the
    S/MIME / CMS purpose); pass ``eku=None`` to omit the extension.
    ``extra`` is a list of (ExtensionType, critical) pairs added as is."""
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer or name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=start)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=not ca,
            data_encipherment=False, key_agreement=not ca, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                        critical=False)
        if issuer_key is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if eku and not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    for ext, critical in extra or []:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key or key, hashes.SHA256())


def save(folder: Path, stem: str, key, cert) -> tuple[Path, Path]:
    """Write ``stem.key`` (PKCS#8 PEM) and ``stem.pem``; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return folder / f"{stem}.key", folder / f"{stem}.pem"


def standard_pki(folder: Path) -> Path:
    """The PKI most tests use: ``ca`` (trust anchor), ``signer``/``ecsigner``,
    ``expired``, ``recip``/``ecrecip`` (recipients), ``stranger`` (same CA, not a
    recipient), ``otherca`` and ``rogue`` (a signer under another CA), and
    password files ``pw.txt`` / ``wrongpw.txt``."""
    d = Path(folder)
    ca_key = rsa_key()
    ca = make_cert("Test CA", ca_key, ca=True, days=3650)
    save(d, "ca", ca_key, ca)
    other_key = rsa_key()
    save(d, "otherca", other_key, make_cert("Other CA", other_key, ca=True))
    for stem, key, kwargs in [
            ("signer", rsa_key(), {}),
            ("ecsigner", ec_key(), {}),
            ("expired", rsa_key(), {"start": -30, "days": -1}),
            ("recip", rsa_key(), {}),
            ("ecrecip", ec_key(), {}),
            ("stranger", rsa_key(), {})]:
        save(d, stem, key, make_cert(stem, key, ca_key, ca.subject, **kwargs))
    rogue_key = rsa_key()
    save(d, "rogue", rogue_key, make_cert("rogue", rogue_key, other_key, name("Other CA")))
    (d / "pw.txt").write_text("correct horse battery\n")
    (d / "wrongpw.txt").write_text("wrong horse battery\n")
    return d


def make_recipient(folder: Path) -> tuple[Path, Path]:
    """A self-signed re-identification recipient in ``folder``: (certificate, key) paths."""
    key = rsa_key()
    save(folder, "reid", key, make_cert("re-identifier", key))
    return Path(folder) / "reid.pem", Path(folder) / "reid.key"
