"""Reading a secure package (open_secure_package): a pull pipeline, outer
BER parser -> decryptor -> inner parser (plaintext.py) -> spool, hashing on
the way; the signature and the signer's chain are checked at the end
(verify.py), and the caller restores nothing before it returns."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import BinaryIO

from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ber import BerError, ChunkStream, Reader, malformed_cms
from dicompack.container.cms.ciphers import CIPHER_LABELS, CIPHERS, ContentDecryptor, hash_obj
from dicompack.container.cms.limits import MAX_RECIPIENT_INFOS_BYTES
from dicompack.container.cms.model import SecureReport
from dicompack.container.cms.plaintext import parse_plaintext
from dicompack.container.cms.recipients import recover_cek
from dicompack.container.cms.verify import conclude, not_authentic
from dicompack.errors import (
    DicompackError,
    OperationCancelledError,
    PackageInvalidError,
    SignerUntrustedError,
    UnsignedPackageError,
)


class _OuterError(Exception):
    """A framing error of the outer (ciphertext) layer met while the
    plaintext is being pulled: reported as such, not as an integrity error,
    since it does not depend on what the key decrypts."""

    def __init__(self, ber: BerError):
        super().__init__(ber.message)
        self.ber = ber


class _Failed:
    """Set when a plaintext-dependent check failed; reported only after the
    whole ciphertext has been read, as the one integrity error."""

    def __init__(self):
        self.failed = False

    def set(self) -> None:
        self.failed = True


def open_secure_package(src: BinaryIO, spool: BinaryIO, *, key=None, cert=None, password: bytes | None = None,
                        trust=(), allow_unsigned: bool = False, now: datetime | None = None,
                        on_bytes: Callable[[int], None] | None = None, legacy: bool = False) -> SecureReport:
    """Decrypt into ``spool`` and verify everything; raise a typed error
    otherwise (``spool`` is then emptied).  ``legacy`` accepts SHA-1 and
    weak password-derivation parameters chosen by old senders."""
    outer = Reader(src)
    try:
        return _open(outer, spool, key=key, cert=cert, password=password, trust=list(trust),
                     allow_unsigned=allow_unsigned, now=now or datetime.now(timezone.utc), on_bytes=on_bytes,
                     legacy=legacy)
    except _OuterError as exc:
        raise malformed_cms("package", exc.ber) from None
    except BerError as exc:
        raise malformed_cms("package", exc) from None
    except (DicompackError, OSError):
        raise                               # typed already; OSError becomes StorageError in the API
    except (RecursionError, MemoryError):
        raise PackageInvalidError("CMS structure nested too deeply or too large", where="package") from None
    except Exception as exc:  # noqa: BLE001 - asn1crypto/cryptography on a malformed outer layer
        raise PackageInvalidError(f"malformed CMS structure ({type(exc).__name__})", where="package") from None


def _recipient_infos_of(outer: Reader, h) -> A.RecipientInfos:
    if h.length is not None and h.length > MAX_RECIPIENT_INFOS_BYTES:
        raise PackageInvalidError(f"recipientInfos larger than {MAX_RECIPIENT_INFOS_BYTES >> 20} MiB",
                                  where="EnvelopedData.recipientInfos")
    try:
        raw = outer.element_rest(h, MAX_RECIPIENT_INFOS_BYTES)
    except BerError as exc:
        if exc.message == "element too large":
            raise PackageInvalidError(f"recipientInfos larger than {MAX_RECIPIENT_INFOS_BYTES >> 20} MiB",
                                      where="EnvelopedData.recipientInfos") from None
        raise
    try:
        rinfos = A.RecipientInfos.load(raw)
        len(rinfos)   # asn1crypto parses lazily: force the parse here
    except (ValueError, TypeError) as exc:
        raise PackageInvalidError(f"malformed recipientInfos ({exc})", where="EnvelopedData.recipientInfos") from None
    return rinfos


def _content_cipher(outer: Reader) -> tuple[str, A.EncryptionAlgorithm, int]:
    """EncryptedContentInfo up to the ciphertext: (content type, algorithm,
    key length).  Read before the key is recovered, so that PKCS#1 v1.5 key
    transport can fall back on a random key of the right size."""
    content_type = outer.oid()
    try:
        alg = A.EncryptionAlgorithm.load(outer.element(1024))
        name = alg["algorithm"].native
    except (ValueError, TypeError) as exc:
        raise PackageInvalidError(f"malformed content-encryption algorithm ({exc})",
                                  where="EncryptedContentInfo") from None
    if name not in CIPHERS:
        raise PackageInvalidError(f"unsupported content-encryption algorithm {name}",
                                  where="EncryptedContentInfo.contentEncryptionAlgorithm")
    return content_type, alg, CIPHERS[name][0]


def _open(outer: Reader, spool, *, key, cert, password, trust, allow_unsigned, now, on_bytes,
          legacy) -> SecureReport:
    ci = outer.expect(0, 16, "ContentInfo SEQUENCE", constructed=True)
    kind = outer.oid()
    if kind not in (A.OID_ENVELOPED_DATA, A.OID_AUTH_ENVELOPED_DATA):
        raise PackageInvalidError("not an encrypted CMS package (EnvelopedData expected)", where="ContentInfo")
    aead = kind == A.OID_AUTH_ENVELOPED_DATA
    explicit = outer.expect(2, 0, "[0] content", constructed=True)
    env = outer.expect(0, 16, "EnvelopedData SEQUENCE", constructed=True)
    outer.integer()
    nxt = outer.header()
    if nxt.is_(2, 0):                       # originatorInfo: skipped
        outer.element_rest(nxt)
        nxt = outer.header()
    if not nxt.is_(0, 17):
        raise PackageInvalidError("recipientInfos missing", where="EnvelopedData")
    rinfos = _recipient_infos_of(outer, nxt)
    eci = outer.expect(0, 16, "EncryptedContentInfo", constructed=True)
    content_type, alg, key_length = _content_cipher(outer)
    cek, recipient_used = recover_cek(rinfos, key=key, cert=cert, password=password,
                                        content_key_length=key_length, legacy=legacy)
    dec = ContentDecryptor(alg, cek, "EncryptedContentInfo.contentEncryptionAlgorithm")
    if aead != dec.aead:
        raise PackageInvalidError("content cipher does not match the envelope type", where="EncryptedContentInfo")
    body = outer.header()
    if not body.is_(2, 0):
        raise PackageInvalidError("detached encrypted content is not supported", where="EncryptedContentInfo")
    # From here on every plaintext-dependent failure is recorded, the rest
    # of the ciphertext is still decrypted to its end (the same work as on
    # success: no timing tell of where the plaintext broke), and only then
    # is the one integrity error raised.  Outer framing errors do not
    # depend on the key and are reported as they are, in both paths alike.
    failure = _Failed()
    stream = ChunkStream(_decrypting(outer.octets(body, 1 << 20), dec, failure))
    report = SecureReport(recipient_used=recipient_used, content_encryption=CIPHER_LABELS[dec.name],
                          signed=False)
    result = _read_plaintext(stream, content_type, spool, report, on_bytes, failure)
    outer.close(eci)
    if aead:
        nxt = outer.header()
        if nxt.is_(2, 1):                   # authAttrs: ignored (so their absence from GCM's AAD is harmless)
            outer.element_rest(nxt)
            nxt = outer.header()
        tag = outer.content(nxt, 64)
        try:
            dec.finalize(tag)
        except DicompackError:
            failure.set()
    while outer.more(env):                  # unprotectedAttrs / unauthAttrs
        outer.element()
    outer.close(env)
    outer.close(explicit)
    outer.close(ci)
    if not outer.at_eof():
        raise PackageInvalidError("data after the end of the package", where=f"byte {outer.pos}")
    if failure.failed:
        _discard(spool)
        raise not_authentic()
    return _concluded(result, report, spool, trust, allow_unsigned, now, legacy, authenticated=aead)


def _read_plaintext(stream: ChunkStream, content_type: str, spool, report: SecureReport, on_bytes,
                    failure: _Failed):
    """Parse the plaintext into ``spool``; on any failure record it and drain."""
    inner = Reader(stream)
    try:
        result = parse_plaintext(inner, content_type, spool, report, on_bytes)
        if stream.read(1) or not inner.at_eof():
            raise BerError("data after the signed content", inner.pos)
        return result
    except (_OuterError, OperationCancelledError):
        raise
    except OSError:
        raise                               # the spool's disk, not the package
    except Exception:  # noqa: BLE001 - whatever the plaintext made any parser raise
        failure.set()
    _drain(stream, spool, on_bytes)
    return None


def _drain(stream: ChunkStream, spool, on_bytes) -> None:
    """Decrypt what is left of the ciphertext and write it to the spool as the
    success path would (the spool is emptied afterwards)."""
    sink = hash_obj("sha256")
    while True:
        piece = stream.read(1 << 20)
        if not piece:
            return
        sink.update(piece)
        spool.write(piece)
        if on_bytes:
            on_bytes(len(piece))


def _discard(spool) -> None:
    """Drop whatever plaintext reached the spool (its folder is removed by the caller too)."""
    try:
        spool.seek(0)
        spool.truncate()
    except (OSError, ValueError, AttributeError):
        pass


def _concluded(result, report: SecureReport, spool, trust, allow_unsigned: bool, now: datetime,
               legacy: bool, authenticated: bool) -> SecureReport:
    """Digest/signature, then trust.  Untrusted-signer and unsigned-package
    errors keep their own codes: they are raised only once what they judge is
    shown authentic (see _verify_signer); anything before that is the one
    integrity error.  ``authenticated``: the content cipher authenticates the
    plaintext (AES-GCM)."""
    try:
        report = conclude(result, report, trust, allow_unsigned, now, authenticated)
    except (SignerUntrustedError, UnsignedPackageError):
        _discard(spool)
        raise
    except (OSError, OperationCancelledError):
        raise
    except Exception:  # noqa: BLE001 - see INTEGRITY_FAILURE
        _discard(spool)
        raise not_authentic() from None
    _weak_digest_policy(report, spool, legacy)
    return report


def _weak_digest_policy(report: SecureReport, spool, legacy: bool) -> None:
    """SHA-1 digests or signatures, chosen by the sender, only with --legacy
    (checked after authenticity, so the message can say what is wrong)."""
    names = [report.digest_algorithm, report.signature_algorithm or ""]
    for signer in report.signers or []:
        if isinstance(signer, dict):
            names += [str(signer.get("digest") or ""), str(signer.get("signature_algorithm") or "")]
    if not legacy and any("sha1" in n.lower().replace("-", "") for n in names):
        _discard(spool)
        raise PackageInvalidError("the package uses SHA-1 (digest or signature), accepted only with --legacy",
                                  where="SignedData.signerInfos" if report.signed else "DigestedData")


def _decrypting(ciphertext: Iterator[bytes], dec: ContentDecryptor, failure: _Failed) -> Iterator[bytes]:
    try:
        for piece in ciphertext:
            out = dec.update(piece)
            if out:
                yield out
    except BerError as exc:
        raise _OuterError(exc) from None
    if not dec.aead:
        try:
            tail = dec.finalize()           # CBC: length and padding
        except DicompackError:
            failure.set()
            return
        if tail:
            yield tail
