"""Deterministic synthetic DICOM data for examples, tests and benchmarks.

Everything here is a pure function of its arguments: UIDs are derived from
names with :func:`uid_for`, pixel noise comes from a seeded generator and no
current date/time is ever used, so generating twice gives identical bytes.

Test data, not product: it lives with the tests and is not installed.  Data
sets are built and written with pydicom (a writer independent of the code
under test); only the bulk-tree fast path splices elements itself, with
:mod:`dicompack.dcmio`'s encoder.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import shutil
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_data_element
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    CTImageStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    MRImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from dicompack.dcmio import encode_element, encode_ul
from dicompack.standard import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    uid_from_digest,
)

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "uid_for",
    "phantom_pixels",
    "make_instance",
    "make_sr",
    "make_kos",
    "make_pr",
    "write_file",
    "encode_file",
    "make_example_corpus",
    "make_bad_inputs",
    "make_conformant_tree",
    "make_messy_tree",
]


def uid_for(*parts: object) -> str:
    """Return a deterministic ``2.25.`` UID derived from *parts*."""
    return uid_from_digest(hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest())


IMPLEMENTATION_CLASS_UID = uid_for("dicompack", "synthetic", "implementation")
IMPLEMENTATION_VERSION_NAME = "DICOMPACK_SYN"

_SOP_CLASS_BY_MODALITY = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "US": UltrasoundMultiFrameImageStorage,
    "OT": SECONDARY_CAPTURE_IMAGE_STORAGE,
}
_BODY_PART = {"CT": "CHEST", "MR": "HEAD", "US": "ABDOMEN"}


# --------------------------------------------------------------------------
# Pixel data
# --------------------------------------------------------------------------

def _dtype_for(bits_allocated: int, signed: bool) -> np.dtype:
    """Return the little-endian numpy dtype for a pixel cell."""
    if bits_allocated not in (8, 16, 32):
        raise ValueError(f"unsupported BitsAllocated {bits_allocated}")
    kind = "i" if signed else "u"
    return np.dtype(f"<{kind}{bits_allocated // 8}")


def _phantom_unit(rows: int, columns: int, frames: int, seed: int) -> np.ndarray:
    """Return a float phantom in [0, 1] of shape (frames, rows, columns).

    Concentric circles on a body ellipse with a gentle gradient, shifted a
    little per frame, plus low seeded noise: compresses and looks like an image.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    out = np.empty((frames, rows, columns), dtype=np.float64)
    for f in range(frames):
        cy = rows / 2 + f * 0.5
        cx = columns / 2 - f * 0.3
        ny = (yy - cy) / (rows / 2)
        nx = (xx - cx) / (columns / 2)
        r = np.sqrt(nx * nx + ny * ny)
        img = np.where(r < 0.9, 0.35, 0.0)          # body
        img += np.where(r < 0.6, 0.15, 0.0)         # organ
        img += 0.1 * (np.cos(r * 18.0) > 0.6)       # rings
        img += np.where((nx - 0.3) ** 2 + (ny + 0.2) ** 2 < 0.02, 0.3, 0.0)
        img += 0.1 * (xx / max(columns - 1, 1))     # gradient
        img += rng.normal(0.0, 0.01, size=img.shape)
        out[f] = img
    return np.clip(out, 0.0, 1.0)


