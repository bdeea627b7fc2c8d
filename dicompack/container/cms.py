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

import io
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, Callable, Iterator

from asn1crypto import algos, cms as acms, core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import (DicompackError, PackageInvalidError,
                      SignatureInvalidError, UnsignedPackageError, UsageError)
from . import cms_asn1 as A
from . import cms_crypto as C
from .cms_ber import (EOC, TAG_OCTET_STRING, TAG_SEQUENCE, BerError,
                      ChunkStream, Reader, der_length, open_indefinite,
                      primitive_header, retag)

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


def _signer_info(signer: Signer, message_digest: bytes) -> acms.SignerInfo:
    attrs = acms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [acms.Time(name="utc_time", value=core.UTCTime(
            datetime.now(timezone.utc).replace(microsecond=0)))]},
        {"type": "message_digest", "values": [message_digest]},
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

def _ber(where: str, exc: BerError, inner: bool) -> DicompackError:
    if inner:
        # The plaintext decrypted but does not parse: the ciphertext was altered.
        return SignatureInvalidError(f"decrypted content is malformed ({exc.message}): the package "
                                     "was altered", where=f"{where} byte {exc.offset}")
    return PackageInvalidError(f"malformed CMS: {exc.message}", where=f"{where} byte {exc.offset}")


def open_secure_package(src: BinaryIO, spool: BinaryIO, *, key=None, cert=None, password: bytes | None = None,
                        trust=(), allow_unsigned: bool = False, now: datetime | None = None,
                        on_bytes: Callable[[int], None] | None = None) -> SecureReport:
    """Decrypt into ``spool`` and verify everything; raise a typed error otherwise."""
    outer = Reader(src)
    try:
        return _open(outer, spool, key=key, cert=cert, password=password, trust=list(trust),
                     allow_unsigned=allow_unsigned, now=now or C.utcnow(), on_bytes=on_bytes)
    except BerError as exc:
        raise _ber("package", exc, inner=False) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise PackageInvalidError(f"malformed CMS structure ({type(exc).__name__})", where="package") from None


def _open(outer: Reader, spool, *, key, cert, password, trust, allow_unsigned, now, on_bytes) -> SecureReport:
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
    try:
        rinfos = A.RecipientInfos.load(outer.element_rest(nxt))
        len(rinfos)   # asn1crypto parses lazily: force the parse here
    except (ValueError, TypeError) as exc:
        raise PackageInvalidError(f"malformed recipientInfos ({exc})", where="EnvelopedData.recipientInfos") from None
    cek, recipient_used = C.recover_cek(rinfos, key=key, cert=cert, password=password)
    eci = outer.expect(0, 16, "EncryptedContentInfo", constructed=True)
    content_type = outer.oid()
    try:
        alg = A.EncryptionAlgorithm.load(outer.element())
        dec = C.ContentDecryptor(alg, cek, "EncryptedContentInfo.contentEncryptionAlgorithm")
    except (ValueError, TypeError) as exc:
        raise PackageInvalidError(f"malformed content-encryption algorithm ({exc})",
                                  where="EncryptedContentInfo") from None
    if aead != dec.aead:
        raise PackageInvalidError("content cipher does not match the envelope type", where="EncryptedContentInfo")
    body = outer.header()
    if not body.is_(2, 0):
        raise PackageInvalidError("detached encrypted content is not supported", where="EncryptedContentInfo")
    plaintext = _decrypting(outer.octets(body, 1 << 20), dec)
    stream = ChunkStream(plaintext)
    report = SecureReport(recipient_used=recipient_used, content_encryption=C.CIPHER_LABELS[dec.name],
                          signed=False)
    inner = Reader(stream)
    try:
        result = _inner(inner, content_type, spool, report, on_bytes)
        if stream.read(1) or not inner.at_eof():
            raise BerError("data after the signed content", inner.pos)
    except BerError as exc:
        raise _ber("decrypted content", exc, inner=True) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        # asn1crypto could not parse a structure of the decrypted content.
        raise SignatureInvalidError(f"decrypted content is malformed ({type(exc).__name__}): the "
                                    "package was altered", where="decrypted content") from None
    outer.close(eci)
    tag = None
    if aead:
        nxt = outer.header()
        if nxt.is_(2, 1):                   # authAttrs
            outer.element_rest(nxt)
            nxt = outer.header()
        tag = outer.content(nxt, 64)
        dec.finalize(tag)
    while outer.more(env):                  # unprotectedAttrs / unauthAttrs
        outer.element()
    outer.close(env)
    outer.close(explicit)
    outer.close(ci)
    if not outer.at_eof():
        raise PackageInvalidError("data after the end of the package", where=f"byte {outer.pos}")
    return _conclude(result, report, trust, allow_unsigned, now)


def _decrypting(ciphertext: Iterator[bytes], dec: C.ContentDecryptor) -> Iterator[bytes]:
    for piece in ciphertext:
        out = dec.update(piece)
        if out:
            yield out
    if not dec.aead:
        tail = dec.finalize()
        if tail:
            yield tail


@dataclass
class _Inner:
    kind: str                      # 'signed' | 'digested' | 'data'
    digests: dict
    signer_infos: object = None
    certificates: list = field(default_factory=list)
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
    for a in algs:
        name = a["algorithm"].native
        if name in C.HASHES:
            hashes[name] = C.hash_obj(name)
    result = _Inner("signed", hashes)
    result.econtent_type, result.size = _econtent(r, spool, hashes, on_bytes)
    while r.more(body):
        h = r.header()
        raw = r.element_rest(h)
        if h.is_(2, 0):
            certs = acms.CertificateSet.load(retag(raw, 0x31))
            for c in certs:
                if c.name == "certificate":
                    result.certificates.append(x509.load_der_x509_certificate(c.chosen.dump()))
        elif h.is_(2, 1):
            continue                        # CRLs: not used for trust here
        elif h.is_(0, 17):   # SET OF SignerInfo
            result.signer_infos = acms.SignerInfos.load(raw)
        else:
            raise BerError("unexpected element in SignedData", h.start)
    return result


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


