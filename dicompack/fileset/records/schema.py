"""The DICOMDIR key schema: the data tables (SOP Class -> record type,
required keys per record type), both generated from the standard into
``data/record_types.json``, and the tags directory records take from an
instance.  The scanner asks this module which tags to keep
(``instance_key_tags``) and never names a record key itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

SPECIFIC_CHARACTER_SET = 0x00080005
PATIENT_ID, PATIENT_NAME = 0x00100020, 0x00100010
STUDY_UID, SERIES_UID = 0x0020000D, 0x0020000E
STUDY_DATE, STUDY_TIME, STUDY_ID = 0x00080020, 0x00080030, 0x00200010
STUDY_DESCRIPTION = 0x00081030
SERIES_NUMBER, INSTANCE_NUMBER, MODALITY = 0x00200011, 0x00200013, 0x00080060
PRIVATE_RECORD_UID = 0x00041432
CONTENT_SEQUENCE, RELATIONSHIP_TYPE = 0x0040A730, 0x0040A010
HIERARCHY = ("PATIENT", "STUDY", "SERIES")
# Tags the scanner needs besides the record keys: hierarchy and ordering.
SOP_CLASS_UID, SOP_INSTANCE_UID = 0x00080016, 0x00080018
_ALWAYS_WANTED = {0x00080016, 0x00080018, SPECIFIC_CHARACTER_SET, PATIENT_ID,
                  PATIENT_NAME, STUDY_UID, SERIES_UID, STUDY_DATE, STUDY_TIME,
                  STUDY_ID, SERIES_NUMBER, INSTANCE_NUMBER, MODALITY,
                  0x00280301,  # Burned In Annotation, for de-identification policy
                  0x0040A073}  # Verifying Observer Sequence: an SR record's Verification DateTime


@dataclass(frozen=True)
class KeySpec:
    tag: int
    keyword: str
    vr: bytes
    type: str


@lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files("dicompack.data").joinpath("record_types.json").read_text("utf-8")
    return json.loads(text)


@cache
def record_keys(record_type: str) -> tuple[KeySpec, ...]:
    rows = _table()["record_keys"].get(record_type, [])
    return tuple(KeySpec(int(r["tag"], 16), r["keyword"], r["vr"].encode(), r["type"])
                 for r in rows)


def record_type_for(sop_class: str) -> str:
    entry = _table()["sop_classes"].get(sop_class)
    return entry["record_type"] if entry else "PRIVATE"


def is_single_level(record_type: str) -> bool:
    return record_type in _table().get("single_level", [])


@lru_cache(maxsize=1)
def wanted_tags() -> frozenset[int]:
    tags = set(_ALWAYS_WANTED)
    for rows in _table()["record_keys"].values():
        tags.update(int(r["tag"], 16) for r in rows)
    return frozenset(tags)


def known_record_types() -> frozenset[str]:
    return frozenset(_table()["record_keys"]) | {"PRIVATE"}


@lru_cache(maxsize=1)
def instance_key_tags() -> dict[int, int]:
    """The tags whose values the scan keeps for the records (``wanted_tags``),
    each mapped to itself: one int object per tag shared by all scan results
    (100,000 scans would otherwise hold millions of equal ints as dict keys)."""
    return {tag: tag for tag in wanted_tags()}


def expects_pixel_data(sop_class: str) -> bool:
    """Whether instances of ``sop_class`` get an IMAGE record (and so should
    carry Pixel Data)."""
    return record_type_for(sop_class) == "IMAGE"