def _rgb_to_ybr_full(rgb: np.ndarray) -> np.ndarray:
    """Convert 8-bit RGB to YBR_FULL (PS3.3 C.7.6.3.1.2)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255)


def phantom_pixels(
    *,
    rows: int = 64,
    columns: int = 64,
    frames: int = 1,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    pixel_representation: int = 0,
    samples_per_pixel: int = 1,
    photometric: str = "MONOCHROME2",
    seed: int = 0,
) -> np.ndarray:
    """Return phantom pixels shaped (frames, rows, columns[, samples]).

    Values stay within ``bits_stored`` and use the right signedness/dtype.
    """
    unit = _phantom_unit(rows, columns, frames, seed)
    signed = pixel_representation == 1
    dtype = _dtype_for(bits_allocated, signed)
    if signed:
        lo, hi = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    else:
        lo, hi = 0, (1 << bits_stored) - 1
    if samples_per_pixel == 1:
        vals = lo + unit * (hi - lo) * 0.9
        return np.clip(np.rint(vals), lo, hi).astype(dtype)
    if samples_per_pixel != 3:
        raise ValueError("samples_per_pixel must be 1 or 3")
    # Three different mixtures so the channels are visibly distinct.
    rgb = np.stack([unit, unit[..., ::-1], 1.0 - unit * 0.8], axis=-1) * hi
    rgb = np.clip(np.rint(rgb), 0, hi)
    if photometric.startswith("YBR_FULL"):
        rgb = np.clip(_rgb_to_ybr_full(rgb * (255.0 / hi)) * (hi / 255.0), 0, hi)
    return np.rint(rgb).astype(dtype)


def _pixel_bytes(arr: np.ndarray, planar_configuration: int) -> bytes:
    """Serialise pixels little-endian, honouring the planar configuration."""
    if arr.ndim == 4 and planar_configuration == 1:
        arr = np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
    data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    return data + (b"\x00" if len(data) % 2 else b"")


# --------------------------------------------------------------------------
# Common modules
# --------------------------------------------------------------------------

def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """Return a code sequence item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _base(
    *,
    sop_class: str,
    sop_uid: str,
    modality: str,
    patient_id: str,
    patient_name: str,
    study_uid: str,
    series_uid: str,
    charset: str | None,
    study_id: str,
    accession_number: str,
    study_date: str,
    study_time: str,
    study_description: str,
    series_number: int,
    series_description: str,
    transfer_syntax: str,
) -> Dataset:
    """Build file meta + Patient, General Study, Series, Equipment, SOP Common."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    if charset:
        # Set first so that names are encoded with it on write.
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(sop_uid)
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = "dicompack synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    if series_description:
        ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = UID(study_uid)
    ds.SeriesInstanceUID = UID(series_uid)
    ds.StudyID = study_id
    ds.SeriesNumber = series_number
    body_part = _BODY_PART.get(modality)
    if body_part:
        # An unpaired body part means Laterality must be absent.
        ds.BodyPartExamined = body_part
    elif modality not in ("SR", "KO"):
        # Type 2C; pairing unknown, so send it empty (allowed, a warning).
        ds.Laterality = ""
    return ds


def _image_modules(ds: Dataset, *, modality: str, frames: int, series_uid: str,
                   instance_number: int, rows: int, columns: int) -> None:
    """Add modality-specific image attributes (CT/MR/US/OT)."""
    if modality in ("CT", "MR"):
        third = "AXIAL" if modality == "CT" else "OTHER"
        ds.ImageType = ["ORIGINAL", "PRIMARY", third]
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = uid_for(series_uid, "frame-of-reference")
        ds.PositionReferenceIndicator = ""
        ds.SliceThickness = "2.5"
        ds.PixelSpacing = ["0.5", "0.5"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        z = f"{(instance_number - 1) * 2.5:.1f}"
        ds.ImagePositionPatient = [f"{-columns / 4:.1f}", f"{-rows / 4:.1f}", z]
        ds.SliceLocation = z
        ds.AcquisitionNumber = 1
    if modality == "CT":
        ds.KVP = "120"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
    elif modality == "MR":
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.EchoTrainLength = "1"
        ds.MagneticFieldStrength = "1.5"
    elif modality == "US":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
        ds.PatientOrientation = ""
    else:
        ds.ConversionType = "WSD"
        ds.PatientOrientation = ""
    if frames > 1:
        ds.NumberOfFrames = frames
        if modality == "US":
            # Cine module: frames are spaced in time.
            ds.FrameTime = "33.3"
            ds.FrameIncrementPointer = 0x00181063
        else:
            ds.FrameIncrementPointer = 0x00280009


def make_instance(
    *,
    patient_id: str = "PAT1",
    patient_name: str = "Doe^John",
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    modality: str = "CT",
    sop_class: str | None = None,
    rows: int = 64,
    columns: int = 64,
    frames: int = 1,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    pixel_representation: int = 0,
    samples_per_pixel: int = 1,
    photometric: str = "MONOCHROME2",
    planar_configuration: int = 0,
    charset: str | None = None,
    study_id: str = "1",
    accession_number: str = "A1",
    study_date: str = "20240101",
    study_time: str = "120000",
    study_description: str = "Synthetic study",
    series_number: int = 1,
    instance_number: int = 1,
    series_description: str = "",
    transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
    seed: int = 0,
) -> Dataset:
    """Return a complete image instance with file meta and phantom pixels.

    The SOP class defaults from *modality* (CT, MR, US, OT); for US a single
    frame uses US Image Storage, otherwise US Multi-frame Image Storage.
    """
    if sop_class is None:
        if modality == "US" and frames == 1:
            sop_class = UltrasoundImageStorage
        else:
            sop_class = _SOP_CLASS_BY_MODALITY.get(modality, SECONDARY_CAPTURE_IMAGE_STORAGE)
    ds = _base(
        sop_class=sop_class, sop_uid=sop_uid, modality=modality,
        patient_id=patient_id, patient_name=patient_name, study_uid=study_uid,
        series_uid=series_uid, charset=charset, study_id=study_id,
        accession_number=accession_number, study_date=study_date,
        study_time=study_time, study_description=study_description,
        series_number=series_number, series_description=series_description,
        transfer_syntax=transfer_syntax,
    )
    ds.ContentDate = study_date
    ds.ContentTime = study_time
    ds.InstanceNumber = instance_number
    _image_modules(ds, modality=modality, frames=frames, series_uid=series_uid,
                   instance_number=instance_number, rows=rows, columns=columns)
    ds.SamplesPerPixel = samples_per_pixel
    ds.PhotometricInterpretation = photometric
    if samples_per_pixel > 1:
        ds.PlanarConfiguration = planar_configuration
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = pixel_representation
    if modality in ("CT", "MR") and samples_per_pixel == 1:
        ds.WindowCenter = "40" if modality == "CT" else str(1 << (bits_stored - 2))
        ds.WindowWidth = "400" if modality == "CT" else str(1 << (bits_stored - 1))
    if modality == "US" and samples_per_pixel > 1:
        ds.LossyImageCompression = "00"
    arr = phantom_pixels(
        rows=rows, columns=columns, frames=frames, bits_allocated=bits_allocated,
        bits_stored=bits_stored, pixel_representation=pixel_representation,
        samples_per_pixel=samples_per_pixel, photometric=photometric,
        seed=seed + instance_number,
    )
    ds.PixelData = _pixel_bytes(arr, planar_configuration)
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    return ds


# --------------------------------------------------------------------------
# Structured reports, key objects, presentation states
# --------------------------------------------------------------------------

def _group_references(referenced: Iterable[Sequence[str]],
                      referenced_series_uid: str | None) -> dict[str, list]:
    """Group (sop_class, sop_uid[, series_uid]) tuples by series UID."""
    by_series: dict[str, list] = {}
    for ref in referenced:
        series = ref[2] if len(ref) > 2 else referenced_series_uid
        if not series:
            raise ValueError("reference without series UID: pass "
                             "(sop_class, sop_uid, series_uid) or referenced_series_uid")
        by_series.setdefault(series, []).append((ref[0], ref[1]))
    return by_series


def _sop_ref(sop_class: str, sop_uid: str) -> Dataset:
    """Return a Referenced SOP Sequence item."""
    item = Dataset()
    item.ReferencedSOPClassUID = UID(sop_class)
    item.ReferencedSOPInstanceUID = UID(sop_uid)
    return item


def _evidence(study_uid: str, by_series: dict[str, list]) -> DicomSequence:
    """Build a Hierarchical SOP Instance Reference Macro sequence."""
    series_items = []
    for series, refs in by_series.items():
        s = Dataset()
        s.ReferencedSOPSequence = DicomSequence([_sop_ref(c, u) for c, u in refs])
        s.SeriesInstanceUID = UID(series)
        series_items.append(s)
    study = Dataset()
    study.ReferencedSeriesSequence = DicomSequence(series_items)
    study.StudyInstanceUID = UID(study_uid)
    return DicomSequence([study])


def _document(sop_class: str, modality: str, kw: dict) -> Dataset:
    """Common part of SR/KO/PR documents (series number defaults to 100)."""
    ds = _base(
        sop_class=sop_class, sop_uid=kw["sop_uid"], modality=modality,
        patient_id=kw.get("patient_id", "PAT1"),
        patient_name=kw.get("patient_name", "Doe^John"),
        study_uid=kw["study_uid"], series_uid=kw["series_uid"],
        charset=kw.get("charset"), study_id=kw.get("study_id", "1"),
        accession_number=kw.get("accession_number", "A1"),
        study_date=kw.get("study_date", "20240101"),
        study_time=kw.get("study_time", "120000"),
        study_description=kw.get("study_description", "Synthetic study"),
        series_number=kw.get("series_number", 100),
        series_description=kw.get("series_description", ""),
        transfer_syntax=kw.get("transfer_syntax", EXPLICIT_VR_LITTLE_ENDIAN),
    )
    ds.InstanceNumber = kw.get("instance_number", 1)
    if modality in ("SR", "KO"):
        ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
        ds.ContentDate = kw.get("study_date", "20240101")
        ds.ContentTime = kw.get("study_time", "120000")
    return ds


def make_sr(
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    referenced: Sequence[Sequence[str]] = (),
    referenced_series_uid: str | None = None,
    text: str = "No abnormality detected in this synthetic study.",
    **kw,
) -> Dataset:
    """Return a Basic Text SR with one TEXT finding and evidence references.

    *referenced* holds ``(sop_class, sop_uid)`` or ``(sop_class, sop_uid,
    series_uid)`` tuples; two-element ones use *referenced_series_uid*.
    Other keywords (patient_id, patient_name, charset, ...) as for
    :func:`make_instance`.
    """
    kw.update(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
    ds = _document(BasicTextSRStorage, "SR", kw)
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.PerformedProcedureCodeSequence = DicomSequence()
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.ContinuityOfContent = "SEPARATE"
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = DicomSequence([_code("121071", "DCM", "Finding")])
    item.TextValue = text
    ds.ContentSequence = DicomSequence([item])
    if referenced:
        by_series = _group_references(referenced, referenced_series_uid)
        ds.CurrentRequestedProcedureEvidenceSequence = _evidence(study_uid, by_series)
    return ds


def make_kos(
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    referenced: Sequence[Sequence[str]],
    referenced_series_uid: str | None = None,
    **kw,
) -> Dataset:
    """Return a Key Object Selection Document ("Of Interest") for *referenced*."""
    kw.update(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
    ds = _document(KeyObjectSelectionDocumentStorage, "KO", kw)
    by_series = _group_references(referenced, referenced_series_uid)
    ds.CurrentRequestedProcedureEvidenceSequence = _evidence(study_uid, by_series)
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([_code("113000", "DCM", "Of Interest")])
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = DicomSequence([template])
    ds.ContinuityOfContent = "SEPARATE"
    items = []
    for refs in by_series.values():
        for sop_class, uid in refs:
            item = Dataset()
            item.RelationshipType = "CONTAINS"
            item.ValueType = "IMAGE"
            item.ReferencedSOPSequence = DicomSequence([_sop_ref(sop_class, uid)])
            items.append(item)
    ds.ContentSequence = DicomSequence(items)
    return ds


def make_pr(
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    referenced: Sequence[Sequence[str]],
    referenced_series_uid: str | None = None,
    rows: int = 64,
    columns: int = 64,
    content_label: str = "SYNTHETIC",
    **kw,
) -> Dataset:
    """Return a minimal Grayscale Softcopy Presentation State for *referenced*."""
    kw.update(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
    ds = _document(GrayscaleSoftcopyPresentationStateStorage, "PR", kw)
    ds.ContentLabel = content_label
    ds.ContentDescription = "Synthetic presentation state"
    ds.PresentationCreationDate = kw.get("study_date", "20240101")
    ds.PresentationCreationTime = kw.get("study_time", "120000")
    ds.ContentCreatorName = ""
    by_series = _group_references(referenced, referenced_series_uid)
    series_items = []
    for series, refs in by_series.items():
        s = Dataset()
        s.ReferencedImageSequence = DicomSequence([_sop_ref(c, u) for c, u in refs])
        s.SeriesInstanceUID = UID(series)
        series_items.append(s)
    ds.ReferencedSeriesSequence = DicomSequence(series_items)
    area = Dataset()
    area.DisplayedAreaTopLeftHandCorner = [1, 1]
    area.DisplayedAreaBottomRightHandCorner = [columns, rows]
    area.PresentationSizeMode = "SCALE TO FIT"
    area.PresentationPixelSpacing = ["0.5", "0.5"]
    ds.DisplayedAreaSelectionSequence = DicomSequence([area])
    ds.PresentationLUTShape = "IDENTITY"
    return ds


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def _copy_for_encoding(ds: Dataset, big_endian: bool) -> Dataset:
    """Return a copy whose OW pixel bytes match the target byte order."""
    # Deep copy: Dataset(ds) would share the element dict with the caller.
    out = copy.deepcopy(ds)
    if big_endian and "PixelData" in ds and ds.get("BitsAllocated", 8) > 8:
        # pydicom writes PixelData bytes verbatim, so swap 16/32-bit words.
        width = ds.BitsAllocated // 8
        arr = np.frombuffer(ds.PixelData, dtype=f"<u{width}")
        out.PixelData = arr.astype(f">u{width}").tobytes()
        out["PixelData"].VR = "OW"
    return out


def encode_file(ds: Dataset, *, preamble: bool = True, implicit: bool = False,
                big_endian: bool = False, deflated: bool = False) -> bytes:
    """Return the bytes :func:`write_file` would write."""
    if sum((implicit, big_endian, deflated)) > 1:
        raise ValueError("choose at most one of implicit, big_endian, deflated")
    out = _copy_for_encoding(ds, big_endian)
    buf = io.BytesIO()
    if not preamble:
        # Raw data set as old devices wrote it: no preamble, no meta, IVR LE.
        if hasattr(out, "file_meta"):
            del out.file_meta
        out.preamble = None
        dcmwrite(buf, out, implicit_vr=True, little_endian=True,
                 enforce_file_format=False)
        return buf.getvalue()
    if implicit:
        ts = IMPLICIT_VR_LITTLE_ENDIAN
    elif big_endian:
        ts = EXPLICIT_VR_BIG_ENDIAN
    elif deflated:
        ts = DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    else:
        ts = ds.file_meta.TransferSyntaxUID if hasattr(ds, "file_meta") else EXPLICIT_VR_LITTLE_ENDIAN
    if not hasattr(out, "file_meta"):
        out.file_meta = FileMetaDataset()
    out.file_meta.TransferSyntaxUID = UID(ts)
    # Fixed zero preamble: deterministic bytes.
    out.preamble = b"\x00" * 128
    dcmwrite(buf, out, enforce_file_format=True)
    return buf.getvalue()


def write_file(ds: Dataset, path: str | Path, *, preamble: bool = True,
               implicit: bool = False, big_endian: bool = False,
               deflated: bool = False) -> Path:
    """Write *ds* as a Part 10 file (or a raw data set if ``preamble=False``).

    The file meta Transfer Syntax UID always matches the encoding used.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_file(ds, preamble=preamble, implicit=implicit,
                                 big_endian=big_endian, deflated=deflated))
    return path


