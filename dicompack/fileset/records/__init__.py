"""Directory records: the key schema generated from the standard (schema),
the record tree and its keys (tree), and records built from scanned
instances (build: identity, text and values make their keys valid)."""
from __future__ import annotations

from dicompack.fileset.records.build import (
    NESTED_KEYS,
    Invented,
    concept_modifiers_only,
    make_record,
    nested_value,
)
from dicompack.fileset.records.identity import identity_problem, uid_problem
from dicompack.fileset.records.schema import (
    CONTENT_SEQUENCE,
    HIERARCHY,
    INSTANCE_NUMBER,
    MODALITY,
    PATIENT_ID,
    PATIENT_NAME,
    PRIVATE_RECORD_UID,
    RELATIONSHIP_TYPE,
    SERIES_NUMBER,
    SERIES_UID,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    SPECIFIC_CHARACTER_SET,
    STUDY_DATE,
    STUDY_DESCRIPTION,
    STUDY_ID,
    STUDY_TIME,
    STUDY_UID,
    KeySpec,
    expects_pixel_data,
    instance_key_tags,
    is_single_level,
    known_record_types,
    record_keys,
    record_type_for,
    wanted_tags,
)
from dicompack.fileset.records.text import MAX_CHARS, normalised_charset
from dicompack.fileset.records.tree import Record, element_value, key_bytes, key_text, walk_all
from dicompack.fileset.records.values import INVENTED_BY_TAG, INVENTED_BY_VR, invented_value, valid_for_vr

__all__ = [
    "CONTENT_SEQUENCE", "HIERARCHY", "INSTANCE_NUMBER", "INVENTED_BY_TAG", "INVENTED_BY_VR", "MAX_CHARS",
    "MODALITY", "NESTED_KEYS", "PATIENT_ID", "PATIENT_NAME", "PRIVATE_RECORD_UID", "RELATIONSHIP_TYPE",
    "SERIES_NUMBER", "SERIES_UID", "SOP_CLASS_UID", "SOP_INSTANCE_UID", "SPECIFIC_CHARACTER_SET",
    "STUDY_DATE", "STUDY_DESCRIPTION", "STUDY_ID", "STUDY_TIME", "STUDY_UID",
    "Invented", "KeySpec", "Record",
    "concept_modifiers_only", "element_value", "expects_pixel_data", "identity_problem", "instance_key_tags",
    "invented_value", "is_single_level", "key_bytes", "key_text", "known_record_types", "make_record",
    "nested_value", "normalised_charset", "record_keys", "record_type_for", "uid_problem", "valid_for_vr",
    "walk_all", "wanted_tags",
]
