"""What the scan makes of one input file (ScanResult), and what it tells
about the file: its preamble's kind, lossy compression."""
from __future__ import annotations

from dataclasses import dataclass, field

from dicompack.dcmio import decode_text
from dicompack.enums import ScanStatus
from dicompack.standard import HTJ2K, JPEG_2000

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018


@dataclass(slots=True)
class ScanResult:
    path: str
    status: ScanStatus               # 'dicom' | 'skipped' | 'invalid'
    reason: str = ""
    size: int = 0
    transfer_syntax: str = ""
    has_preamble: bool = False
    dataset_offset: int = 0          # first byte of the data set in the file
    pixel_offset: int | None = None  # Pixel Data (or Float/Double Float) element header; not for deflated files
    pixel_end: int | None = None     # just past that element (incl. fragment delimiter)
    values: dict[int, bytes] = field(default_factory=dict)   # raw text values
    sequences: dict[int, bytes] = field(default_factory=dict)  # encoded SQ elements
    fixes: list[str] = field(default_factory=list)           # what writing must repair
    owned: bool = False              # a private temporary this run wrote: moved into place, not copied
    preamble: str = ""               # PREAMBLE_* kind of the 128-byte preamble ('' without one)
    clear_preamble: bool = False     # pack decided to write 128 zero bytes in its place
    has_pixels: bool = False         # a Pixel Data (or Float/Double Float) element is present
    element_count: int = 0           # top-level data set elements (a duplicate's completeness)
    lossy_compression: str = ""      # Lossy Image Compression (0028,2110): "00", "01" or absent
    notes: list[str] = field(default_factory=list)           # packed as is, but worth a warning

    @property
    def sop_class(self) -> str:
        return self.text(SOP_CLASS_UID)

    @property
    def sop_instance(self) -> str:
        return self.text(SOP_INSTANCE_UID)

    def text(self, tag: int) -> str:
        raw = self.values.get(tag)
        return decode_text(raw) if raw else ""

    @property
    def needs_rewrite(self) -> bool:
        """True when the file cannot be copied byte for byte."""
        return bool(self.fixes)


# The preamble's kinds.  PS3.10 7.1 leaves the 128 bytes to applications; the
# only use the standard names is a TIFF header (dual-personality files).
# Anything else may make the file run as something else: a PE executable
# whose header sits in the preamble is still a valid DICOM file (CVE-2019-11687).
PREAMBLE_ZERO, PREAMBLE_TIFF, PREAMBLE_FOREIGN = "zero", "tiff", "foreign"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def preamble_kind(head: bytes) -> str:
    """The kind of a 128-byte preamble: all zeros, a TIFF header, or foreign."""
    if not head.strip(b"\x00"):
        return PREAMBLE_ZERO
    return PREAMBLE_TIFF if head[:4] in _TIFF_MAGIC else PREAMBLE_FOREIGN


LOSSY_IMAGE_COMPRESSION = 0x00282110
# Transfer Syntaxes whose Pixel Data is lossy (PS3.5 Table A-1 and PS3.6
# Table A-1, retired JPEG processes included), and those that may be either:
# JPEG 2000 (Part 1 and 2) and HTJ2K, lossless only when (0028,2110) says "00".
_LOSSY_SYNTAXES = frozenset(
    {f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 52, 53, 54, 55, 56, 58, 59, 60, 61, 62, 63, 64,
                                          81, 100, 101, 102, 103, 104, 105, 106, 107, 108,
                                          111, 112)})
# .93: JPEG 2000 Part 2 Multi-component (not among dicompack.standard's names).
_MAYBE_LOSSY_SYNTAXES = frozenset({JPEG_2000, "1.2.840.10008.1.2.4.93", HTJ2K})


def in_lossy_syntax(scan: ScanResult) -> bool:
    """True when the Pixel Data is stored in a lossy Transfer Syntax."""
    if scan.transfer_syntax in _LOSSY_SYNTAXES:
        return True
    return scan.transfer_syntax in _MAYBE_LOSSY_SYNTAXES and scan.lossy_compression != "00"


def is_lossy(scan: ScanResult) -> bool:
    """True when the instance's pixels went through lossy compression, by
    its Transfer Syntax or by its own Lossy Image Compression flag (which an
    uncompressed copy of a lossy image keeps, PS3.3 C.7.6.1.1.5)."""
    return scan.lossy_compression == "01" or in_lossy_syntax(scan)


HEADER_ONLY_NOTE = ("image instance without Pixel Data, every element complete (header only, or "
                    "cut exactly before its Pixel Data): packed as the sender has it; validators "
                    "such as dciodvfy report the missing Pixel Data")