# --------------------------------------------------------------------------
# Example corpus: a deliberately messy user folder
# --------------------------------------------------------------------------

_JUNK = {
    "README.txt": b"Exported from the PACS on a Tuesday.\nDo not delete.\n",
    "misc stuff/preview.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9",
    "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 56,
    "DICOMDIR": b"\x00garbage, not a directory record \xde\xad\xbe\xef" * 4,
}


def _corpus_ct(root: Path, rec: Callable) -> list[tuple[str, str, str]]:
    """Patient 1: 10-slice CT (mixed encodings) + SR; return CT references."""
    study = uid_for("corpus", "p1", "study")
    series = uid_for("corpus", "p1", "ct")
    folder = root / "Patient One - CT chest" / "ct series 1 (axial)"
    # Old devices and odd exporters: a few slices in other encodings.
    odd = {7: ("implicit", {"implicit": True}), 8: ("big_endian", {"big_endian": True}),
           9: ("deflated", {"deflated": True}), 10: ("raw", {"preamble": False})}
    refs = []
    for n in range(1, 11):
        ds = make_instance(patient_id="PAT1", patient_name="Doe^John", study_uid=study,
                           series_uid=series, sop_uid=uid_for("corpus", "p1", "ct", n),
                           modality="CT", instance_number=n, series_description="CT chest",
                           accession_number="ACC0001", seed=1)
        name = f"slice_{n:03d}.dcm" if n % 2 else f"image{n:04d}"
        encoding, opts = odd.get(n, ("explicit", {}))
        rec(write_file(ds, folder / name, **opts), ds, encoding)
        refs.append((ds.SOPClassUID, ds.SOPInstanceUID, series))
    sr = make_sr(patient_id="PAT1", patient_name="Doe^John", study_uid=study,
                 series_uid=uid_for("corpus", "p1", "sr"),
                 sop_uid=uid_for("corpus", "p1", "sr", 1), referenced=refs,
                 accession_number="ACC0001", text="Normal synthetic chest CT.")
    rec(write_file(sr, root / "Patient One - CT chest" / "report.dcm"), sr, "explicit")
    return refs


