"""dicompack.standard names UIDs as plain strings (the bottom layer does not
import pydicom): each must be the value pydicom's dictionary gives that name."""
from __future__ import annotations

import hashlib

import pydicom.uid

from dicompack import standard

# standard's UPPER_CASE name -> pydicom.uid's keyword where the spelling differs.
PYDICOM_NAME = {
    "JPEG_LS_LOSSLESS": "JPEGLSLossless",
    "JPEG_LS_NEAR_LOSSLESS": "JPEGLSNearLossless",
    "JPEG_2000_LOSSLESS": "JPEG2000Lossless",
    "JPEG_2000": "JPEG2000",
    "HTJ2K_LOSSLESS": "HTJ2KLossless",
    "HTJ2K_LOSSLESS_RPCL": "HTJ2KLosslessRPCL",
    "HTJ2K": "HTJ2K",
    "JPEG_BASELINE_8BIT": "JPEGBaseline8Bit",
    "JPEG_EXTENDED_12BIT": "JPEGExtended12Bit",
    "JPEG_LOSSLESS": "JPEGLossless",
    "JPEG_LOSSLESS_SV1": "JPEGLosslessSV1",
    "EXPLICIT_VR_LITTLE_ENDIAN": "ExplicitVRLittleEndian",
    "IMPLICIT_VR_LITTLE_ENDIAN": "ImplicitVRLittleEndian",
    "EXPLICIT_VR_BIG_ENDIAN": "ExplicitVRBigEndian",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN": "DeflatedExplicitVRLittleEndian",
    "RLE_LOSSLESS": "RLELossless",
    "MEDIA_STORAGE_DIRECTORY_STORAGE": "MediaStorageDirectoryStorage",
    "SECONDARY_CAPTURE_IMAGE_STORAGE": "SecondaryCaptureImageStorage",
}


def _uid_constants() -> dict[str, str]:
    return {name: value for name, value in vars(standard).items()
            if name.isupper() and isinstance(value, str) and value[:1].isdigit() and "." in value}


def test_every_uid_constant_is_checked():
    assert set(_uid_constants()) == set(PYDICOM_NAME)


def test_every_uid_is_the_one_pydicom_names():
    wrong = {name: value for name, value in _uid_constants().items()
             if value != getattr(pydicom.uid, PYDICOM_NAME[name])}
    assert wrong == {}


def test_groups_hold_what_their_names_say():
    assert all(pydicom.uid.UID(u).is_transfer_syntax and not pydicom.uid.UID(u).is_compressed
               for u in standard.NATIVE_SYNTAXES)
    assert all(pydicom.uid.UID(u).is_compressed for u in standard.JPEG_2000_SYNTAXES | standard.JPEG_SYNTAXES)


def test_derived_uids_are_valid_and_short():
    uid = standard.uid_from_digest(b"\xff" * 32)
    assert uid.startswith("2.25.") and len(uid) <= 64 and pydicom.uid.UID(uid).is_valid
    assert standard.uid_from_digest(b"\x00" * 15 + b"\x01") == "2.25.1"
    assert standard.random_uid() != standard.random_uid()


def test_derivations_of_earlier_releases_keep_their_uids():
    # 0.1.0 derived the DICOMDIR's and lossy copies' UIDs from 120 bits:
    # a re-pack must give a PACS the same UIDs it already holds.
    from dicompack.transform.instance import lossy_uid  # the transform stage loads pydicom: only this test
    digest = hashlib.sha256(b"dicompack-lossy\x00" + b"1.2.3").digest()
    assert lossy_uid("1.2.3") == "2.25." + str(int.from_bytes(digest[:15], "big"))
