"""The PS3.11 application profile a File-set's transfer syntaxes fit."""
from __future__ import annotations

_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
         "1.2.840.10008.1.2.4.70"}


def application_profile(syntaxes) -> str:
    """The PS3.11 general purpose profile the File-set's syntaxes fit."""
    used = set(syntaxes)
    if used <= {"1.2.840.10008.1.2.1"}:
        return "STD-GEN-CD"
    if used <= {"1.2.840.10008.1.2.1"} | _J2K:
        return "STD-GEN-USB-J2K"
    if used <= {"1.2.840.10008.1.2.1"} | _JPEG:
        return "STD-GEN-USB-JPEG"
    return "STD-GEN-MIME (syntaxes outside the CD/DVD/USB general purpose profiles)"
