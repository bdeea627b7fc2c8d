#!/usr/bin/env python3
"""Generate ``dicompack/data/record_types.json`` and ``spec/record_types.md``.

Inputs (and nothing else, so the output is deterministic):

1. ``RECORD_KEYS`` below: the directory record keys of DICOM PS3.3 Annex F.5
   (Tables F.5-1 ...), transcribed as ``(Keyword, Type)`` pairs.  Tags and VRs
   are *not* transcribed; they are looked up in pydicom's data dictionary, so a
   typo in a keyword fails loudly instead of producing a wrong tag.
   Omitted on purpose (the encoder writes them itself): every group-0004
   structural attribute, the Referenced File ID / Referenced SOP Class,
   Instance and Transfer Syntax UID in File keys (0004,1500/1510/1511/1512),
   and the Icon Image Sequence (0088,0200).
2. ``MAPPING_RULES`` below: SOP Class -> Directory Record Type, transcribed
   from PS3.3 F.4/F.5 (record type definitions) and the PS3.11 media
   application profiles, as explicit UID exceptions followed by ordered
   name-pattern rules.
3. pydicom's UID dictionary (``pydicom._uid_dict.UID_dictionary``): the
   list of Storage SOP Classes that must be mapped.

Usage::

    python tools/gen_record_types.py          # rewrite both files
    python tools/gen_record_types.py --check  # exit 1 if they are stale
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pydicom
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, tag_for_keyword

ROOT = Path(__file__).resolve().parents[1]
JSON_PATH = ROOT / "dicompack" / "data" / "record_types.json"
MD_PATH = ROOT / "spec" / "record_types.md"

SOURCE = (
    "DICOM PS3.3 Annex F.4/F.5 (Basic Directory IOD: record types, Tables "
    "F.5-1..F.5-48 directory record keys, Table 10-12 Content Identification "
    "Macro), current edition 2025a (tables checked against the 2020a-2025a "
    "dicom.nema.org text where noted in spec/record_types.md); retired "
    "record types OVERLAY, CURVE, MODALITY LUT, VOI LUT, STORED PRINT from "
    "PS3.3-2004. Storage SOP Class list: pydicom "
    f"{pydicom.__version__} pydicom._uid_dict.UID_dictionary. Cross-checked "
    "with pydicom fileset.py (_SINGLE_LEVEL_SOP_CLASSES, "
    "_FOUR_LEVEL_SOP_CLASSES) and DCMTK dcmdata/libsrc/dcddirif.cc "
    "(sopClassToRecordType)."
)

# ---------------------------------------------------------------------------
# 1. RECORD KEYS, transcribed from PS3.3 Table F.5-x.
#    (keyword, Type).  "SCS" = Specific Character Set (0008,0005), Type 1C
#    ("Required if an extended or replacement character set is used in one
#    of the keys") in every table that lists it.
# ---------------------------------------------------------------------------
SCS = ("SpecificCharacterSet", "1C")

# PS3.3 Table 10-12 "Content Identification Macro Attributes", as included
# ("Include Table 10-12") by several key tables.
_CONTENT_ID_MACRO = [
    ("InstanceNumber", "1"), ("ContentLabel", "1"),
    ("ContentDescription", "2"),
    ("AlternateContentDescriptionSequence", "3"),
    ("ContentCreatorName", "2"),
    ("ContentCreatorIdentificationCodeSequence", "3"),
]
# Content Date / Content Time (Type 1) followed by the macro: the pattern of
# the REGISTRATION, FIDUCIAL, VALUE MAP, MEASUREMENT, SURFACE and TRACT tables.
_CONTENT_ID = [("ContentDate", "1"), ("ContentTime", "1"), *_CONTENT_ID_MACRO]

RECORD_KEYS: dict[str, list[tuple[str, str]]] = {
    # Table F.5-1 PATIENT
    "PATIENT": [SCS, ("PatientName", "2"), ("PatientID", "1")],
    # Table F.5-2 STUDY
    "STUDY": [SCS, ("StudyDate", "1"), ("StudyTime", "1"),
              ("AccessionNumber", "2"), ("StudyDescription", "2"),
              ("StudyInstanceUID", "1C"), ("StudyID", "1")],
    # Table F.5-3 SERIES (Icon Image Sequence omitted)
    "SERIES": [SCS, ("Modality", "1"), ("SeriesInstanceUID", "1"),
               ("SeriesNumber", "1")],
    # Table F.5-4 IMAGE (Icon Image Sequence omitted)
    "IMAGE": [SCS, ("InstanceNumber", "1")],
    # RT DOSE
    "RT DOSE": [SCS, ("InstanceNumber", "1"), ("DoseSummationType", "1"),
                ("DoseComment", "3")],
    # RT STRUCTURE SET
    "RT STRUCTURE SET": [SCS, ("InstanceNumber", "1"),
                         ("StructureSetLabel", "1"),
                         ("StructureSetDate", "2"),
                         ("StructureSetTime", "2")],
    # RT PLAN
    "RT PLAN": [SCS, ("InstanceNumber", "1"), ("RTPlanLabel", "1"),
                ("RTPlanDate", "2"), ("RTPlanTime", "2")],
    # RT TREAT RECORD
    "RT TREAT RECORD": [SCS, ("InstanceNumber", "1"), ("TreatmentDate", "2"),
                        ("TreatmentTime", "2")],
    # PRESENTATION (nested keys of the two sequences not listed here;
    # verified against PS3.3 2020a: creation date/time + Table 10-12 macro)
    "PRESENTATION": [SCS, ("PresentationCreationDate", "1"),
                     ("PresentationCreationTime", "1"),
                     *_CONTENT_ID_MACRO,
                     ("ReferencedSeriesSequence", "1C"),
                     ("BlendingSequence", "1C")],
    # WAVEFORM
    "WAVEFORM": [SCS, ("ContentDate", "1"), ("ContentTime", "1"),
                 ("InstanceNumber", "1")],
    # SR DOCUMENT
    "SR DOCUMENT": [SCS, ("ContentDate", "1"), ("ContentTime", "1"),
                    ("InstanceNumber", "1"), ("VerificationDateTime", "1C"),
                    ("ConceptNameCodeSequence", "1"),
                    ("CompletionFlag", "1"), ("VerificationFlag", "1"),
                    ("ContentSequence", "1C")],
    # KEY OBJECT DOC
    "KEY OBJECT DOC": [SCS, ("ContentDate", "1"), ("ContentTime", "1"),
                       ("InstanceNumber", "1"),
                       ("ConceptNameCodeSequence", "1"),
                       ("ContentSequence", "1C")],
    # SPECTROSCOPY (Icon Image Sequence omitted)
    "SPECTROSCOPY": [SCS, ("ImageType", "1"), ("ContentDate", "1"),
                     ("ContentTime", "1"),
                     ("ReferencedImageEvidenceSequence", "1C"),
                     ("InstanceNumber", "1"), ("NumberOfFrames", "1"),
                     ("Rows", "1"), ("Columns", "1"),
                     ("DataPointRows", "1"), ("DataPointColumns", "1")],
    # Table F.5-28 RAW DATA (Icon Image Sequence omitted). Instance Number is
    # Type 2 here (verified, PS3.3 2020a Table F.5-28).
    "RAW DATA": [SCS, ("ContentDate", "1"), ("ContentTime", "1"),
                 ("InstanceNumber", "2")],
    # Table F.5-29 REGISTRATION
    "REGISTRATION": [SCS, *_CONTENT_ID],
    # Table F.5-30 FIDUCIAL
    "FIDUCIAL": [SCS, *_CONTENT_ID],
    # HANGING PROTOCOL
    "HANGING PROTOCOL": [SCS, ("HangingProtocolName", "1"),
                         ("HangingProtocolDescription", "1"),
                         ("HangingProtocolLevel", "1"),
                         ("HangingProtocolCreator", "1"),
                         ("HangingProtocolCreationDateTime", "1"),
                         ("HangingProtocolDefinitionSequence", "1"),
                         ("NumberOfPriorsReferenced", "1"),
                         ("HangingProtocolUserIdentificationCodeSequence", "2")],
    # ENCAP DOC
    "ENCAP DOC": [SCS, ("ContentDate", "2"), ("ContentTime", "2"),
                  ("InstanceNumber", "1"), ("DocumentTitle", "2"),
                  ("HL7InstanceIdentifier", "1C"),
                  ("ConceptNameCodeSequence", "2"),
                  ("MIMETypeOfEncapsulatedDocument", "1")],
    # VALUE MAP
    "VALUE MAP": [SCS, *_CONTENT_ID],
    # STEREOMETRIC: no keys besides Specific Character Set
    "STEREOMETRIC": [SCS],
    # PALETTE
    "PALETTE": [SCS, ("ContentLabel", "1"), ("ContentDescription", "2")],
    # IMPLANT
    "IMPLANT": [SCS, ("Manufacturer", "1"), ("ImplantName", "1"),
                ("ImplantSize", "1C"), ("ImplantPartNumber", "1")],
    # Table F.5-38 IMPLANT ASSY
    "IMPLANT ASSY": [SCS, ("ImplantAssemblyTemplateName", "1"),
                     ("Manufacturer", "1"),
                     ("ProcedureTypeCodeSequence", "1")],
    # IMPLANT GROUP
    "IMPLANT GROUP": [SCS, ("ImplantTemplateGroupName", "1"),
                      ("ImplantTemplateGroupIssuer", "1")],
    # Table F.5-42 SURFACE
    "SURFACE": [SCS, *_CONTENT_ID],
    # Table F.5-41 MEASUREMENT
    "MEASUREMENT": [SCS, *_CONTENT_ID],
    # Table F.5-40 PLAN: no keys besides Specific Character Set
    "PLAN": [SCS],
    # SURFACE SCAN
    "SURFACE SCAN": [SCS, ("ContentDate", "1"), ("ContentTime", "1")],
    # Table F.5-44 TRACT
    "TRACT": [SCS, *_CONTENT_ID],
    # ASSESSMENT
    "ASSESSMENT": [SCS, ("InstanceCreationDate", "1"),
                   ("InstanceCreationTime", "2"), ("InstanceNumber", "1")],
    # Table F.5-46 RADIOTHERAPY
    "RADIOTHERAPY": [SCS, ("InstanceNumber", "1"),
                     ("ContentDescription", "2"),
                     ("ContentCreatorName", "2"),
                     ("UserContentLabel", "1C"),
                     ("UserContentLongLabel", "1C")],
    # ANNOTATION (Microscopy Bulk Simple Annotations) -- table text
    # NOT found in this session; assumed to follow the Content Date/Time +
    # Content Identification pattern (the IOD's module includes the macro).
    "ANNOTATION": [SCS, *_CONTENT_ID],
    # Table F.5-48 INVENTORY. "Include Table C.38.2-1 Scope of Inventory Macro" is
    # represented by its top-level Scope of Inventory Sequence (Type 2: it may
    # be zero-length for a comprehensive inventory, PS3.4 KK.2.2).
    "INVENTORY": [SCS, ("ContentDate", "1"), ("ContentTime", "1"),
                  ("InventoryPurpose", "2"), ("InventoryLevel", "1"),
                  ("ScopeOfInventorySequence", "2"),
                  ("InventoryCompletionStatus", "1"),
                  ("TotalNumberOfStudyRecords", "1")],
    # PRIVATE: only Private Record UID (0004,1432), which is group 0004.
    "PRIVATE": [SCS],
    # --- Retired record types (PS3.3 2003/2004 Annex F.5), only for the
    #     retired standalone / print Storage SOP Classes.
    "OVERLAY": [SCS, ("OverlayNumber", "1")],
    "MODALITY LUT": [SCS, ("LUTNumber", "1")],
    "VOI LUT": [SCS, ("LUTNumber", "1")],
    "CURVE": [SCS, ("CurveNumber", "1")],
    "STORED PRINT": [SCS, ("InstanceNumber", "1")],
}

# Record types placed directly in the root directory entity (PS3.3 F.4,
# Figure F.4-1: "TOP LEVEL and LEAF"), not under PATIENT/STUDY/SERIES.
SINGLE_LEVEL = ["HANGING PROTOCOL", "PALETTE", "IMPLANT", "IMPLANT ASSY",
                "IMPLANT GROUP"]

# ---------------------------------------------------------------------------
# 2. SOP CLASS -> RECORD TYPE MAPPING, transcribed from the standard.
#    Checked in this order: NOT_STORAGE (skipped), UID_EXCEPTIONS, then the
#    first matching (regex on the pydicom SOP Class name, record type) rule.
#    Anything still unmatched is an error (so new pydicom classes must be
#    classified by a human).
# ---------------------------------------------------------------------------
# SOP Classes with "Storage" in their name that are not composite-object
# Storage SOP Classes.
NOT_STORAGE = {
    "1.2.840.10008.1.3.10",   # Media Storage Directory Storage (the DICOMDIR)
    "1.2.840.10008.1.20.1",   # Storage Commitment Push Model
    "1.2.840.10008.1.20.2",   # Storage Commitment Pull Model (retired)
}

# Explicit exceptions, checked before the pattern rules.
UID_EXCEPTIONS = {
    # Retired standalone objects -> retired record types (PS3.3 2004 F.4).
    "1.2.840.10008.5.1.4.1.1.8": "OVERLAY",        # Standalone Overlay
    "1.2.840.10008.5.1.4.1.1.9": "CURVE",          # Standalone Curve
    "1.2.840.10008.5.1.4.1.1.129": "CURVE",        # Standalone PET Curve
    "1.2.840.10008.5.1.4.1.1.10": "MODALITY LUT",  # Standalone Modality LUT
    "1.2.840.10008.5.1.4.1.1.11": "VOI LUT",       # Standalone VOI LUT
    "1.2.840.10008.5.1.1.27": "STORED PRINT",      # Stored Print (retired)
    # Hardcopy images (retired): image records (as DCMTK does).
    "1.2.840.10008.5.1.1.29": "IMAGE",
    "1.2.840.10008.5.1.1.30": "IMAGE",
    # Key Object Selection is an SR-family IOD but has its own record.
    "1.2.840.10008.5.1.4.1.1.88.59": "KEY OBJECT DOC",
    # SR-based ophthalmic reports.
    "1.2.840.10008.5.1.4.1.1.78.6": "SR DOCUMENT",   # Spectacle Prescription Report
    "1.2.840.10008.5.1.4.1.1.79.1": "SR DOCUMENT",   # Macular Grid Thickness and Volume Report
    # Basic Structured Display -> PRESENTATION (PS3.3 F.4).
    "1.2.840.10008.5.1.4.1.1.131": "PRESENTATION",
    # Intraocular Lens Calculations -> MEASUREMENT.
    "1.2.840.10008.5.1.4.1.1.78.8": "MEASUREMENT",
    # Second-generation RT objects that are images -> IMAGE.
    "1.2.840.10008.5.1.4.1.1.481.1": "IMAGE",      # RT Image
    "1.2.840.10008.5.1.4.1.1.481.23": "IMAGE",     # Enhanced RT Image
    "1.2.840.10008.5.1.4.1.1.481.24": "IMAGE",     # Enhanced Continuous RT Image
    # RT Radiation Set Delivery Instruction is a second-generation RT object
    # (RADIOTHERAPY), unlike the first-generation Delivery Instructions (PLAN).
    "1.2.840.10008.5.1.4.1.1.481.21": "RADIOTHERAPY",
    # Procedure protocols / approval: no record type defined in PS3.3 F.4
    # and not in any media application profile -> PRIVATE (see spec).
    "1.2.840.10008.5.1.4.1.1.200.1": "PRIVATE",
    "1.2.840.10008.5.1.4.1.1.200.2": "PRIVATE",
    "1.2.840.10008.5.1.4.1.1.200.3": "PRIVATE",
    "1.2.840.10008.5.1.4.1.1.200.7": "PRIVATE",
    "1.2.840.10008.5.1.4.1.1.200.8": "PRIVATE",
    # DICOS non-image objects (NEMA IIC 1 / DICOS, not PS3.3 F.4) -> PRIVATE.
    "1.2.840.10008.5.1.4.1.1.501.3": "PRIVATE",    # Threat Detection Report
    "1.2.840.10008.5.1.4.1.1.501.4": "PRIVATE",    # 2D AIT
    "1.2.840.10008.5.1.4.1.1.501.5": "PRIVATE",    # 3D AIT
    "1.2.840.10008.5.1.4.1.1.501.6": "PRIVATE",    # Quadrupole Resonance
}

# Ordered (regex on SOP Class name, record type) rules.
MAPPING_RULES: list[tuple[str, str]] = [
    (r"Presentation State", "PRESENTATION"),
    # SR before Waveform: "Waveform Annotation SR Storage" is an SR document.
    (r"\bSR\b|Procedure Log", "SR DOCUMENT"),
    (r"Waveform", "WAVEFORM"),
    (r"^Encapsulated ", "ENCAP DOC"),
    (r"^RT Dose Storage", "RT DOSE"),
    (r"^RT Structure Set Storage", "RT STRUCTURE SET"),
    (r"^RT (Ion )?Plan Storage", "RT PLAN"),
    (r"^RT .*Treatment (Summary )?Record Storage", "RT TREAT RECORD"),
    (r"Delivery Instruction Storage", "PLAN"),
    (r"^(RT |C-Arm |Tomotherapeutic |Robotic)", "RADIOTHERAPY"),
    (r"^MR Spectroscopy", "SPECTROSCOPY"),
    (r"^Raw Data", "RAW DATA"),
    (r"Spatial Registration", "REGISTRATION"),
    (r"^Spatial Fiducials", "FIDUCIAL"),
    (r"^Real World Value Mapping", "VALUE MAP"),
    (r"^Stereometric Relationship", "STEREOMETRIC"),
    (r"^Surface Segmentation", "SURFACE"),
    (r"^Surface Scan ", "SURFACE SCAN"),
    (r"^Tractography", "TRACT"),
    (r"^Content Assessment", "ASSESSMENT"),
    (r"Bulk Simple Annotations", "ANNOTATION"),
    (r"^Inventory Storage", "INVENTORY"),
    (r"Measurements Storage", "MEASUREMENT"),
    (r"^Hanging Protocol", "HANGING PROTOCOL"),
    (r"^Color Palette", "PALETTE"),
    (r"^Generic Implant Template", "IMPLANT"),
    (r"^Implant Assembly Template", "IMPLANT ASSY"),
    (r"^Implant Template Group", "IMPLANT GROUP"),
    # Everything else with pixel data: images, incl. multi-frame,
    # Segmentation, Parametric Map, WSI, OCT, maps, DICOS/DICONDE images.
    (r"Image Storage|Segmentation Storage|Parametric Map|Volume Storage"
     r"|Map Storage|Volume Analysis Storage|Image Storage - For", "IMAGE"),
]

# ---------------------------------------------------------------------------
# 3. Generation (no more hand-transcribed data below this line)
# ---------------------------------------------------------------------------


def storage_sop_classes() -> dict[str, str]:
    """UID -> name of every Storage SOP Class in pydicom's UID dictionary."""
    out = {}
    for uid, entry in UID_dictionary.items():
        name, uid_type = entry[0], entry[1]
        if uid_type != "SOP Class" or uid in NOT_STORAGE:
            continue
        if "Storage" in name:
            out[uid] = name
    return out


