"""Writing a secure package: ContentInfo(EnvelopedData|AuthEnvelopedData)
around ContentInfo(SignedData|DigestedData), streamed with BER indefinite
lengths so memory stays flat whatever the content size."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import BinaryIO

from asn1crypto import algos, core, tsp
from asn1crypto import cms as acms
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ber import (
    EOC,
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    der_int,
    der_length,
    der_oid,
    octet_string,
    open_indefinite,
    primitive_header,
)
from dicompack.container.cms.ciphers import CIPHER_LABELS, WRITE_DIGESTS, ContentEncryptor, hash_obj
from dicompack.container.cms.model import SecureInfo, Signer
from dicompack.container.cms.recipients import build_recipient_infos, issuer_serial
from dicompack.container.cms.signature import signature_params
from dicompack.errors import UsageError


def _digest_alg(name: str) -> algos.DigestAlgorithm:
    return algos.DigestAlgorithm({"algorithm": name})


def _check_policy(signer: Signer | None, legacy: bool) -> None:
    if signer is not None:
        if signer.digest not in WRITE_DIGESTS and not (legacy and signer.digest == "sha1"):
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
    h = hash_obj(digest)
    signed = signer is not None
    yield open_indefinite(TAG_SEQUENCE) + der_oid(A.OID_SIGNED_DATA if signed else A.OID_DIGESTED_DATA)
    yield b"\xa0\x80" + open_indefinite(TAG_SEQUENCE)
    if signed:
        yield der_int(1) + acms.DigestAlgorithms([_digest_alg(digest)]).dump()
    else:
        yield der_int(0) + _digest_alg(digest).dump()
    # encapContentInfo { id-data, [0] EXPLICIT OCTET STRING (constructed, chunked) }
    yield open_indefinite(TAG_SEQUENCE) + der_oid(A.OID_DATA) + b"\xa0\x80" + open_indefinite(TAG_OCTET_STRING)
    for chunk in _chunks(src, chunk_size, on_bytes):
        h.update(chunk)
        total[0] += len(chunk)
        yield primitive_header(TAG_OCTET_STRING, len(chunk))
        yield chunk          # separately: no 1 MiB copy to prepend a header
    yield EOC + EOC + EOC
    value = h.finalize()
    if signer is not None:
        yield _certificates(signer) + acms.SignerInfos([_signer_info(signer, value)]).dump()
    else:
        yield octet_string(value)
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
    sig_alg, sign = signature_params(signer.key, signer.digest, signer.rsa_padding)
    signature = sign(attrs.dump())      # over the DER of the SET OF attributes (RFC 5652 5.4)
    return acms.SignerInfo({
        "version": "v1",
        "sid": acms.SignerIdentifier(name="issuer_and_serial_number", value=issuer_serial(signer.cert)),
        "digest_algorithm": _digest_alg(signer.digest),
        "signed_attrs": attrs,
        "signature_algorithm": sig_alg,
        "signature": signature,
    })


def write_secure_package(src: BinaryIO, dest: BinaryIO, *, recipients: list, signer: Signer | None = None,
                         aead: bool = False, legacy: bool = False, chunk_size: int = 1 << 20,
                         on_bytes: Callable[[int], None] | None = None) -> SecureInfo:
    """Encrypt (and sign) the bytes of ``src`` into ``dest`` (may be a pipe)."""
    _check_policy(signer, legacy)
    cipher = "aes256_gcm" if aead else "aes256_cbc"
    cek = os.urandom(32)
    rinfos, labels = build_recipient_infos(recipients, cek)
    enc = ContentEncryptor(cipher, cek)
    version = 3 if any(ri.name == "pwri" for ri in rinfos) else (
        0 if all(ri.name == "ktri" for ri in rinfos) else 2)
    outer_oid = A.OID_AUTH_ENVELOPED_DATA if aead else A.OID_ENVELOPED_DATA
    dest.write(open_indefinite(TAG_SEQUENCE) + der_oid(outer_oid) + b"\xa0\x80" + open_indefinite(TAG_SEQUENCE))
    dest.write(der_int(0 if aead else version) + A.RecipientInfos(rinfos).dump())
    dest.write(open_indefinite(TAG_SEQUENCE) + der_oid(A.OID_DATA) + enc.params.dump() + b"\xa0\x80")
    total = [0]
    for piece in _inner_stream(src, signer, chunk_size, on_bytes, total):
        ct = enc.update(piece)
        if ct:   # one OCTET STRING segment per encrypted piece, written without copying
            dest.write(primitive_header(TAG_OCTET_STRING, len(ct)))
            dest.write(ct)
    tail = enc.finalize()
    if tail:
        dest.write(octet_string(tail))
    dest.write(EOC + EOC)                   # encryptedContent, EncryptedContentInfo
    if aead:
        dest.write(octet_string(enc.tag))        # mac
    dest.write(EOC + EOC + EOC)             # EnvelopedData, [0], ContentInfo
    dest.flush()
    return SecureInfo(CIPHER_LABELS[cipher], labels, signer is not None,
                      signer.digest if signer else "sha256", total[0])
