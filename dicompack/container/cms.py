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
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO

from asn1crypto import algos, core, tsp
from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from dicompack.container import cms_asn1 as A
from dicompack.container import cms_crypto as C
from dicompack.container import trust as T
from dicompack.container.cms_ber import (
    EOC,
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    BerError,
    ChunkStream,
    Reader,
    der_length,
    open_indefinite,
    primitive_header,
    retag,
)
from dicompack.errors import (
    DicompackError,
    OperationCancelledError,
    PackageInvalidError,
    SignatureInvalidError,
    SignerUntrustedError,
    UnsignedPackageError,
    UsageError,
)

DIGEST_OIDS = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1",
               "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}


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


# ====================================================================== writing

def _oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()


def _int(n: int) -> bytes:
    return core.Integer(n).dump()


def _octets(data: bytes) -> bytes:
    return primitive_header(TAG_OCTET_STRING, len(data)) + data


def _digest_alg(name: str) -> algos.DigestAlgorithm:
    return algos.DigestAlgorithm({"algorithm": name})


def _check_policy(signer: Signer | None, legacy: bool) -> None:
    if signer is not None:
        if signer.digest not in C.WRITE_DIGESTS and not (legacy and signer.digest == "sha1"):
            raise UsageError(f"digest {signer.digest} is not allowed (SHA-1 only with --legacy)")
        if not isinstance(signer.key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise UsageError("signer key must be an RSA or EC private key")


def _chunks(src: BinaryIO, size: int, on_bytes) -> Iterator[bytes]:
    while True:
        chunk = src.read(size)
        if not chunk:
            return
        if on_bytes:
            on_bytes(len(chunk))
        yield chunk


def _inner_stream(src: BinaryIO, signer: Signer | None, chunk_size: int, on_bytes,
                  total: list) -> Iterator[bytes]:
    """BER of ContentInfo(SignedData) or ContentInfo(DigestedData) holding
    the bytes of ``src`` as id-data, produced piece by piece."""
    digest = signer.digest if signer else "sha256"
    h = C.hash_obj(digest)
    signed = signer is not None
    yield open_indefinite(TAG_SEQUENCE) + _oid(A.OID_SIGNED_DATA if signed else A.OID_DIGESTED_DATA)
    yield b"\xa0\x80" + open_indefinite(TAG_SEQUENCE)
    if signed:
        yield _int(1) + acms.DigestAlgorithms([_digest_alg(digest)]).dump()
    else:
        yield _int(0) + _digest_alg(digest).dump()
    # encapContentInfo { id-data, [0] EXPLICIT OCTET STRING (constructed, chunked) }
    yield open_indefinite(TAG_SEQUENCE) + _oid(A.OID_DATA) + b"\xa0\x80" + open_indefinite(TAG_OCTET_STRING)
    for chunk in _chunks(src, chunk_size, on_bytes):
        h.update(chunk)
        total[0] += len(chunk)
        yield primitive_header(TAG_OCTET_STRING, len(chunk))
        yield chunk          # separately: no 1 MiB copy to prepend a header
    yield EOC + EOC + EOC
    value = h.finalize()
    if signed:
        yield _certificates(signer) + acms.SignerInfos([_signer_info(signer, value)]).dump()
    else:
        yield _octets(value)
    yield EOC + EOC + EOC


def _certificates(signer: Signer) -> bytes:
    certs = [signer.cert, *signer.chain]
    body = b"".join(c.public_bytes(Encoding.DER) for c in certs)
    return b"\xa0" + der_length(len(body)) + body


def _signing_certificate_v2(signer: Signer) -> tsp.SigningCertificateV2:
    """ESS signingCertificateV2 (RFC 5035): the SHA-256 of the signer's
    certificate first, then of every other certificate we embed.  Signed with
    the other attributes, it binds the whole certificate set to the
    signature: under AES-CBC nothing else authenticates those bytes, and a
    reader that judged them unbound would answer on unauthenticated plaintext
    (see spec/package.md, "No decryption oracle")."""
    return tsp.SigningCertificateV2({"certs": [
        tsp.ESSCertIDv2({"cert_hash": hashlib.sha256(c.public_bytes(Encoding.DER)).digest()})
        for c in (signer.cert, *signer.chain)]})     # hash_algorithm: the DEFAULT, SHA-256


def _signer_info(signer: Signer, message_digest: bytes) -> acms.SignerInfo:
    attrs = acms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [acms.Time(name="utc_time", value=core.UTCTime(
            datetime.now(timezone.utc).replace(microsecond=0)))]},
        {"type": "message_digest", "values": [message_digest]},
        {"type": "signing_certificate_v2", "values": [_signing_certificate_v2(signer)]},
    ])
    sig_alg, sign = C.signature_params(signer.key, signer.digest, signer.rsa_padding)
    signature = sign(attrs.dump())      # over the DER of the SET OF attributes (RFC 5652 5.4)
    return acms.SignerInfo({
        "version": "v1",
        "sid": acms.SignerIdentifier(name="issuer_and_serial_number", value=C.issuer_serial(signer.cert)),
        "digest_algorithm": _digest_alg(signer.digest),
        "signed_attrs": attrs,
        "signature_algorithm": sig_alg,
        "signature": signature,
    })


