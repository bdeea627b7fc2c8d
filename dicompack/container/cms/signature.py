"""Signature algorithms: the signing callable of a Signer's key, and the
cryptographic check of one signature (verify_signature).  Which signatures
must verify, and what they must cover, is decided in verify.py."""
from __future__ import annotations

from asn1crypto import algos
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from dicompack.container.cms.ciphers import HASHES
from dicompack.errors import PackageInvalidError, SignatureInvalidError, UsageError


def signature_params(key, digest: str, rsa_padding: str):
    """(asn1 SignedDigestAlgorithm, sign(data) callable)."""
    h = HASHES[digest]
    if isinstance(key, rsa.RSAPrivateKey):
        if rsa_padding == "pkcs1v15":
            alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
            return alg, lambda data: key.sign(data, padding.PKCS1v15(), h())
        if rsa_padding == "pss":
            params = algos.RSASSAPSSParams({
                "hash_algorithm": {"algorithm": digest},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest}},
                "salt_length": h().digest_size,
            })
            alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
            pss = padding.PSS(mgf=padding.MGF1(h()), salt_length=h().digest_size)
            return alg, lambda data: key.sign(data, pss, h())
        raise UsageError(f"unknown RSA signature padding {rsa_padding!r} (use 'pkcs1v15' or 'pss')")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})
        return alg, lambda data: key.sign(data, ec.ECDSA(h()))
    raise UsageError("signer key must be an RSA or EC private key")


def verify_signature(pub, sig_alg: algos.SignedDigestAlgorithm, digest_name: str,
                     signature: bytes, payload: bytes, prehashed: bool,
                     where: str = "SignedData.signerInfos[0].signature") -> str:
    """Verify the signature over ``payload`` (the signed bytes, or with
    ``prehashed`` their ``digest_name`` digest); returns a label of the
    signature algorithm.  Raises SignatureInvalidError on mismatch,
    PackageInvalidError if unsupported.  ``pub`` must have passed
    trust.check_public_key (bounded cost)."""
    try:
        salgo = sig_alg.signature_algo
    except ValueError:
        raise PackageInvalidError("unsupported signature algorithm "
                                  f"{sig_alg['algorithm'].dotted}", where=where) from None
    try:
        hname = sig_alg.hash_algo
    except ValueError:
        hname = digest_name
    if hname not in HASHES:
        raise PackageInvalidError(f"unsupported signature hash {hname}", where=where)
    if prehashed and hname != digest_name:
        raise PackageInvalidError("signature hash differs from the digest algorithm", where=where)
    h = HASHES[hname]()
    hh = asym_utils.Prehashed(h) if prehashed else h
    try:
        if salgo == "rsassa_pkcs1v15" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, payload, padding.PKCS1v15(), hh)
            label = f"{hname}WithRSAEncryption"
        elif salgo == "rsassa_pss" and isinstance(pub, rsa.RSAPublicKey):
            p = sig_alg["parameters"]
            hname = p["hash_algorithm"]["algorithm"].native
            mh = p["mask_gen_algorithm"]["parameters"]["algorithm"].native
            h = HASHES[hname]()
            pss = padding.PSS(mgf=padding.MGF1(HASHES[mh]()), salt_length=p["salt_length"].native)
            if prehashed:
                pub.verify(signature, payload, pss, asym_utils.Prehashed(h))
            else:
                pub.verify(signature, payload, pss, h)
            label = f"rsassa-pss-{hname}"
        elif salgo == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(signature, payload, ec.ECDSA(hh))
            label = f"ecdsa-with-{hname}"
        else:
            raise SignatureInvalidError(f"signature algorithm {salgo} does not match the "
                                        "signer's key type", where=where)
    except InvalidSignature:
        raise SignatureInvalidError("signature does not verify: the package was altered "
                                    "or the signer certificate was swapped", where=where) from None
    except (ValueError, TypeError, KeyError):
        raise SignatureInvalidError("signature cannot be verified (malformed signature or "
                                    "parameters)", where=where) from None
    return label
