"""The header of an instance the transform stages rewrite: read with
pydicom without its Pixel Data, UIDs remapped, and encoded again in the
transfer syntax of the file being written."""
from __future__ import annotations

from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_dataset
from pydicom.uid import UID

from dicompack import standard
from dicompack.errors import InvalidInputError
from dicompack.scan import ScanResult


def read_header(scan: ScanResult) -> Dataset:
    with open(scan.path, "rb") as f:
        if scan.has_preamble:
            ds = dcmread(f, stop_before_pixels=True)
            _true_encoding(ds, scan.transfer_syntax)
            return ds
        ds = dcmread(f, force=True, stop_before_pixels=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(scan.transfer_syntax)
    return ds


def _true_encoding(ds: Dataset, transfer_syntax: str) -> None:
    """When the File Meta names another encoding than the data set's (the
    scan found which; pydicom reads the right one but records the File
    Meta's), record the real one: pydicom re-encodes from it, and would
    otherwise write implicit VR elements into an explicit VR header
    ("encoding without a string argument")."""
    encoding = (transfer_syntax == standard.IMPLICIT_VR_LITTLE_ENDIAN,
                transfer_syntax != standard.EXPLICIT_VR_BIG_ENDIAN)
    if ds.original_encoding != encoding:
        ds.set_original_encoding(*encoding, ds.original_character_set)


def remap_uids(ds: Dataset, mapping: dict[str, str]) -> int:
    """Replace every UI value found in ``mapping``, in all sequences; return
    how many elements changed."""
    changed = [0]
    if not mapping:
        return 0

    def visit(dataset: Dataset, elem: Any) -> None:
        if elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [mapping.get(str(v), str(v)) for v in values]
            if new != [str(v) for v in values]:
                elem.value = new if elem.VM > 1 else new[0]
                changed[0] += 1
    ds.walk(visit)
    return changed[0]


def encode_header(ds: Dataset, transfer_syntax: str) -> bytes:
    buf = DicomBytesIO()
    buf.is_little_endian = transfer_syntax != standard.EXPLICIT_VR_BIG_ENDIAN
    buf.is_implicit_VR = transfer_syntax == standard.IMPLICIT_VR_LITTLE_ENDIAN
    debris = [t for t in ds.keys() if t.group == 0xFFFE]
    if debris:
        raise InvalidInputError(f"an item tag {debris[0]} stands among the data elements "
                                "(a broken encoding): the header cannot be written again")
    if not buf.is_implicit_VR:
        resolve_ambiguous_vrs(ds, little_endian=buf.is_little_endian)
    write_dataset(buf, ds)
    return buf.getvalue()


# The VR an ambiguous element gets when the data set does not say which
# (PS3.5 A.1 c: implicit VR data is written OW, and OW is valid explicitly).
_AMBIGUOUS_FALLBACK = {"OB or OW": "OW", "US or OW": "OW", "US or SS or OW": "OW", "US or SS": "US"}


def resolve_ambiguous_vrs(ds: Dataset, *, little_endian: bool, ancestors: list[Dataset] | None = None) -> None:
    """Give every element whose dictionary VR is ambiguous ('OB or OW',
    'US or SS' ...) one VR before an explicit VR encoding.  pydicom does this
    only when the encoding changes, and not for every tag (Curve Data of old
    RT Images, waveforms without Waveform Bits Allocated), then refuses to
    write.  Its own rules first (Bits Allocated, Pixel Representation, LUT
    Descriptor); the fallback where they cannot decide.  Only sequences and
    ambiguous elements are decoded: the rest stays raw."""
    ancestors = [ds] + (ancestors or [])
    for tag in list(ds.keys()):
        vr = ds.get_item(tag).VR
        if not vr or vr == "UN":
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr == "SQ":
            for item in ds[tag].value or []:
                resolve_ambiguous_vrs(item, little_endian=little_endian, ancestors=ancestors)
        elif " or " in vr:
            elem = ds[tag]
            try:
                correct_ambiguous_vr_element(elem, ds, little_endian, ancestors)
            except Exception:  # noqa: BLE001 - an attribute it needs is missing: the fallback decides
                pass
            if " or " in elem.VR:
                signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
                elem.VR = "SS" if elem.VR == "US or SS" and signed else _AMBIGUOUS_FALLBACK.get(elem.VR, "UN")