def _recipient_infos(recipients: list, cek: bytes) -> tuple[list, list[str]]:
    infos, labels = [], []
    for r in recipients:
        if isinstance(r, PasswordRecipient):
            if r.iterations < 10_000:
                raise UsageError("PBKDF2 iteration count below 10,000 is too weak")
            infos.append(C.build_pwri(r.password, r.iterations, cek))
            labels.append(f"password (PBKDF2-HMAC-SHA256, {r.iterations} iterations, AES-256 key wrap)")
        elif isinstance(r, CertRecipient):
            pub = r.cert.public_key()
            if isinstance(pub, rsa.RSAPublicKey):
                infos.append(C.build_ktri(r.cert, cek, r.rsa_padding))
                labels.append(f"{C.describe_cert(r.cert)} RSA {'OAEP-SHA256' if r.rsa_padding == 'oaep' else 'PKCS#1 v1.5'}")
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                infos.append(C.build_kari(r.cert, cek))
                labels.append(f"{C.describe_cert(r.cert)} ECDH (RFC 5753, outside PS3.15 D.1)")
            else:
                raise UsageError("recipient certificate must hold an RSA or EC key")
        else:
            raise UsageError(f"unknown recipient type {type(r).__name__}")
    if not infos:
        raise UsageError("a secure package needs at least one recipient or password")
    return infos, labels


def write_secure_package(src: BinaryIO, dest: BinaryIO, *, recipients: list, signer: Signer | None = None,
                         aead: bool = False, legacy: bool = False, chunk_size: int = 1 << 20,
                         on_bytes: Callable[[int], None] | None = None) -> SecureInfo:
    """Encrypt (and sign) the bytes of ``src`` into ``dest`` (may be a pipe)."""
    _check_policy(signer, legacy)
    cipher = "aes256_gcm" if aead else "aes256_cbc"
    cek = os.urandom(32)
    rinfos, labels = _recipient_infos(recipients, cek)
    enc = C.ContentEncryptor(cipher, cek)
    version = 3 if any(ri.name == "pwri" for ri in rinfos) else (
        0 if all(ri.name == "ktri" for ri in rinfos) else 2)
    outer_oid = A.OID_AUTH_ENVELOPED_DATA if aead else A.OID_ENVELOPED_DATA
    dest.write(open_indefinite(TAG_SEQUENCE) + _oid(outer_oid) + b"\xa0\x80" + open_indefinite(TAG_SEQUENCE))
    dest.write(_int(0 if aead else version) + A.RecipientInfos(rinfos).dump())
    dest.write(open_indefinite(TAG_SEQUENCE) + _oid(A.OID_DATA) + enc.params.dump() + b"\xa0\x80")
    total = [0]
    for piece in _inner_stream(src, signer, chunk_size, on_bytes, total):
        ct = enc.update(piece)
        if ct:   # one OCTET STRING segment per encrypted piece, written without copying
            dest.write(primitive_header(TAG_OCTET_STRING, len(ct)))
            dest.write(ct)
    tail = enc.finalize()
    if tail:
        dest.write(_octets(tail))
    dest.write(EOC + EOC)                   # encryptedContent, EncryptedContentInfo
    if aead:
        dest.write(_octets(enc.tag))        # mac
    dest.write(EOC + EOC + EOC)             # EnvelopedData, [0], ContentInfo
    dest.flush()
    return SecureInfo(C.CIPHER_LABELS[cipher], labels, signer is not None,
                      signer.digest if signer else "sha256", total[0])


# ====================================================================== reading

