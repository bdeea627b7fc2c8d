"""Declarative ASN.1 additions to asn1crypto's ``cms`` module.

asn1crypto 1.5 lacks the RFC 5084 GCM parameters, the RFC 3211
id-alg-PWRI-KEK key-encryption algorithm and the RFC 5753 ECDH key
agreement algorithms.  We subclass (never monkey-patch) the classes we need.
"""
from __future__ import annotations

from asn1crypto import algos, cms, core, keys

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_DIGESTED_DATA = "1.2.840.113549.1.7.5"
OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
OID_PWRI_KEK = "1.2.840.113549.1.9.16.3.9"
OID_ECDH_STD_SHA256 = "1.3.132.1.11.1"      # dhSinglePass-stdDH-sha256kdf-scheme
OID_ECDH_STD_SHA384 = "1.3.132.1.11.2"
OID_ECDH_STD_SHA512 = "1.3.132.1.11.3"
OID_ECDH_STD_SHA1 = "1.3.133.16.840.63.0.2"

CONTENT_TYPE_NAMES = {
    OID_DATA: "data", OID_SIGNED_DATA: "signed_data", OID_ENVELOPED_DATA: "enveloped_data",
    OID_DIGESTED_DATA: "digested_data", OID_AUTH_ENVELOPED_DATA: "authenticated_enveloped_data",
}


class GcmParams(core.Sequence):
    """RFC 5084 GCMParameters."""
    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EncryptionAlgorithm(algos.EncryptionAlgorithm):
    _oid_specs = dict(algos.EncryptionAlgorithm._oid_specs)
    _oid_specs.update({
        "aes128_gcm": GcmParams, "aes192_gcm": GcmParams, "aes256_gcm": GcmParams,
    })


class KeyEncryptionAlgorithmId(cms.KeyEncryptionAlgorithmId):
    _map = dict(cms.KeyEncryptionAlgorithmId._map)
    _map.update({
        OID_PWRI_KEK: "pwri_kek",
        OID_ECDH_STD_SHA1: "dh_std_sha1kdf",
        OID_ECDH_STD_SHA256: "dh_std_sha256kdf",
        OID_ECDH_STD_SHA384: "dh_std_sha384kdf",
        OID_ECDH_STD_SHA512: "dh_std_sha512kdf",
    })
    _reverse_map = None


class KeyWrapAlgorithm(cms.KeyEncryptionAlgorithm):
    """AES key wrap identifier used as the ECDH KDF scheme's parameter."""


class KeyEncryptionAlgorithm(cms.KeyEncryptionAlgorithm):
    _fields = [
        ("algorithm", KeyEncryptionAlgorithmId),
        ("parameters", core.Any, {"optional": True}),
    ]
    _oid_specs = {
        "rsaes_oaep": algos.RSAESOAEPParams,
        "pwri_kek": EncryptionAlgorithm,
        "dh_std_sha1kdf": KeyWrapAlgorithm,
        "dh_std_sha256kdf": KeyWrapAlgorithm,
        "dh_std_sha384kdf": KeyWrapAlgorithm,
        "dh_std_sha512kdf": KeyWrapAlgorithm,
    }


class KeyTransRecipientInfo(cms.KeyTransRecipientInfo):
    _fields = [
        ("version", cms.CMSVersion),
        ("rid", cms.RecipientIdentifier),
        ("key_encryption_algorithm", KeyEncryptionAlgorithm),
        ("encrypted_key", core.OctetString),
    ]


class KeyAgreeRecipientInfo(cms.KeyAgreeRecipientInfo):
    _fields = [
        ("version", cms.CMSVersion),
        ("originator", cms.OriginatorIdentifierOrKey, {"explicit": 0}),
        ("ukm", core.OctetString, {"explicit": 1, "optional": True}),
        ("key_encryption_algorithm", KeyEncryptionAlgorithm),
        ("recipient_encrypted_keys", cms.RecipientEncryptedKeys),
    ]


class PasswordRecipientInfo(cms.PasswordRecipientInfo):
    _fields = [
        ("version", cms.CMSVersion),
        ("key_derivation_algorithm", algos.KdfAlgorithm, {"implicit": 0, "optional": True}),
        ("key_encryption_algorithm", KeyEncryptionAlgorithm),
        ("encrypted_key", core.OctetString),
    ]


class RecipientInfo(cms.RecipientInfo):
    _alternatives = [
        ("ktri", KeyTransRecipientInfo),
        ("kari", KeyAgreeRecipientInfo, {"implicit": 1}),
        ("kekri", cms.KEKRecipientInfo, {"implicit": 2}),
        ("pwri", PasswordRecipientInfo, {"implicit": 3}),
        ("ori", cms.OtherRecipientInfo, {"implicit": 4}),
    ]


class RecipientInfos(cms.RecipientInfos):
    _child_spec = RecipientInfo


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 ECC-CMS-SharedInfo (input to the X9.63 KDF)."""
    _fields = [
        ("key_info", KeyWrapAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


__all__ = [n for n in dir() if not n.startswith("_")] + ["cms", "algos", "core", "keys"]