def _corpus_mr(root: Path, rec: Callable) -> None:
    """Patient 2: 6-slice MR, Latin-1 name, empty Study ID, long folder names."""
    study = uid_for("corpus", "p2", "study")
    series = uid_for("corpus", "p2", "mr")
    folder = (root / "exports" / "mueller juergen brain mri from the old hospital archive"
              / "t1 weighted axial series exported by the radiology department")
    for n in range(1, 7):
        ds = make_instance(patient_id="PAT2", patient_name="Müller^Jürgen",
                           charset="ISO_IR 100", study_uid=study, series_uid=series,
                           sop_uid=uid_for("corpus", "p2", "mr", n), modality="MR",
                           study_id="", instance_number=n, accession_number="ACC0002",
                           study_description="MR Kopf", series_description="T1 ax", seed=2)
        rec(write_file(ds, folder / f"mr image number {n}.dcm"), ds, "explicit")


def _corpus_us(root: Path, rec: Callable) -> None:
    """Patient 3: RGB multi-frame US with a UTF-8 name, plus a KOS and a PR."""
    study = uid_for("corpus", "p3", "study")
    series = uid_for("corpus", "p3", "us")
    common: dict[str, Any] = dict(patient_id="PAT3", patient_name="山田^太郎", charset="ISO_IR 192",
                                  study_uid=study, accession_number="ACC0003",
                                  study_description="Abdominal ultrasound")
    folder = root / "exports" / "US 2024" / "yamada"
    ds = make_instance(series_uid=series, sop_uid=uid_for("corpus", "p3", "us", 1),
                       modality="US", frames=5, bits_allocated=8, bits_stored=8,
                       samples_per_pixel=3, photometric="RGB", seed=3, **common)
    rec(write_file(ds, folder / "cine loop"), ds, "explicit")
    ref = [(ds.SOPClassUID, ds.SOPInstanceUID, series)]
    kos = make_kos(series_uid=uid_for("corpus", "p3", "ko"),
                   sop_uid=uid_for("corpus", "p3", "ko", 1), referenced=ref, **common)
    rec(write_file(kos, folder / "key images.dcm"), kos, "explicit")
    pr = make_pr(series_uid=uid_for("corpus", "p3", "pr"),
                 sop_uid=uid_for("corpus", "p3", "pr", 1), referenced=ref, **common)
    rec(write_file(pr, folder / "presentation state"), pr, "explicit")