# Said for every failure once the content-encryption key is recovered, until
# the content is proven authentic (signature or digest verified, GCM tag
# checked).  Distinct answers (bad padding, malformed byte N, wrong type,
# digest mismatch) are a decryption oracle for whoever can alter the
# ciphertext: ~78,000 queries recovered a DICOMDIR that way.  One message,
# one exit code (7), one ``where``; no offsets, no exception names.  Under
# AES-CBC it also answers an untrusted signer whose certificates no signature
# binds (see _verify_signer), hence the last words: a hint for honest users,
# the same text whatever happened.
INTEGRITY_FAILURE = ("the encrypted content failed its integrity check (altered, damaged, not "
                     "encrypted for this key, or signed by a signer we cannot establish trust in)")
INTEGRITY_WHERE = "encrypted content"
# The recipientInfos are read whole before any key work (they are small:
# one RSA-4096 ktri is about 600 bytes).
MAX_RECIPIENT_INFOS_BYTES = 1 << 20


def _not_authentic() -> SignatureInvalidError:
    return SignatureInvalidError(INTEGRITY_FAILURE, where=INTEGRITY_WHERE)


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


def _ber(where: str, exc: BerError, inner: bool) -> DicompackError:
    if inner:
        return _not_authentic()
    return PackageInvalidError(f"malformed CMS: {exc.message}", where=f"{where} byte {exc.offset}")


