"""Secure packages: CMS (RFC 5652) EnvelopedData around SignedData, or
DigestedData when unsigned, per the PS3.15 D.1 Basic DICOM Media Security
Profile; AuthEnvelopedData (RFC 5083, AES-GCM) on request.

Both directions stream with flat memory.  Writing uses BER indefinite
lengths: the content is encrypted and signed chunk by chunk, and the
SignerInfo (whose message-digest attribute needs the whole content) comes
after the content, where SignedData puts it anyway.  Reading is a pull
pipeline: outer BER parser -> decryptor -> inner BER parser -> spool file,
hashing on the way; the signature and the signer's chain are checked at the
end, and the caller restores nothing before this function returns.

Convention (see spec/package.md): like S/MIME and ``openssl cms -encrypt``
of a signed message, the encrypted content type is id-data and the
plaintext is the whole ContentInfo(SignedData), so that ``openssl cms
-decrypt | openssl cms -verify`` recovers the ZIP.  On reading we also
accept the strict RFC 5652 reading in which the encrypted content type is
id-signedData (or id-digestedData) and the plaintext is the bare structure.

Where things are:
  model.py       CertRecipient, PasswordRecipient, Signer, SecureInfo, SecureReport
  limits.py      every limit on receipt (recipients, PBKDF2 work, BER size and depth)
  asn1.py        ASN.1 classes asn1crypto lacks (GCM, PWRI, ECDH)
  ber.py         BER framing: the streaming pull parser (Reader) and the writer's pieces
  ciphers.py     content encryption/decryption, hash and cipher tables
  keywrap.py     RFC 3211 password recipients (PBKDF2 + key wrap)
  recipients.py  RecipientInfos: built for writing, opened by recover_cek on reading
  signature.py   signing, and the cryptographic check of one signature
  writer.py      write_secure_package
  reader.py      open_secure_package: the outer layer and the decryption pipeline
  plaintext.py   parsing the decrypted SignedData/DigestedData into the spool
  verify.py      digests, SignerInfos, signed attributes, trust; the one integrity error
  envelope.py    envelope_bytes / open_envelope_bytes for small payloads

Every error raised to a caller is a DicompackError.
"""
from dicompack.container.cms.envelope import NOT_AUTHENTIC, envelope_bytes, open_envelope_bytes
from dicompack.container.cms.limits import (
    LEGACY_MIN_PBKDF2_ITERATIONS,
    MAX_PASSWORD_ATTEMPTS,
    MAX_PBKDF2_ITERATIONS,
    MAX_RECIPIENT_INFOS_BYTES,
    MAX_RECIPIENTS,
    MIN_PBKDF2_ITERATIONS,
)
from dicompack.container.cms.model import CertRecipient, PasswordRecipient, SecureInfo, SecureReport, Signer
from dicompack.container.cms.reader import open_secure_package
from dicompack.container.cms.verify import INTEGRITY_FAILURE, INTEGRITY_WHERE
from dicompack.container.cms.writer import write_secure_package

__all__ = [
    "INTEGRITY_FAILURE",
    "INTEGRITY_WHERE",
    "LEGACY_MIN_PBKDF2_ITERATIONS",
    "MAX_PASSWORD_ATTEMPTS",
    "MAX_PBKDF2_ITERATIONS",
    "MAX_RECIPIENTS",
    "MAX_RECIPIENT_INFOS_BYTES",
    "MIN_PBKDF2_ITERATIONS",
    "NOT_AUTHENTIC",
    "CertRecipient",
    "PasswordRecipient",
    "SecureInfo",
    "SecureReport",
    "Signer",
    "envelope_bytes",
    "open_envelope_bytes",
    "open_secure_package",
    "write_secure_package",
]
