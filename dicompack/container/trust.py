"""Trust in the signers of a secure package.

Order of the checks (container/cms/verify.py drives it):

0. While reading (container/cms/plaintext.py): the certificate set and the signerInfos
   are read only up to MAX_*_BYTES and at most MAX_SIGNER_INFOS signers are
   accepted.  Nothing is authentic yet, so these refusals reach the user as
   the one integrity failure of the CMS layer (exit 7): a distinct answer to
   altered ciphertext would be a decryption oracle under AES-CBC.
1. The signature of every SignerInfo (integrity).  Its cost is bounded by
   OpenSSL's own key limits (RSA <= 16384 bits, exponent <= 64 bits above
   3072 bits; named curves only): a few milliseconds per signer.
2. Limits on the embedded certificates (``screen_certificates``): count,
   RSA modulus and exponent sizes, curves.  Every embedded key may be used
   in the path searches that follow, so they are judged first.
3. Certificate path validation by a maintained library,
   ``cryptography.x509.verification``: chain building, signatures, validity
   at now and at the signing time, basicConstraints and pathLen, name
   constraints, refusal of unknown critical extensions; the CMS / S/MIME
   rules (signer EKU and keyUsage, issuer EKU) are its extension policies.
   The library is handed one pre-selected candidate path (``_candidate_path``)
   because its own search is exponential on hostile certificate sets.

Refusals from 2 and 3 are ``SignerUntrustedError`` (exit 8) with a one-line
reason; the content was shown authentic by step 1 before any of them.  The
certificates themselves are authentic only under AES-GCM or when a
signingCertificateV2 attribute binds them: otherwise (AES-CBC, unbound)
container/cms/verify.py turns these refusals into the one integrity error, so
that nothing about unauthenticated certificate bytes reaches the user.
"""
from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from dicompack.errors import SignerUntrustedError

# --- limits on sender-supplied material (spec/threat-model.md)
MAX_EMBEDDED_CERTIFICATES = 32          # SignedData.certificates entries examined at all
MAX_CERTIFICATE_SET_BYTES = 256 << 10   # encoded size of SignedData.certificates
MAX_SIGNER_INFOS = 4                    # SignerInfos verified (each costs one path validation per time)
MAX_SIGNER_INFOS_BYTES = 256 << 10      # encoded size of SignedData.signerInfos
MAX_CHAIN_DEPTH = 8                     # intermediates between signer and anchor
MIN_RSA_BITS = 2048                     # NIST SP 800-131A: below 2048 bits is disallowed
MAX_RSA_BITS = 8192                     # largest modulus real CAs issue; 16384 costs 4x per check
MAX_RSA_EXPONENT_BITS = 256             # FIPS 186-5: 2^16 < e < 2^256; bounds the cost of a check
ALLOWED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

EMAIL_PROTECTION = ExtendedKeyUsageOID.EMAIL_PROTECTION
ANY_EXTENDED_KEY_USAGE = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

WHERE = "SignedData.certificates"