def open_secure_package(src: BinaryIO, spool: BinaryIO, *, key=None, cert=None, password: bytes | None = None,
                        trust=(), allow_unsigned: bool = False, now: datetime | None = None,
                        on_bytes: Callable[[int], None] | None = None, legacy: bool = False) -> SecureReport:
    """Decrypt into ``spool`` and verify everything; raise a typed error
    otherwise (``spool`` is then emptied).  ``legacy`` accepts SHA-1 and
    weak password-derivation parameters chosen by old senders."""
    outer = Reader(src)
    try:
        return _open(outer, spool, key=key, cert=cert, password=password, trust=list(trust),
                     allow_unsigned=allow_unsigned, now=now or C.utcnow(), on_bytes=on_bytes, legacy=legacy)
    except _OuterError as exc:
        raise _ber("package", exc.ber, inner=False) from None
    except BerError as exc:
        raise _ber("package", exc, inner=False) from None
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
    if name not in C.CIPHERS:
        raise PackageInvalidError(f"unsupported content-encryption algorithm {name}",
                                  where="EncryptedContentInfo.contentEncryptionAlgorithm")
    return content_type, alg, C.CIPHERS[name][0]


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
    cek, recipient_used = C.recover_cek(rinfos, key=key, cert=cert, password=password,
                                        content_key_length=key_length, legacy=legacy)
    dec = C.ContentDecryptor(alg, cek, "EncryptedContentInfo.contentEncryptionAlgorithm")
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
    report = SecureReport(recipient_used=recipient_used, content_encryption=C.CIPHER_LABELS[dec.name],
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
        raise _not_authentic()
    return _concluded(result, report, spool, trust, allow_unsigned, now, legacy, authenticated=aead)


def _read_plaintext(stream: ChunkStream, content_type: str, spool, report: SecureReport, on_bytes,
                    failure: _Failed):
    """Parse the plaintext into ``spool``; on any failure record it and drain."""
    inner = Reader(stream)
    try:
        result = _inner(inner, content_type, spool, report, on_bytes)
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
    sink = C.hash_obj("sha256")
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
        report = _conclude(result, report, trust, allow_unsigned, now, authenticated)
    except (SignerUntrustedError, UnsignedPackageError):
        _discard(spool)
        raise
    except (OSError, OperationCancelledError):
        raise
    except Exception:  # noqa: BLE001 - see INTEGRITY_FAILURE
        _discard(spool)
        raise _not_authentic() from None
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


def _decrypting(ciphertext: Iterator[bytes], dec: C.ContentDecryptor, failure: _Failed) -> Iterator[bytes]:
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


@dataclass
class _Inner:
    kind: str                      # 'signed' | 'digested' | 'data'
    digests: dict
    signer_infos: object = None
    certificates: list = field(default_factory=list)
    # The encoding of every element of SignedData.certificates (X.509 or
    # not), as received: what signingCertificateV2 must bind.
    certificate_elements: list = field(default_factory=list)
    # Unsigned parts a binding does not cover (see _unsigned_extras).
    digest_algorithm_elements: list = field(default_factory=list)
    crls_present: bool = False
    expected_digest: bytes | None = None
    digest_name: str = "sha256"
    econtent_type: str = A.OID_DATA
    size: int = 0


def _inner(r: Reader, content_type: str, spool, report: SecureReport, on_bytes) -> _Inner:
    """Parse the plaintext: ContentInfo(SignedData|DigestedData) or the bare
    structure named by ``content_type``; copy the content to ``spool``."""
    top = r.expect(0, 16, "SEQUENCE", constructed=True)
    first = r.peek(1)
    if first == b"\x06":                   # ContentInfo wrapper (S/MIME / openssl convention)
        inner_type = r.oid()
        explicit = r.expect(2, 0, "[0] content", constructed=True)
        body = r.expect(0, 16, "SEQUENCE", constructed=True)
        report.convention = "id-data around ContentInfo (S/MIME, openssl)"
        wrappers = [body, explicit, top]
    else:
        inner_type = content_type
        body = top
        report.convention = "bare structure typed by encryptedContentInfo (RFC 5652)"
        wrappers = [body]
    report.inner_content_type = A.CONTENT_TYPE_NAMES.get(inner_type, inner_type)
    if inner_type == A.OID_SIGNED_DATA:
        result = _signed_data(r, body, spool, on_bytes)
    elif inner_type == A.OID_DIGESTED_DATA:
        result = _digested_data(r, body, spool, on_bytes)
    elif inner_type == A.OID_DATA and len(wrappers) == 1:
        raise PackageInvalidError("encrypted content is neither SignedData nor DigestedData (PS3.15 D.1)",
                                  where="EncryptedContentInfo.contentType")
    else:
        raise PackageInvalidError(f"unexpected inner content type {inner_type}", where="inner ContentInfo")
    for h in wrappers:
        r.close(h)
    return result


def _econtent(r: Reader, spool, hashes: dict, on_bytes) -> tuple[str, int]:
    """encapContentInfo: stream eContent into ``spool`` through ``hashes``."""
    encap = r.expect(0, 16, "EncapsulatedContentInfo", constructed=True)
    etype = r.oid()
    size = 0
    if r.more(encap):
        explicit = r.expect(2, 0, "[0] eContent", constructed=True)
        h = r.header()
        if not h.is_(0, TAG_OCTET_STRING):
            raise BerError("eContent is not an OCTET STRING", h.start)
        for piece in r.octets(h, 1 << 20):
            for hh in hashes.values():
                hh.update(piece)
            spool.write(piece)
            size += len(piece)
            if on_bytes:
                on_bytes(len(piece))
        r.close(explicit)
    else:
        raise PackageInvalidError("detached signature: the package holds no content", where="SignedData")
    r.close(encap)
    return etype, size


def _signed_data(r: Reader, body, spool, on_bytes) -> _Inner:
    r.integer()
    algs_h = r.expect(0, 17, "digestAlgorithms SET", constructed=True)
    algs = acms.DigestAlgorithms.load(r.element_rest(algs_h, 4096))
    hashes = {}
    digest_algorithm_elements = [a.dump() for a in algs]
    for a in algs:
        name = a["algorithm"].native
        if name in C.HASHES:
            hashes[name] = C.hash_obj(name)
    result = _Inner("signed", hashes, digest_algorithm_elements=digest_algorithm_elements)
    result.econtent_type, result.size = _econtent(r, spool, hashes, on_bytes)
    # RFC 5652 5.1, in this order: certificates [0] and crls [1], both
    # optional, then exactly one signerInfos SET (a second set, or one
    # before the certificates, would let an unexamined signer slip in).
    h = r.header()
    if h.is_(2, 0):
        result.certificates, result.certificate_elements = _certificate_set(r, h)
        h = r.header()
    if h.is_(2, 1):
        r.element_rest(h)                   # CRLs: not used for trust here
        result.crls_present = True
        h = r.header()
    if not h.is_(0, 17):
        raise BerError("expected the signerInfos SET", h.start)
    result.signer_infos = _signer_infos(r, h)
    if r.more(body):
        raise BerError("unexpected element after signerInfos", r.pos)
    return result


def _bounded_element(r: Reader, h, limit: int, what: str) -> bytes:
    """The element whose header is ``h``, refused unread beyond ``limit`` bytes."""
    if h.length is not None and h.length > limit:
        raise T.oversized(what, limit)
    try:
        return r.element_rest(h, len(h.raw) + limit)
    except BerError as exc:
        if exc.message == "element too large":      # indefinite length running past the limit
            raise T.oversized(what, limit) from None
        raise


def _certificate_set(r: Reader, h) -> tuple[list, list[bytes]]:
    """SignedData.certificates, read only within its byte limit: (the X.509
    certificates, the encoding of every element).  Attribute and other
    certificate formats are never used for trust, but they are elements a
    binding must cover.  Loading is parsing only: their count and keys are
    judged by trust.py once a signature has shown the content authentic."""
    raw = _bounded_element(r, h, T.MAX_CERTIFICATE_SET_BYTES, "certificates")
    choices = acms.CertificateSet.load(retag(raw, 0x31))
    certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in choices if c.name == "certificate"]
    return certs, [c.dump() for c in choices]


