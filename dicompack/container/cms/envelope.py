"""Small blobs: envelope_bytes / open_envelope_bytes, a DER
AuthEnvelopedData (AES-256-GCM) for payloads such as the Encrypted
Attributes Sequence, released only once its tag verifies."""
from __future__ import annotations

import io
import os

from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ber import (
    TAG_OCTET_STRING,
    BerError,
    Reader,
    der_int,
    der_oid,
    malformed_cms,
    octet_string,
    tlv,
)
from dicompack.container.cms.ciphers import ContentDecryptor, ContentEncryptor
from dicompack.container.cms.recipients import build_recipient_infos, recover_cek
from dicompack.errors import PackageInvalidError, SignatureInvalidError

# Said for every failure once the content-encryption key is recovered:
# distinct messages (bad tag, bad framing, bad parameters) would tell an
# attacker who alters the ciphertext what the recipient's key made of it.
NOT_AUTHENTIC = "not authentic or malformed (altered, truncated or forged)"


def envelope_bytes(data: bytes, recipients: list) -> bytes:
    """A DER AuthEnvelopedData (RFC 5083, AES-256-GCM, 12-byte nonce, 16-byte
    tag) of ``data`` (content type id-data), for small payloads such as the
    Encrypted Attributes Sequence (PS3.3 12.1.1.4.1 allows any CMS there).
    Authenticated, unlike EnvelopedData: CBC without integrity is malleable
    and its padding check is an oracle for whoever holds the ciphertext."""
    cek = os.urandom(32)
    rinfos, _ = build_recipient_infos(recipients, cek)
    enc = ContentEncryptor("aes256_gcm", cek)
    ciphertext = enc.update(data) + enc.finalize()
    body = (der_int(0) + A.RecipientInfos(rinfos).dump()      # RFC 5083: version is always 0
            + tlv(0x30, der_oid(A.OID_DATA) + enc.params.dump() + tlv(0x80, ciphertext))
            + octet_string(enc.tag))
    return tlv(0x30, der_oid(A.OID_AUTH_ENVELOPED_DATA) + tlv(0xA0, tlv(0x30, body)))



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
        raise malformed_cms("Encrypted Content", exc) from None
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise PackageInvalidError(f"malformed AuthEnvelopedData ({type(exc).__name__})",
                                  where="Encrypted Content") from None
    cek, _ = recover_cek(rinfos, key=key, cert=cert, password=password)
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
    dec = ContentDecryptor(A.EncryptionAlgorithm.load(outer.element(256)), cek, "Encrypted Content")
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
