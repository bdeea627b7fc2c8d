"""The value types of secure packages: who may open one (CertRecipient,
PasswordRecipient), who signs it (Signer), and what writing and reading
report (SecureInfo, SecureReport)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cryptography import x509


@dataclass(frozen=True)
class CertRecipient:
    cert: x509.Certificate
    rsa_padding: str = "oaep"          # 'oaep' (SHA-256) | 'pkcs1v15'; EC certificates use ECDH


@dataclass(frozen=True)
class PasswordRecipient:
    password: bytes
    iterations: int = 600_000


@dataclass(frozen=True)
class Signer:
    key: object
    cert: x509.Certificate
    chain: tuple = ()
    digest: str = "sha256"
    rsa_padding: str = "pkcs1v15"      # or 'pss'; EC keys sign with ECDSA


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