def _signer_infos(r: Reader, h) -> acms.SignerInfos:
    raw = _bounded_element(r, h, T.MAX_SIGNER_INFOS_BYTES, "signerInfos")
    infos = acms.SignerInfos.load(raw)
    T.check_signer_budget(len(infos))        # len() parses: malformed sets fail here
    return infos


def _digested_data(r: Reader, body, spool, on_bytes) -> _Inner:
    r.integer()
    alg = algos.DigestAlgorithm.load(r.element(256))
    name = alg["algorithm"].native
    if name not in C.HASHES:
        raise PackageInvalidError(f"unsupported digest algorithm {name}", where="DigestedData")
    hashes = {name: C.hash_obj(name)}
    result = _Inner("digested", hashes, digest_name=name)
    result.econtent_type, result.size = _econtent(r, spool, hashes, on_bytes)
    h = r.expect(0, TAG_OCTET_STRING, "digest", constructed=False)
    result.expected_digest = r.content(h, 64)
    return result


def _conclude(inner: _Inner, report: SecureReport, trust, allow_unsigned: bool, now: datetime,
              authenticated: bool) -> SecureReport:
    digests = {name: h.finalize() for name, h in inner.digests.items()}
    report.size = inner.size
    if inner.kind == "digested":
        report.digest_algorithm = inner.digest_name
        if digests[inner.digest_name] != inner.expected_digest:
            raise SignatureInvalidError("content digest does not match: the package was altered",
                                        where="DigestedData.digest")
        if not allow_unsigned:
            raise UnsignedPackageError("the package is not signed (DigestedData only); "
                                       "use --allow-unsigned to accept it", where="DigestedData")
        return report
    return _verify_signer(inner, digests, report, trust, now, authenticated)


def _verify_signer(inner: _Inner, digests: dict, report: SecureReport, trust, now: datetime,
                   authenticated: bool) -> SecureReport:
    """Every SignerInfo must verify (integrity: SignatureInvalidError) and
    then chain to a trust anchor (trust: SignerUntrustedError).  Integrity is
    judged for all signers first: a tampered package says so even when one
    of its signers is also untrusted.

    Trust is judged on the embedded certificates, which no signature covers
    unless a signingCertificateV2 attribute lists them.  Under AES-CBC
    (``authenticated`` false) an attacker can splice ciphertext so that
    secret plaintext lands in one of them; a distinct answer about them
    would be a decryption oracle.  So, unless the whole set is bound,
    trust failures are the one integrity error and every embedded element
    must lie on a validated signer path (a spliced, unused certificate then
    fails like a spliced anything else).  Bound or AEAD: specific answers."""
    if inner.econtent_type != A.OID_DATA:
        # Our packages and PS3.15 D.1 carry the ZIP as id-data; any other
        # type is refused, which also settles RFC 5652 5.3 (non-data content
        # without signedAttrs would be signed without its type).
        raise PackageInvalidError(f"signed content type {inner.econtent_type} is not id-data",
                                  where="SignedData.encapContentInfo.eContentType")
    if not inner.signer_infos or len(inner.signer_infos) == 0:
        raise SignatureInvalidError("SignedData has no signer", where="SignedData.signerInfos")
    # Integrity first.  Until a signature verifies, nothing in the plaintext is
    # authentic and a distinct answer would be a decryption oracle under CBC
    # (see _concluded); each check costs at most what OpenSSL lets one key
    # cost (<= 16384-bit RSA with a 64-bit exponent, named curves), a few ms.
    signers = [_verify_signer_info(i, si, inner, digests) for i, si in enumerate(inner.signer_infos)]
    if not authenticated and _unsigned_extras(inner):
        raise _not_authentic()
    if authenticated or _set_is_bound(signers, inner.certificate_elements):
        _establish_trust(signers, inner, trust, now)
    else:
        try:
            paths = _establish_trust(signers, inner, trust, now)
        except SignerUntrustedError:
            raise _not_authentic() from None
        on_paths = {c.public_bytes(Encoding.DER) for path in paths for c in path}
        if not all(element in on_paths for element in inner.certificate_elements):
            raise _not_authentic()
    first = signers[0]
    report.signed = True
    report.signers = [s.to_dict() for s in signers]
    report.signer_subject = first.cert.subject.rfc4514_string()
    report.signer_issuer = first.cert.issuer.rfc4514_string()
    report.signing_time = first.to_dict()["signing_time"]
    report.digest_algorithm = first.digest
    report.signature_algorithm = first.signature_algorithm
    report.chain = first.chain
    return report


