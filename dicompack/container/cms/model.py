"""The value types of secure packages: who may open one (CertRecipient,
PasswordRecipient), who signs it (Signer), and what writing and reading
report (SecureInfo, SecureReport)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
RsaEncryptionPadding = Literal["oaep", "pkcs1v15"]
RsaSignaturePadding = Literal["pkcs1v15", "pss"]
Digest = Literal["sha256", "sha384", "sha512", "sha1"]   # sha1 only with legacy=True


@dataclass(frozen=True)
class CertRecipient:
    cert: x509.Certificate
    rsa_padding: RsaEncryptionPadding = "oaep"    # OAEP with SHA-256; EC certificates use ECDH


@dataclass(frozen=True)
class PasswordRecipient:
    password: bytes
    iterations: int = 600_000


@dataclass(frozen=True)
class Signer:
    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    digest: Digest = "sha256"
    rsa_padding: RsaSignaturePadding = "pkcs1v15"   # EC keys sign with ECDSA


@dataclass(frozen=True)
class SecureInfo:
    content_encryption: str
    recipients: list
    signed: bool
    digest: str
    size: int


@dataclass
class SecureReport:
    recipient_used: str
    content_encryption: str
    signed: bool
    signer_subject: str | None = None
    signer_issuer: str | None = None
    signing_time: str | None = None
    digest_algorithm: str = ""
    signature_algorithm: str | None = None
    chain: list = field(default_factory=list)
    inner_content_type: str = ""
    convention: str = ""
    size: int = 0
    # Every SignerInfo, all verified and trusted (the single-signer fields
    # above repeat the first one): subject, issuer, signing_time, digest,
    # signature_algorithm, chain.
    signers: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