def classify(uid: str, name: str) -> str:
    if uid in UID_EXCEPTIONS:
        return UID_EXCEPTIONS[uid]
    for pattern, record_type in MAPPING_RULES:
        if re.search(pattern, name):
            return record_type
    raise ValueError(f"unclassified Storage SOP Class {uid} {name!r}: "
                     "add a rule to tools/gen_record_types.py")


def _uid_key(uid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in uid.split("."))


def _key_rows(record_type: str) -> list[dict[str, str]]:
    rows = []
    for keyword, kind in RECORD_KEYS[record_type]:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{record_type}: unknown keyword {keyword}")
        if tag >> 16 == 0x0004 or tag == 0x00880200:
            raise ValueError(f"{record_type}: {keyword} must not be listed")
        rows.append({"tag": f"{tag:08X}", "keyword": keyword,
                     "vr": dictionary_VR(tag), "type": kind})
    rows.sort(key=lambda r: int(r["tag"], 16))
    return rows


def generate() -> dict:
    sop_classes = {}
    for uid in sorted(storage_sop_classes(), key=_uid_key):
        name = UID_dictionary[uid][0]
        sop_classes[uid] = {"name": name, "record_type": classify(uid, name)}
    unknown = {v["record_type"] for v in sop_classes.values()} - set(RECORD_KEYS)
    if unknown:
        raise ValueError(f"record types without keys: {sorted(unknown)}")
    return {
        "source": SOURCE,
        "sop_classes": sop_classes,
        "record_keys": {rt: _key_rows(rt) for rt in RECORD_KEYS},
        "single_level": list(SINGLE_LEVEL),
    }