def _algorithm_identifiers(dotted: str) -> set[bytes]:
    """The two encodings of a parameterless AlgorithmIdentifier: parameters
    absent, or NULL."""
    oid = core.ObjectIdentifier(dotted).dump()
    return {b"\x30" + der_length(len(oid)) + oid, b"\x30" + der_length(len(oid) + 2) + oid + b"\x05\x00"}


def _unsigned_extras(inner: _Inner) -> bool:
    """Under AES-CBC, unsigned elements that verification does not need: CRLs,
    unsignedAttrs, digestAlgorithms entries no signer uses, and parameters
    in a parameterless algorithm identifier.  An attacker can frame secret
    blocks inside them (we write indefinite lengths); whether they then parse
    would decide between success and exit 7, so any of them is exit 7.
    (RSASSA-PSS parameters are parsed and used, not checked for extras.)"""
    if inner.crls_present:
        return True
    used = set()
    for si in inner.signer_infos:
        if not isinstance(si["unsigned_attrs"], core.Void):
            return True
        digest = si["digest_algorithm"]
        used |= _algorithm_identifiers(digest["algorithm"].dotted)
        if digest.dump() not in _algorithm_identifiers(digest["algorithm"].dotted):
            return True
        signature = si["signature_algorithm"]
        if (signature["algorithm"].native != "rsassa_pss" and
                signature.dump() not in _algorithm_identifiers(signature["algorithm"].dotted)):
            return True
    return any(element not in used for element in inner.digest_algorithm_elements)


def _establish_trust(signers: list, inner: _Inner, trust, now: datetime) -> list[list[x509.Certificate]]:
    """The limits on the embedded certificates (before the path searches
    that would use every one of their keys), then one validated path per
    signer (signer ... anchor); SignerUntrustedError otherwise."""
    T.screen_certificates(inner.certificates)
    paths = []
    for s in signers:
        times = [now] + ([s.signing_time] if s.signing_time is not None else [])
        path = T.signer_path(s.cert, inner.certificates, trust, times, where=s.where)
        s.chain = [c.subject.rfc4514_string() for c in path]
        paths.append(path)
    return paths


# ESSCertIDv2 hash algorithms a binding may use (RFC 5035; SHA-1 is v1's).
_ESS_HASHES = ("sha256", "sha384", "sha512")


def _set_is_bound(signers: list, elements: list[bytes]) -> bool:
    """Every element of SignedData.certificates is listed, by its hash, in
    the signingCertificateV2 attribute of some (verified) signer."""
    listed = {entry for s in signers for entry in s.ess}
    algorithms = {name for name, _ in listed}
    return all(any((name, hashlib.new(name, element).digest()) in listed for name in algorithms)
               for element in elements)


def _ess_cert_ids(value, signer_cert: x509.Certificate, where: str) -> list[tuple[str, bytes]]:
    """The (hash algorithm, hash) pairs of a signingCertificateV2 attribute.
    RFC 5035: its first entry identifies the signer's certificate; anything
    else means the certificate was swapped (the one integrity error)."""
    entries = []
    for cert_id in value["certs"]:
        name = cert_id["hash_algorithm"]["algorithm"].native
        if name not in _ESS_HASHES:
            raise SignatureInvalidError(f"signingCertificateV2 uses the hash {name}",
                                        where=f"{where}.signedAttrs")
        entries.append((name, cert_id["cert_hash"].native))
    if not entries:
        raise SignatureInvalidError("signingCertificateV2 lists no certificate", where=f"{where}.signedAttrs")
    first = value["certs"][0]
    name, value_hash = entries[0]
    signer_hash = hashlib.new(name, signer_cert.public_bytes(Encoding.DER)).digest()
    if signer_hash != value_hash or not _issuer_serial_matches(first["issuer_serial"], signer_cert):
        raise SignatureInvalidError("signingCertificateV2 does not name the signer's certificate",
                                    where=f"{where}.signedAttrs")
    return entries


def _issuer_serial_matches(issuer_serial, cert: x509.Certificate) -> bool:
    if issuer_serial.native is None:          # optional (RFC 5035); we do not write it
        return True
    issuer = cert.issuer.public_bytes()
    return (issuer_serial["serial_number"].native == cert.serial_number and
            any(n.name == "directory_name" and n.chosen.dump() == issuer for n in issuer_serial["issuer"]))