def _name(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "(unreadable subject)"


# ====================================================================== limits

def oversized(what: str, limit: int) -> SignerUntrustedError:
    """The refusal of a sender-supplied set (certificates, signerInfos) larger
    than ``limit`` encoded bytes: it is not read, let alone parsed."""
    return SignerUntrustedError(f"{what} larger than {limit} bytes are not examined",
                                where=f"SignedData.{what}")


def check_certificate_budget(count: int) -> None:
    """Refuse a certificate set beyond the count limit, before any path search."""
    if count > MAX_EMBEDDED_CERTIFICATES:
        raise SignerUntrustedError(f"the package embeds {count} certificates; at most "
                                   f"{MAX_EMBEDDED_CERTIFICATES} are examined", where=WHERE)


def check_signer_budget(count: int) -> None:
    if count > MAX_SIGNER_INFOS:
        raise SignerUntrustedError(f"the package has {count} signers; at most {MAX_SIGNER_INFOS} "
                                   "are verified", where="SignedData.signerInfos")


def check_public_key(cert: x509.Certificate, where: str = WHERE) -> None:
    """RSA 2048..8192 bits with a sane exponent, or ECDSA on P-256/P-384/P-521.
    Reading the key's numbers costs nothing; using a 16384-bit key or a huge
    exponent in every signature check is what an attacker would want."""
    subject = _name(cert)
    try:
        key = cert.public_key()
    except Exception:  # noqa: BLE001 - UnsupportedAlgorithm, ValueError: any unusable key
        raise SignerUntrustedError(f"certificate {subject} holds an unsupported or malformed "
                                   "public key", where=where) from None
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
            raise SignerUntrustedError(f"certificate {subject} has a {bits}-bit RSA key; "
                                       f"{MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted", where=where)
        e = key.public_numbers().e
        if e < 3 or not e & 1 or e.bit_length() > MAX_RSA_EXPONENT_BITS:
            raise SignerUntrustedError(f"certificate {subject} has an unusable RSA public exponent",
                                       where=where)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise SignerUntrustedError(f"certificate {subject} uses the curve {key.curve.name}; only "
                                       f"{', '.join(ALLOWED_CURVES.values())} are accepted", where=where)
    else:
        raise SignerUntrustedError(f"certificate {subject} holds a {type(key).__name__.removesuffix('PublicKey')}"
                                   " key; only RSA and ECDSA signers are supported", where=where)


def screen_certificates(certs: list[x509.Certificate]) -> None:
    """All limits on the embedded certificates, before any path search."""
    check_certificate_budget(len(certs))
    for cert in certs:
        check_public_key(cert)


# ====================================================================== CMS rules as extension policies
# The validators run inside the library for the certificate concerned;
# raising refuses that candidate path (the library reports the message).

def _email_protection_allowed(eku: x509.ExtendedKeyUsage | None) -> bool:
    # RFC 5280 4.2.1.12: no extension means any purpose.
    return eku is None or EMAIL_PROTECTION in eku or ANY_EXTENDED_KEY_USAGE in eku


def _signer_eku(_policy, _cert, eku: x509.ExtendedKeyUsage | None) -> None:
    if not _email_protection_allowed(eku):
        raise ValueError("the signer certificate's extendedKeyUsage does not include "
                         "emailProtection (it is for another purpose, e.g. a TLS server)")


def _signer_key_usage(_policy, _cert, ku: x509.KeyUsage | None) -> None:
    # RFC 5652 / RFC 8550: a CMS signature needs digitalSignature or nonRepudiation.
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        raise ValueError("the signer certificate's keyUsage allows neither digitalSignature "
                         "nor nonRepudiation")


def _ca_eku(_policy, _cert, eku: x509.ExtendedKeyUsage | None) -> None:
    # EKU in a CA constrains the purposes of what it issues (as browsers and
    # S/MIME clients read it): a TLS-only CA does not vouch for signers.
    if not _email_protection_allowed(eku):
        raise ValueError("an issuer's extendedKeyUsage does not include emailProtection")


def _ca_key_usage(_policy, _cert, ku: x509.KeyUsage | None) -> None:
    # RFC 5280 6.1.4 (n): keyCertSign when keyUsage is present; absent means
    # any use (CAs made by `openssl req -x509` carry none).
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("an issuer's keyUsage lacks keyCertSign")


def _ca_basic_constraints(_policy, _cert, bc: x509.BasicConstraints) -> None:
    if not bc.ca:
        raise ValueError("an issuer is not a CA (basicConstraints cA is false)")


def _extension_policies() -> dict:
    ca = (ExtensionPolicy.webpki_defaults_ca()
          .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
          .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
          .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _ca_eku))
    # permit_all: a signer needs no subjectAltName (S/MIME certificates often
    # carry the address in the subject only); unknown critical extensions are
    # still refused by the library whatever the policy.
    ee = (ExtensionPolicy.permit_all()
          .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _signer_eku)
          .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _signer_key_usage))
    return {"ca_policy": ca, "ee_policy": ee}


# ====================================================================== path validation

def _reason(exc: VerificationError) -> str:
    """The library's message without its prefixes and certificate repr."""
    text = str(exc).split(" (encountered processing", 1)[0]
    for prefix in ("validation failed: ", "candidates exhausted: ",
                   "Python extension validator failed: ValueError: "):
        text = text.replace(prefix, "")
    return " ".join(text.split())[:240]


def _valid_at_all(cert: x509.Certificate, times: list[datetime]) -> bool:
    return all(cert.not_valid_before_utc <= t <= cert.not_valid_after_utc for t in times)


