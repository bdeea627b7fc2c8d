"""The PS3.11 application profile a File-set's transfer syntaxes fit."""
from __future__ import annotations

from collections.abc import Iterable

from dicompack.standard import EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_SYNTAXES, JPEG_SYNTAXES


def application_profile(syntaxes: Iterable[str]) -> str:
    """The PS3.11 general purpose profile the File-set's syntaxes fit."""
    used = set(syntaxes)
    if used <= {EXPLICIT_VR_LITTLE_ENDIAN}:
        return "STD-GEN-CD"
    if used <= {EXPLICIT_VR_LITTLE_ENDIAN} | JPEG_2000_SYNTAXES:
        return "STD-GEN-USB-J2K"
    if used <= {EXPLICIT_VR_LITTLE_ENDIAN} | JPEG_SYNTAXES:
        return "STD-GEN-USB-JPEG"
    return "STD-GEN-MIME (syntaxes outside the CD/DVD/USB general purpose profiles)"