@dataclass
class _VerifiedSigner:
    where: str
    cert: x509.Certificate
    digest: str
    signature_algorithm: str
    signing_time: datetime | None
    chain: list = field(default_factory=list)
    ess: list = field(default_factory=list)     # signingCertificateV2: [(hash algorithm, hash)]

    def to_dict(self) -> dict:
        return {"subject": self.cert.subject.rfc4514_string(), "issuer": self.cert.issuer.rfc4514_string(),
                "signing_time": self.signing_time.isoformat() if self.signing_time else None,
                "digest": self.digest, "signature_algorithm": self.signature_algorithm, "chain": self.chain}


_SINGLE_ATTRS = ("content_type", "message_digest", "signing_time", "signing_certificate_v2")


def _signed_attributes(attrs, where: str) -> dict:
    """content-type, message-digest, signing-time and signingCertificateV2,
    each at most once with exactly one value (RFC 5652 11.1-11.3, RFC 5035
    5.4): two signing times or digests would let a reader pick the one it
    likes."""
    found = {}
    for attr in attrs:
        t = attr["type"].native
        if t not in _SINGLE_ATTRS:
            continue
        if t in found or len(attr["values"]) != 1:
            raise SignatureInvalidError(f"signed attribute {t} is repeated or multi-valued",
                                        where=f"{where}.signedAttrs")
        found[t] = attr["values"][0]
    return found


def _verify_signer_info(i: int, si, inner: _Inner, digests: dict) -> _VerifiedSigner:
    where = f"SignedData.signerInfos[{i}]"
    try:
        digest_name = si["digest_algorithm"]["algorithm"].native
        signer_cert = next((c for c in inner.certificates if C.rid_matches(si["sid"], c)), None)
        if signer_cert is None:
            raise SignatureInvalidError("the signer's certificate is not in the package (or was swapped)",
                                        where=f"{where}.sid")
        if digest_name not in digests:
            raise PackageInvalidError(f"signer digest {digest_name} not among digestAlgorithms", where=where)
        value = digests[digest_name]
        attrs = si["signed_attrs"]
        signing_time, ess = None, []
        if attrs.native is not None and len(attrs):
            found = _signed_attributes(attrs, where)
            md = found["message_digest"].native if "message_digest" in found else None
            if md != value:
                raise SignatureInvalidError("message digest does not match the content: the package was altered",
                                            where=f"{where}.signedAttrs")
            ctype = found["content_type"].dotted if "content_type" in found else None
            if ctype != inner.econtent_type:
                raise SignatureInvalidError("signed content-type attribute does not match the content",
                                            where=f"{where}.signedAttrs")
            if "signing_time" in found and isinstance(found["signing_time"].native, datetime):
                signing_time = found["signing_time"].native
            if "signing_certificate_v2" in found:
                ess = _ess_cert_ids(found["signing_certificate_v2"], signer_cert, where)
            signed_bytes, prehashed = retag(attrs.dump(force=False), 0x31), None
        else:
            signed_bytes, prehashed = None, value
        label = C.verify_signature(signer_cert.public_key(), si["signature_algorithm"], digest_name,
                                   si["signature"].native, signed_bytes, prehashed, where=f"{where}.signature")
    except (ValueError, TypeError, KeyError) as exc:
        raise PackageInvalidError(f"malformed SignerInfo ({type(exc).__name__})", where=where) from None
    return _VerifiedSigner(where, signer_cert, digest_name, label, signing_time, ess=ess)


# ====================================================================== small blobs

# Said for every failure once the content-encryption key is recovered:
# distinct messages (bad tag, bad framing, bad parameters) would tell an
# attacker who alters the ciphertext what the recipient's key made of it.
NOT_AUTHENTIC = "not authentic or malformed (altered, truncated or forged)"