def _key_id_matches(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """The child's authorityKeyIdentifier names the issuer's subjectKeyIdentifier
    (True when either is absent: then only the signature can tell)."""
    try:
        aki = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return True
    return aki is None or aki == ski


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
        return True
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm
        return False


def _candidate_path(signer: x509.Certificate, pool: list[x509.Certificate],
                    anchors: list[x509.Certificate], times: list[datetime]) -> list[x509.Certificate]:
    """At most one embedded certificate per step from the signer upwards: the
    first (AKI/SKI match and validity at every time preferred) whose key
    verifies the step below.  The library then validates this one path.

    Why: cryptography 48's path builder explores every combination of
    same-named issuers that verify, without a working budget; 2 x 4
    cross-signed certificates sharing one key cost it 60+ s, 2 x 15 never end.
    Choosing here costs at most MAX_CHAIN_DEPTH x MAX_EMBEDDED_CERTIFICATES
    signature checks on screened keys.  The price: of several embedded
    certificates with the same subject that all verify (cross-certificates),
    only the preferred one is tried; and no two certificates of the path share
    subject and key, so the library's search cannot branch again."""
    used = {_identity(signer)}
    path, child = [], signer
    for _ in range(MAX_CHAIN_DEPTH + 1):
        if any(a.subject == child.issuer and _issued_by(child, a) for a in anchors):
            break                           # the library connects to the anchor itself
        named = [c for c in pool if c.subject == child.issuer and _identity(c) not in used]
        named.sort(key=lambda c: (not _key_id_matches(child, c), not _valid_at_all(c, times)))
        issuer = next((c for c in named if _issued_by(child, c)), None)
        if issuer is None:
            break
        used.add(_identity(issuer))
        path.append(issuer)
        child = issuer
    return path


def _identity(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(subject, key): two certificates alike in both verify the same children,
    which is what lets a path search branch; the path keeps one of them."""
    return cert.subject.public_bytes(), cert.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _explained(reason: str, when: datetime, is_now: bool) -> str:
    if "not valid at validation time" in reason:
        return (f"a certificate of its path is expired or not yet valid at {when.isoformat()} "
                f"({'now' if is_now else 'its signing time'})")
    if reason in ("signature does not match", "no candidates"):
        return f"no path to a trust anchor ({reason})"
    if reason == "all candidates exhausted with no interior errors":
        return "no path to a trust anchor (no embedded or trusted issuer signed it)"
    if reason.startswith("Forbidden signature algorithm"):
        # The library's Web PKI set: no SHA-1, no MD5, PSS only with salt = hash length.
        return ("a certificate of its path is signed with an algorithm outside RSA PKCS#1 v1.5, "
                "RSA-PSS (salt length = hash length) and ECDSA, each with SHA-256/384/512")
    if reason.startswith("Forbidden public key algorithm"):
        return "a certificate of its path holds a key outside RSA >= 2048 bits and P-256/P-384/P-521"
    return reason


def signer_path(signer: x509.Certificate, pool: list[x509.Certificate],
                anchors: list[x509.Certificate], times: list[datetime],
                where: str = WHERE) -> list[x509.Certificate]:
    """The path signer -> ... -> anchor valid at every one of ``times`` (now,
    and the signing time when the signer stated one); SignerUntrustedError
    otherwise.  ``pool`` must have been screened (``screen_certificates``)."""
    if not anchors:
        raise SignerUntrustedError("no trust anchors given: cannot establish trust in the signer",
                                   where=where)
    check_public_key(signer, where)
    intermediates = _candidate_path(signer, pool, anchors, times)
    store = Store(list(anchors))
    path: list[x509.Certificate] = []      # the first time's path (times[0] is now)
    for when in times:
        verifier = (PolicyBuilder().store(store).time(when).max_chain_depth(MAX_CHAIN_DEPTH)
                    .extension_policies(**_extension_policies()).build_client_verifier())
        try:
            chain = verifier.verify(signer, intermediates).chain
        except VerificationError as exc:
            raise SignerUntrustedError(f"signer {_name(signer)} is not trusted: "
                                       f"{_explained(_reason(exc), when, when is times[0])}",
                                       where=where) from None
        path = path or list(chain)
    return path
