"""Verifying the decrypted content: the digest or every SignerInfo's
signature and signed attributes (verify_signer_info), then trust in each
signer (establish_trust, via container/trust.py).  Every failure before the
content is shown authentic is the one integrity error (not_authentic)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from asn1crypto import cms as acms
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from dicompack.container import trust as T
from dicompack.container.cms import asn1 as A
from dicompack.container.cms.ber import der_length, retag
from dicompack.container.cms.model import SecureReport
from dicompack.container.cms.recipients import rid_matches
from dicompack.container.cms.signature import verify_signature
from dicompack.errors import PackageInvalidError, SignatureInvalidError, SignerUntrustedError, UnsignedPackageError

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


def not_authentic() -> SignatureInvalidError:
    return SignatureInvalidError(INTEGRITY_FAILURE, where=INTEGRITY_WHERE)


@dataclass
class SignedContent:
    kind: str                      # 'signed' | 'digested' | 'data'
    digests: dict
    signer_infos: acms.SignerInfos | None = None
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


def conclude(inner: SignedContent, report: SecureReport, trust, allow_unsigned: bool, now: datetime,
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


def _verify_signer(inner: SignedContent, digests: dict, report: SecureReport, trust, now: datetime,
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
        raise not_authentic()
    if authenticated or _set_is_bound(signers, inner.certificate_elements):
        _establish_trust(signers, inner, trust, now)
    else:
        try:
            paths = _establish_trust(signers, inner, trust, now)
        except SignerUntrustedError:
            raise not_authentic() from None
        on_paths = {c.public_bytes(Encoding.DER) for path in paths for c in path}
        if not all(element in on_paths for element in inner.certificate_elements):
            raise not_authentic()
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


def _unsigned_extras(inner: SignedContent) -> bool:
    """Under AES-CBC, unsigned elements that verification does not need: CRLs,
    unsignedAttrs, digestAlgorithms entries no signer uses, and parameters
    in a parameterless algorithm identifier.  An attacker can frame secret
    blocks inside them (we write indefinite lengths); whether they then parse
    would decide between success and exit 7, so any of them is exit 7.
    (RSASSA-PSS parameters are parsed and used, not checked for extras.)"""
    if inner.crls_present:
        return True
    used = set()
    for si in inner.signer_infos or ():
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


def _establish_trust(signers: list, inner: SignedContent, trust, now: datetime) -> list[list[x509.Certificate]]:
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


def _verify_signer_info(i: int, si, inner: SignedContent, digests: dict) -> _VerifiedSigner:
    where = f"SignedData.signerInfos[{i}]"
    try:
        digest_name = si["digest_algorithm"]["algorithm"].native
        signer_cert = next((c for c in inner.certificates if rid_matches(si["sid"], c)), None)
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
            payload, prehashed = retag(attrs.dump(force=False), 0x31), False
        else:
            payload, prehashed = value, True
        label = verify_signature(signer_cert.public_key(), si["signature_algorithm"], digest_name,
                                   si["signature"].native, payload, prehashed, where=f"{where}.signature")
    except (ValueError, TypeError, KeyError) as exc:
        raise PackageInvalidError(f"malformed SignerInfo ({type(exc).__name__})", where=where) from None
    return _VerifiedSigner(where, signer_cert, digest_name, label, signing_time, ess=ess)