def envelope_bytes(data: bytes, recipients: list) -> bytes:
    """A DER AuthEnvelopedData (RFC 5083, AES-256-GCM, 12-byte nonce, 16-byte
    tag) of ``data`` (content type id-data), for small payloads such as the
    Encrypted Attributes Sequence (PS3.3 C.12.1.1.4.1 allows any CMS there).
    Authenticated, unlike EnvelopedData: CBC without integrity is malleable
    and its padding check is an oracle for whoever holds the ciphertext."""
    cek = os.urandom(32)
    rinfos, _ = _recipient_infos(recipients, cek)
    enc = C.ContentEncryptor("aes256_gcm", cek)
    ciphertext = enc.update(data) + enc.finalize()
    body = (_int(0) + A.RecipientInfos(rinfos).dump()      # RFC 5083: version is always 0
            + _tlv(0x30, _oid(A.OID_DATA) + enc.params.dump() + _tlv(0x80, ciphertext))
            + _octets(enc.tag))
    return _tlv(0x30, _oid(A.OID_AUTH_ENVELOPED_DATA) + _tlv(0xA0, _tlv(0x30, body)))


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def open_envelope_bytes(blob: bytes, *, key=None, cert=None, password: bytes | None = None) -> bytes:
    """The plaintext of a small AuthEnvelopedData made by ``envelope_bytes``
    (or by any writer: AES-GCM with a 16-byte tag, no authAttrs), released
    only once its tag verifies.  EnvelopedData is refused before any
    decryption, so neither its padding nor its content can be probed."""
    outer = Reader(io.BytesIO(blob))
    try:
        env = _auth_envelope_head(outer)
        rinfos = A.RecipientInfos.load(outer.element())
        _refuse_pkcs1v15(rinfos)
    except BerError as exc:
        raise _ber("Encrypted Content", exc, inner=False) from None
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise PackageInvalidError(f"malformed AuthEnvelopedData ({type(exc).__name__})",
                                  where="Encrypted Content") from None
    cek, _ = C.recover_cek(rinfos, key=key, cert=cert, password=password)
    try:
        return _auth_decrypt(outer, env, cek)
    except Exception:  # noqa: BLE001 - one answer for every failure after key recovery
        raise SignatureInvalidError(NOT_AUTHENTIC, where="Encrypted Content") from None


def _auth_envelope_head(outer: Reader) -> tuple:
    """Read up to the recipientInfos of ContentInfo(AuthEnvelopedData); the
    headers still to be closed are returned."""
    ci = outer.expect(0, 16, "ContentInfo SEQUENCE", constructed=True)
    kind = outer.oid()
    if kind == A.OID_ENVELOPED_DATA:
        raise SignatureInvalidError(
            "unauthenticated EnvelopedData (no integrity: it could have been altered or forged) "
            "is refused; only AuthEnvelopedData (RFC 5083, AES-GCM) is restored",
            where="Encrypted Content")
    if kind != A.OID_AUTH_ENVELOPED_DATA:
        raise PackageInvalidError("not an AuthEnvelopedData", where="Encrypted Content")
    explicit = outer.expect(2, 0, "[0] content", constructed=True)
    env = outer.expect(0, 16, "AuthEnvelopedData SEQUENCE", constructed=True)
    if outer.integer() != 0:
        raise PackageInvalidError("AuthEnvelopedData version is not 0", where="Encrypted Content")
    if outer.peek(1)[:1] == b"\xa0":
        raise PackageInvalidError("originatorInfo is not supported", where="Encrypted Content")
    return ci, explicit, env


def _refuse_pkcs1v15(rinfos) -> None:
    """RSA PKCS#1 v1.5 key transport is a Bleichenbacher oracle wherever the
    library reports bad padding; we never write it for these payloads."""
    for ri in rinfos:
        if ri.name == "ktri" and ri.chosen["key_encryption_algorithm"]["algorithm"].native in (
                "rsaes_pkcs1v15", "rsa"):
            raise PackageInvalidError("RSA PKCS#1 v1.5 key transport is refused here (padding "
                                      "oracle); RSA-OAEP is required", where="Encrypted Content")


def _auth_decrypt(outer: Reader, headers: tuple, cek: bytes) -> bytes:
    ci, explicit, env = headers
    eci = outer.expect(0, 16, "EncryptedContentInfo", constructed=True)
    outer.oid()
    dec = C.ContentDecryptor(A.EncryptionAlgorithm.load(outer.element(256)), cek, "Encrypted Content")
    if not dec.aead or dec.icvlen != 16:
        raise ValueError("not AES-GCM with a 16-byte tag")
    body = outer.header()
    if not body.is_(2, 0):
        raise ValueError("no encrypted content")
    plain = b"".join(dec.update(piece) for piece in outer.octets(body, 1 << 20))
    outer.close(eci)
    # authAttrs would be GCM's additional data, which we do not feed: refused.
    mac = outer.expect(0, TAG_OCTET_STRING, "mac", constructed=False)
    dec.finalize(outer.content(mac, 64))        # raises unless the tag verifies
    for h in (env, explicit, ci):
        outer.close(h)
    # One NUL may follow: DICOM pads OB values (Encrypted Content) to even length.
    if not outer.at_eof() and (outer.read(1) != b"\x00" or not outer.at_eof()):
        raise ValueError("data after the AuthEnvelopedData")
    return plain