def _conclude(inner: _Inner, report: SecureReport, trust, allow_unsigned: bool, now: datetime) -> SecureReport:
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
    return _verify_signer(inner, digests, report, trust, now)


def _verify_signer(inner: _Inner, digests: dict, report: SecureReport, trust, now: datetime) -> SecureReport:
    where = "SignedData.signerInfos[0]"
    if not inner.signer_infos or len(inner.signer_infos) == 0:
        raise SignatureInvalidError("SignedData has no signer", where="SignedData.signerInfos")
    si = inner.signer_infos[0]
    try:
        digest_name = si["digest_algorithm"]["algorithm"].native
        signer_cert = next((c for c in inner.certificates if C.rid_matches(si["sid"], c)), None)
        if signer_cert is None:
            raise SignatureInvalidError("the signer's certificate is not in the package (or was swapped)",
                                        where="SignedData.certificates")
        if digest_name not in digests:
            raise PackageInvalidError(f"signer digest {digest_name} not among digestAlgorithms", where=where)
        value = digests[digest_name]
        attrs = si["signed_attrs"]
        signing_time = None
        if attrs.native is not None and len(attrs):
            md, ctype = None, None
            for attr in attrs:
                t = attr["type"].native
                if t == "message_digest":
                    md = attr["values"][0].native
                elif t == "content_type":
                    ctype = attr["values"][0].dotted
                elif t == "signing_time":
                    signing_time = attr["values"][0].native
            if md != value:
                raise SignatureInvalidError("message digest does not match the content: the package was altered",
                                            where=f"{where}.signedAttrs")
            if ctype != inner.econtent_type:
                raise SignatureInvalidError("signed content-type attribute does not match the content",
                                            where=f"{where}.signedAttrs")
            signed_bytes, prehashed = retag(attrs.dump(force=False), 0x31), None
        else:
            signed_bytes, prehashed = None, value
        label = C.verify_signature(signer_cert.public_key(), si["signature_algorithm"], digest_name,
                                   si["signature"].native, signed_bytes, prehashed)
    except (ValueError, TypeError, KeyError) as exc:
        raise PackageInvalidError(f"malformed SignerInfo ({type(exc).__name__})", where=where) from None
    times = [now] + ([signing_time] if isinstance(signing_time, datetime) else [])
    path = C.validate_chain(signer_cert, inner.certificates, trust, times)
    report.signed = True
    report.signer_subject = signer_cert.subject.rfc4514_string()
    report.signer_issuer = signer_cert.issuer.rfc4514_string()
    report.signing_time = signing_time.isoformat() if isinstance(signing_time, datetime) else None
    report.digest_algorithm = digest_name
    report.signature_algorithm = label
    report.chain = [c.subject.rfc4514_string() for c in path]
    return report


# ====================================================================== small blobs

def envelope_bytes(data: bytes, recipients: list) -> bytes:
    """A DER EnvelopedData of ``data`` (content type id-data), for small
    payloads such as the Encrypted Attributes Sequence (PS3.3 C.12.1.1.4.1)."""
    cek = os.urandom(32)
    rinfos, _ = _recipient_infos(recipients, cek)
    enc = C.ContentEncryptor("aes256_cbc", cek)
    ciphertext = enc.update(data) + enc.finalize()
    version = 3 if any(ri.name == "pwri" for ri in rinfos) else (
        0 if all(ri.name == "ktri" for ri in rinfos) else 2)
    body = (_int(version) + A.RecipientInfos(rinfos).dump()
            + _tlv(0x30, _oid(A.OID_DATA) + enc.params.dump() + _tlv(0x80, ciphertext)))
    return _tlv(0x30, _oid(A.OID_ENVELOPED_DATA) + _tlv(0xA0, _tlv(0x30, body)))


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def open_envelope_bytes(blob: bytes, *, key=None, cert=None, password: bytes | None = None) -> bytes:
    """The plaintext of a small EnvelopedData made by ``envelope_bytes`` (or
    any CMS EnvelopedData with id-data content)."""
    outer = Reader(io.BytesIO(blob))
    try:
        outer.expect(0, 16, "ContentInfo SEQUENCE", constructed=True)
        if outer.oid() != A.OID_ENVELOPED_DATA:
            raise PackageInvalidError("not an EnvelopedData", where="Encrypted Content")
        outer.expect(2, 0, "[0] content", constructed=True)
        outer.expect(0, 16, "EnvelopedData SEQUENCE", constructed=True)
        outer.integer()
        rinfos = A.RecipientInfos.load(outer.element())
        cek, _ = C.recover_cek(rinfos, key=key, cert=cert, password=password)
        outer.expect(0, 16, "EncryptedContentInfo", constructed=True)
        outer.oid()
        dec = C.ContentDecryptor(A.EncryptionAlgorithm.load(outer.element()), cek, "Encrypted Content")
        body = outer.header()
        plain = b"".join(dec.update(piece) for piece in outer.octets(body, 1 << 20))
        return plain + dec.finalize()
    except BerError as exc:
        raise _ber("Encrypted Content", exc, inner=False) from None
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise PackageInvalidError(f"malformed EnvelopedData ({type(exc).__name__})", where="Encrypted Content") from None