def make_example_corpus(root: str | Path) -> dict:
    """Write the bundled messy example folder under *root*; describe it.

    Returns a dict with ``root``, ``patients``, ``studies``, ``series``,
    ``instances`` (SOP Instance UIDs), ``files`` (relative path -> SOP
    Instance UID), ``encodings`` (relative path -> encoding), ``modalities``
    (SOP Instance UID -> modality), ``junk`` (relative paths) and
    ``total_bytes``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    encodings: dict[str, str] = {}
    modalities: dict[str, str] = {}
    series: set[str] = set()

    def rec(path: Path, ds: Dataset, encoding: str) -> None:
        rel = path.relative_to(root).as_posix()
        files[rel] = str(ds.SOPInstanceUID)
        encodings[rel] = encoding
        modalities[str(ds.SOPInstanceUID)] = str(ds.Modality)
        series.add(str(ds.SeriesInstanceUID))

    _corpus_ct(root, rec)
    _corpus_mr(root, rec)
    _corpus_us(root, rec)
    for rel, data in _JUNK.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {
        "root": str(root),
        "patients": 3,
        "studies": 3,
        "series": len(series),
        "instances": list(files.values()),
        "files": files,
        "encodings": encodings,
        "modalities": modalities,
        "junk": list(_JUNK),
        "total_bytes": total,
    }


# --------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------

def make_bad_inputs(root: str | Path) -> dict[str, Path]:
    """Write deliberately broken inputs; return name -> path.

    For the duplicates the returned path is the second file; the first one
    sits next to it (``*_a.dcm``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    study, series = uid_for("bad", "study"), uid_for("bad", "series")

    def ct(n: int, seed: int = 0) -> Dataset:
        return make_instance(patient_id="BAD1", patient_name="Broken^Bob", study_uid=study,
                             series_uid=series, sop_uid=uid_for("bad", "ct", n),
                             instance_number=n, seed=seed)

    good = encode_file(ct(1))
    out: dict[str, Path] = {}
    pixel_len = len(ct(1).PixelData)
    # Keep the header and half of the pixel data.
    out["truncated"] = root / "truncated.dcm"
    out["truncated"].write_bytes(good[: len(good) - pixel_len // 2])
    # Cut halfway between the end of the file meta and the Pixel Data tag,
    # i.e. inside the main data set header.
    meta_end = 132 + 12 + struct.unpack("<I", good[140:144])[0]
    pixel_tag = len(good) - pixel_len - 12
    out["truncated_header"] = root / "truncated_header.dcm"
    out["truncated_header"].write_bytes(good[: (meta_end + pixel_tag) // 2])
    out["not_dicom"] = root / "not_dicom.dcm"
    out["not_dicom"].write_bytes(b"This is a text file that merely ends in .dcm\n")
    (root / "conflicting_a.dcm").write_bytes(encode_file(ct(2, seed=0)))
    out["conflicting_duplicate"] = root / "conflicting_b.dcm"
    # Same SOP Instance UID, different seed -> different pixels.
    out["conflicting_duplicate"].write_bytes(encode_file(ct(2, seed=99)))
    (root / "identical_a.dcm").write_bytes(encode_file(ct(3)))
    out["identical_duplicate"] = root / "copy of identical_a.dcm"
    shutil.copyfile(root / "identical_a.dcm", out["identical_duplicate"])
    return out


# --------------------------------------------------------------------------
# Fast bulk trees for benchmarks
# --------------------------------------------------------------------------

# Elements that differ between instances of a bulk tree; everything else is
# taken verbatim from one template encoding.
_TREE_VARIABLE = {
    0x00080018: b"UI",  # SOP Instance UID
    0x00080050: b"SH",  # Accession Number
    0x00100010: b"PN",  # Patient's Name
    0x00100020: b"LO",  # Patient ID
    0x0020000D: b"UI",  # Study Instance UID
    0x0020000E: b"UI",  # Series Instance UID
    0x00200010: b"SH",  # Study ID
    0x00200011: b"IS",  # Series Number
    0x00200013: b"IS",  # Instance Number
    0x00200032: b"DS",  # Image Position (Patient)
    0x00200052: b"UI",  # Frame of Reference UID
    0x00201041: b"DS",  # Slice Location
    0x7FE00010: b"OW",  # Pixel Data (seeded by instance number; always even length)
}


def _element(tag: int, vr: bytes, value: bytes | str) -> bytes:
    """Encode one Explicit VR Little Endian element (ASCII text or raw bytes)."""
    return encode_element(tag, vr, value.encode("ascii") if isinstance(value, str) else value)


def _tree_params(i: int, n: int, patients: int, series_per_patient: int,
                 rows: int, columns: int, seed: int) -> tuple[dict, tuple[int, int, int]]:
    """Return make_instance kwargs and (patient, series, instance) for index *i*."""
    per_series = max(1, math.ceil(n / (patients * series_per_patient)))
    s = i // per_series
    p, se, inst = s // series_per_patient, s % series_per_patient, i % per_series + 1
    study = uid_for("tree", seed, "p", p, "study")
    kwargs = dict(
        patient_id=f"P{p + 1:06d}", patient_name=f"Synthetic^Patient{p + 1:06d}",
        study_uid=study, series_uid=uid_for("tree", seed, "p", p, "se", se),
        sop_uid=uid_for("tree", seed, "p", p, "se", se, "im", inst),
        modality="CT", rows=rows, columns=columns, study_id=str(p + 1),
        accession_number=f"ACC{p + 1:06d}", series_number=se + 1,
        instance_number=inst, seed=seed,
    )
    return kwargs, (p, se, inst)


class _TreeEncoder:
    """Encode tree instances by splicing variable elements into a template.

    Byte-identical to ``encode_file(make_instance(**kwargs))`` but ~100x
    faster, because pydicom is only used once for the template.
    """

    def __init__(self, template: Dataset):
        """Pre-encode all fixed elements of *template*."""
        self.chunks: list[bytes | int] = []
        for elem in template:
            if elem.tag in _TREE_VARIABLE:
                self.chunks.append(int(elem.tag))
                continue
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_data_element(fp, elem)
            if self.chunks and isinstance(self.chunks[-1], bytes):
                self.chunks[-1] += fp.getvalue()
            else:
                self.chunks.append(fp.getvalue())
        meta = template.file_meta
        self.meta_fixed = [
            _element(0x00020001, b"OB", b"\x00\x01"),
            _element(0x00020002, b"UI", meta.MediaStorageSOPClassUID),
        ]
        self.meta_tail = (_element(0x00020010, b"UI", meta.TransferSyntaxUID)
                          + _element(0x00020012, b"UI", meta.ImplementationClassUID)
                          + _element(0x00020013, b"SH", str(meta.ImplementationVersionName)))
        self.pixels: dict[int, bytes] = {}
        self.shape = template.Rows, template.Columns

    def _pixel_data(self, instance_number: int, seed: int) -> bytes:
        """Return (cached) phantom pixel bytes for an instance number."""
        if instance_number not in self.pixels:
            rows, columns = self.shape
            arr = phantom_pixels(rows=rows, columns=columns, seed=seed + instance_number)
            self.pixels[instance_number] = _pixel_bytes(arr, 0)
        return self.pixels[instance_number]

    def encode(self, kw: dict) -> bytes:
        """Return the Part 10 bytes for one instance described by *kw*."""
        inst = kw["instance_number"]
        z = f"{(inst - 1) * 2.5:.1f}"
        rows, columns = self.shape
        values = {
            0x00080018: kw["sop_uid"], 0x00080050: kw["accession_number"],
            0x00100010: kw["patient_name"], 0x00100020: kw["patient_id"],
            0x0020000D: kw["study_uid"], 0x0020000E: kw["series_uid"],
            0x00200010: kw["study_id"], 0x00200011: str(kw["series_number"]),
            0x00200013: str(inst),
            0x00200032: f"{-columns / 4:.1f}\\{-rows / 4:.1f}\\{z}",
            0x00200052: uid_for(kw["series_uid"], "frame-of-reference"),
            0x00201041: z,
            0x7FE00010: self._pixel_data(inst, kw["seed"]),
        }
        meta = b"".join(self.meta_fixed) + _element(0x00020003, b"UI", kw["sop_uid"]) + self.meta_tail
        group_length = encode_ul(0x00020000, len(meta))
        parts = [b"\x00" * 128, b"DICM", group_length, meta]
        for chunk in self.chunks:
            if isinstance(chunk, int):
                parts.append(_element(chunk, _TREE_VARIABLE[chunk], values[chunk]))
            else:
                parts.append(chunk)
        return b"".join(parts)


def _write_tree(root: Path, n: int, path_for: Callable[[int, int, int, int], str],
                patients: int, series_per_patient: int, rows: int, columns: int,
                seed: int) -> list[Path]:
    """Write *n* tree instances, naming each with *path_for(i, p, se, inst)*."""
    root = Path(root)
    kw0, _ = _tree_params(0, n, patients, series_per_patient, rows, columns, seed)
    encoder = _TreeEncoder(make_instance(**kw0))
    made_dirs: set[Path] = set()
    paths = []
    for i in range(n):
        kw, (p, se, inst) = _tree_params(i, n, patients, series_per_patient, rows, columns, seed)
        path = root / path_for(i, p, se, inst)
        if path.parent not in made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path.parent)
        path.write_bytes(encoder.encode(kw))
        paths.append(path)
    return paths


def make_conformant_tree(root: str | Path, n: int, *, patients: int = 10,
                         series_per_patient: int = 4, rows: int = 16,
                         columns: int = 16, seed: int = 0) -> list[Path]:
    """Write *n* small CT instances in a PS3.10 layout (no DICOMDIR).

    Paths are ``PA000001/ST000001/SE000001/IM000001``; instances fill series
    in order, one study per patient. Returns the paths in write order.
    """
    def path_for(i: int, p: int, se: int, inst: int) -> str:
        return f"PA{p + 1:06d}/ST000001/SE{se + 1:06d}/IM{inst:06d}"

    return _write_tree(Path(root), n, path_for, patients, series_per_patient,
                       rows, columns, seed)


def make_messy_tree(root: str | Path, n: int, *, patients: int = 10,
                    series_per_patient: int = 4, rows: int = 16,
                    columns: int = 16, seed: int = 0) -> list[Path]:
    """Same content as :func:`make_conformant_tree` with messy user names.

    E.g. ``patient 3/series_2/img_00017.dcm``; every other patient gets an
    extra ``more scans`` folder level, and every third file has no extension.
    """
    def path_for(i: int, p: int, se: int, inst: int) -> str:
        nest = "more scans/" if p % 2 else ""
        ext = "" if i % 3 == 2 else ".dcm"
        return f"patient {p + 1}/{nest}series_{se + 1}/img_{i + 1:05d}{ext}"

    return _write_tree(Path(root), n, path_for, patients, series_per_patient,
                       rows, columns, seed)
