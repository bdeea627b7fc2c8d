"""Names from the DICOM standard that more than one part of dicompack uses:
transfer syntaxes (PS3.5 10, A.4), SOP classes, the dummy values we write
(PS3.15 E.1), and UIDs derived from a digest (PS3.5 B.2).

The constant names follow pydicom's ``pydicom.uid`` keywords in upper case
(``ExplicitVRLittleEndian`` -> ``EXPLICIT_VR_LITTLE_ENDIAN``); a test checks
every value against pydicom.  Plain strings, so that the bottom layer (the
Part-10 walker in scan workers) does not import pydicom.
"""
from __future__ import annotations

import uuid

# ------------------------------------------------------------ transfer syntaxes
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE_8BIT = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

# Native (not encapsulated) Pixel Data: the syntaxes we can recompress or read raw.
NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN})
LITTLE_ENDIAN_NATIVE = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)
JPEG_2000_SYNTAXES = frozenset({JPEG_2000_LOSSLESS, JPEG_2000})
JPEG_SYNTAXES = frozenset({JPEG_BASELINE_8BIT, JPEG_EXTENDED_12BIT, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})

# ------------------------------------------------------------------ SOP classes
MEDIA_STORAGE_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"     # the DICOMDIR's SOP Class
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

# ----------------------------------------------------------------- dummy values
# What we write where a value must be present but the real one is unknown
# or removed: valid for the VR and obviously invented.
DUMMY_DATE = "19000101"
DUMMY_TIME = "000000"
DUMMY_DATETIME = DUMMY_DATE + DUMMY_TIME


# ----------------------------------------------------------------- derived UIDs
def uid_from_digest(digest: bytes, *, nbytes: int = 16) -> str:
    """A UID under the 2.25 root from the first ``nbytes`` (at most 16, 128
    bits) of a digest (PS3.5 B.2: 2.25 followed by the decimal integer of a
    UUID-sized number).  Deterministic derivations (same input, same UID)
    hash their input and call this; at most 44 characters.  Derivations
    that earlier releases made from 15 bytes keep ``nbytes=15``: the same
    input must give the same UID whichever version derived it."""
    if not 1 <= nbytes <= 16:
        raise ValueError(f"a 2.25 UID holds at most 128 bits, not {nbytes * 8}")
    return "2.25." + str(int.from_bytes(digest[:nbytes], "big"))


def random_uid() -> str:
    """A fresh UID under the 2.25 root from a random (version 4) UUID."""
    return f"2.25.{uuid.uuid4().int}"