def render_json(data: dict) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


MD_HEAD = """\
# Directory record types and keys

Generated by `tools/gen_record_types.py` -- do not edit the tables by hand;
edit the script and re-run it. Source: {source}

## Record keys per record type

Group 0004 attributes, Referenced File/SOP keys (0004,1500/1510/1511/1512)
and the Icon Image Sequence (0088,0200) are written by the encoder and are
not listed. Nested keys inside sequences (e.g. PRESENTATION's Referenced
Series Sequence items) are not listed either.

"""

MD_NOTES = """\
## Disagreements between sources, and open points

Where pydicom 3.0.2 `fileset.py` or DCMTK `dcddirif.cc` disagree with the
table above, the table follows the standard:

* **Default for unknown SOP Classes.** DCMTK's `sopClassToRecordType`
  defaults to IMAGE; dicompack (like pydicom) uses PRIVATE for unmapped
  classes, and every Storage SOP Class known to pydicom is mapped explicitly.
* **pydicom 3.0.2** (`fileset.py`): `_four_level_record_type` first uses
  the dataset (Modality RTINTENT/RTSEGANN/RTRAD -> RADIOTHERAPY, Modality
  PLAN -> PLAN, Encapsulated Document present -> ENCAP DOC, RT Plan Label
  present -> RT PLAN), then `_FOUR_LEVEL_SOP_CLASSES`, defaulting to IMAGE.
  By SOP Class alone it therefore disagrees with this table for: Volumetric
  and Variable Modality LUT Presentation States (PRESENTATION here);
  General 32-bit ECG (WAVEFORM); Enhanced X-Ray Radiation Dose SR and
  Waveform Annotation SR (SR DOCUMENT); Intraocular Lens Calculations
  (MEASUREMENT); Microscopy Bulk Simple Annotations (ANNOTATION); Inventory
  (INVENTORY); the retired classes (see below). For second-generation RT,
  PS3.3 F.5.46 covers all RT Second Generation IODs (Modality per A.86.1),
  so RT Radiation Record Set, Radiation Salvage Record, Treatment
  Preparation and Patient Position Acquisition Instruction are RADIOTHERAPY
  here, while pydicom's three-modality test would give IMAGE for them.
  pydicom maps the retired trial SR/waveform classes to IMAGE.
* **Missing in DCMTK's `sopClassToRecordType`** (DCMTK falls back to IMAGE):
  the newer waveform classes (General 32-bit ECG, Multi-channel Respiratory,
  EEG/EMG/EOG, Body Position), Variable Modality LUT Presentation State,
  Encapsulated OBJ/MTL, Enhanced X-Ray Radiation Dose SR, Waveform
  Annotation SR, the second-generation RT classes other than Physician
  Intent / Segment Annotation, Microscopy Bulk Simple Annotations and
  Inventory. All follow the standard here.
* **RT Radiation Set Delivery Instruction** (481.21) is mapped to
  RADIOTHERAPY as a second-generation RT IOD; the PLAN record (F.5.40)
  is defined for instances "having a Modality of PLAN, such as the RT Beams
  Delivery Instruction IOD or the RT Brachy Application Setup Delivery
  Instruction IOD". If this IOD's Modality is PLAN the PLAN record would
  apply instead -- not verified.
* **Retired SOP Classes.** DCMTK maps Standalone Overlay/Curve/PET Curve/
  Modality LUT/VOI LUT and Stored Print to the retired OVERLAY, CURVE,
  MODALITY LUT, VOI LUT, STORED PRINT records; so does this table (keys
  from the 2003/2004 PS3.3 Annex F). pydicom has no mapping for them.
  Retired trial classes (Waveform/VL/SR trials, RT Beams Delivery
  Instruction trial) follow their family. Retired Hardcopy Grayscale/Color
  Image Storage are mapped to IMAGE as in DCMTK.
* **No record type in the standard.** CT/XA Defined and Performed Procedure
  Protocol and Protocol Approval Storage, and the DICOS non-image objects
  (Threat Detection Report, 2D/3D AIT, Quadrupole Resonance) have no
  record type in PS3.3 F.4 -> PRIVATE. DICOS CT/DX and DICONDE Eddy Current
  images -> IMAGE.
* **Record types not in the brief's list**: IMPLANT ASSY and IMPLANT GROUP
  (PS3.3 F.5, single-level) are included because their SOP Classes exist.
* **PS3.3 2025 additions not applicable yet.** PS3.3 2025a defines a
  WAVEFORM PRES record (Table F.5-49, Waveform Presentation State); its
  SOP Class is not in pydicom 3.0.2's UID dictionary, so it is not mapped.
* **Verification status.** Read against the standard text (dicom.nema.org
  PS3.3 chtml, editions 2020a-2025a, Annex F.5) in this revision: PATIENT,
  PRESENTATION (creation date/time + Table 10-12 macro), RAW DATA
  (Instance Number is **Type 2**; pydicom's `_define_generic_content`
  requires it), REGISTRATION, FIDUCIAL, PLAN, MEASUREMENT, SURFACE, TRACT,
  RADIOTHERAPY and INVENTORY; Table 10-12 (Content Identification Macro)
  was read in the 2014a text. The other tables are transcribed from the
  standard as remembered and agree with pydicom's `_define_*` functions on
  every Type 1 key, but were not re-read line by line. Least certain:
  ANNOTATION (Table F.5-47 text not found; Content Date/Time + Table 10-12
  macro assumed), INVENTORY's Scope of Inventory Macro (only its top-level
  Scope of Inventory Sequence, assumed Type 2), VALUE MAP (same pattern as
  REGISTRATION assumed), SURFACE SCAN (only Content Date/Time, from
  pydicom), STEREOMETRIC (only Specific Character Set), RT DOSE's Dose
  Comment (Type 3) and the retired OVERLAY/CURVE/LUT/STORED PRINT keys.
"""


def render_md(data: dict) -> str:
    out = [MD_HEAD.format(source=data["source"])]
    for rt, rows in data["record_keys"].items():
        level = " (single level, in root directory)" if rt in data["single_level"] else ""
        out.append(f"### {rt}{level}\n\n| Tag | Keyword | VR | Type |\n|---|---|---|---|\n")
        for r in rows:
            out.append(f"| ({r['tag'][:4]},{r['tag'][4:]}) | {r['keyword']} | {r['vr']} | {r['type']} |\n")
        out.append("\n")
    out.append("## Storage SOP Class -> record type\n\n| SOP Class UID | Name | Record type |\n|---|---|---|\n")
    for uid, e in data["sop_classes"].items():
        out.append(f"| {uid} | {e['name']} | {e['record_type']} |\n")
    out.append("\n")
    out.append(MD_NOTES)
    return "".join(out)


def main(argv: list[str]) -> int:
    data = generate()
    outputs = {JSON_PATH: render_json(data), MD_PATH: render_md(data)}
    if "--check" in argv:
        stale = [str(p) for p, text in outputs.items()
                 if not p.exists() or p.read_text("utf-8") != text]
        for p in stale:
            print(f"stale: {p}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
