"""Parsing the decrypted content: ContentInfo(SignedData|DigestedData) or
the bare structure, streaming the eContent into the spool through its
digests and collecting what verify.py needs."""
from __future__ import annotations

from asn1crypto import algos
from asn1crypto import cms as acms
from cryptography import x509

from dicompack.container import trust as T
from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ber import TAG_OCTET_STRING, BerError, Reader, retag
from dicompack.container.cms.ciphers import HASHES, hash_obj
from dicompack.container.cms.model import SecureReport
from dicompack.container.cms.verify import SignedContent
from dicompack.errors import PackageInvalidError


def parse_plaintext(r: Reader, content_type: str, spool, report: SecureReport, on_bytes) -> SignedContent:
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


def _signed_data(r: Reader, body, spool, on_bytes) -> SignedContent:
    r.integer()
    algs_h = r.expect(0, 17, "digestAlgorithms SET", constructed=True)
    algs = acms.DigestAlgorithms.load(r.element_rest(algs_h, 4096))
    hashes = {}
    digest_algorithm_elements = [a.dump() for a in algs]
    for a in algs:
        name = a["algorithm"].native
        if name in HASHES:
            hashes[name] = hash_obj(name)
    result = SignedContent("signed", hashes, digest_algorithm_elements=digest_algorithm_elements)
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


def _digested_data(r: Reader, body, spool, on_bytes) -> SignedContent:
    r.integer()
    alg = algos.DigestAlgorithm.load(r.element(256))
    name = alg["algorithm"].native
    if name not in HASHES:
        raise PackageInvalidError(f"unsupported digest algorithm {name}", where="DigestedData")
    hashes = {name: hash_obj(name)}
    result = SignedContent("digested", hashes, digest_name=name)
    result.econtent_type, result.size = _econtent(r, spool, hashes, on_bytes)
    h = r.expect(0, TAG_OCTET_STRING, "digest", constructed=False)
    result.expected_digest = r.content(h, 64)
    return result
