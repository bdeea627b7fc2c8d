"""Directory records: the data tables (SOP Class -> record type, required
keys per record type, both generated from the standard into
``data/record_types.json``) and the record tree built from scanned files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import struct

from .dcmio import LONG_VRS as LONG_VR_NAMES
from .dcmio import EXPLICIT_LITTLE, UNDEFINED, Walker, encode_element

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
_ALWAYS_WANTED = {0x00080016, 0x00080018, SPECIFIC_CHARACTER_SET, PATIENT_ID,
                  PATIENT_NAME, STUDY_UID, SERIES_UID, STUDY_DATE, STUDY_TIME,
                  STUDY_ID, SERIES_NUMBER, INSTANCE_NUMBER, MODALITY,
                  0x00280301}  # Burned In Annotation, for de-identification policy


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


@lru_cache(maxsize=None)
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


@dataclass(eq=False, slots=True)
class Record:
    """One directory record.  ``elements`` maps tag -> the element encoded in
    Explicit VR LE, for every key that is not part of the record structure."""
    type: str
    elements: dict[int, bytes] = field(default_factory=dict)
    file_id: tuple[str, ...] | None = None
    sop_class: str = ""
    sop_instance: str = ""
    transfer_syntax: str = ""
    children: list["Record"] = field(default_factory=list)
    in_use: bool = True
    offset: int = 0           # byte offset of the item in its DICOMDIR
    source: object = None     # the scanned input behind a leaf record
    next_offset: int = 0      # as read from a DICOMDIR, until linked
    lower_offset: int = 0

    def same_content(self, other: "Record") -> bool:
        """Structural equality, ignoring offsets and sources."""
        mine = (self.type, self.elements, self.file_id, self.sop_class,
                self.sop_instance, self.transfer_syntax, self.in_use)
        theirs = (other.type, other.elements, other.file_id, other.sop_class,
                  other.sop_instance, other.transfer_syntax, other.in_use)
        return mine == theirs and len(self.children) == len(other.children) and all(
            a.same_content(b) for a, b in zip(self.children, other.children))

    def walk(self):
        """This record and all below it, depth first (DICOMDIR order)."""
        yield self
        for child in self.children:
            yield from child.walk()


def walk_all(roots: list[Record]):
    for root in roots:
        yield from root.walk()


# ------------------------------------------------------------ from scans

# Values for empty Type 1 keys no specific rule covers (e.g. a Presentation
# Creation Date that de-identification emptied): valid, and obviously invented.
_TYPE1_DEFAULTS = {b"DA": "19000101", b"TM": "000000", b"DT": "19000101000000", b"CS": "UNKNOWN"}


@dataclass
class Invented:
    """A Type 1 key the input left empty, and what we put there."""
    record_type: str
    keyword: str
    value: str


def make_record(record_type: str, scan, *, invent: dict[int, str],
                notes: list[Invented]) -> Record:
    """A record of ``record_type`` with its keys taken from ``scan``.

    Type 1 keys missing in the input get the value in ``invent`` (noted);
    Type 2 keys are written empty; 1C/2C/3 keys only when present.
    """
    rec = Record(record_type)
    charset = scan.values.get(SPECIFIC_CHARACTER_SET)
    if charset and charset.strip(b" \x00"):
        rec.elements[SPECIFIC_CHARACTER_SET] = encode_element(SPECIFIC_CHARACTER_SET, b"CS", charset)
    for key in record_keys(record_type):
        if key.tag == SPECIFIC_CHARACTER_SET:
            continue
        encoded = _key_element(key, scan)
        value = invent.get(key.tag) or _TYPE1_DEFAULTS.get(key.vr)
        if encoded is None and key.type == "1" and value:
            encoded = encode_element(key.tag, key.vr, value.encode())
            notes.append(Invented(record_type, key.keyword, value))
        if encoded is None and key.type in ("1", "2"):
            encoded = encode_element(key.tag, key.vr, b"")
        if encoded is not None:
            rec.elements[key.tag] = encoded
    if record_type == "PRIVATE":
        rec.elements[PRIVATE_RECORD_UID] = encode_element(
            PRIVATE_RECORD_UID, b"UI", scan.sop_class.encode())
    return rec


def _key_element(key: KeySpec, scan) -> bytes | None:
    if key.tag in scan.sequences:
        encoded = scan.sequences[key.tag]
        return concept_modifiers_only(encoded) if key.tag == CONTENT_SEQUENCE else encoded
    raw = scan.values.get(key.tag)
    if raw is None or (key.type == "1" and not raw.strip(b" \x00")):
        return None
    if key.vr in (b"DA", b"TM"):
        # ACR-NEMA style 1997.04.24 / 14:04:38 values are invalid DA/TM;
        # the record is ours to write, so write the standard form.
        raw = raw.replace(b"." if key.vr == b"DA" else b":", b"")
    return encode_element(key.tag, key.vr, raw)


def concept_modifiers_only(encoded: bytes) -> bytes | None:
    """PS3.3 F.5.24/F.5.27: a record's Content Sequence holds only the items
    of HAS CONCEPT MOD relationships (the document's own tree stays in the file)."""
    walker = Walker(encoded, EXPLICIT_LITTLE)
    _, _, length, start = walker.read_header(0)
    end = len(encoded) if length == UNDEFINED else start + length
    kept = []
    for item_pos, content_start, content_end in walker.items(start, end):
        undefined = struct.unpack_from("<I", encoded, item_pos + 4)[0] == UNDEFINED
        relation = b""
        for el in walker.elements(content_start, content_end):
            if el.tag == RELATIONSHIP_TYPE:
                relation = encoded[el.value_offset:el.end].strip(b" \x00")
        if relation == b"HAS CONCEPT MOD":
            kept.append(encoded[item_pos:content_end + (8 if undefined else 0)])
    return encode_element(CONTENT_SEQUENCE, b"SQ", b"".join(kept)) if kept else None


def element_value(encoded: bytes) -> bytes:
    """The value bytes of an element encoded in Explicit VR LE."""
    return encoded[12:] if encoded[4:6] in LONG_VR_NAMES else encoded[8:]


def key_bytes(rec: Record, tag: int) -> bytes:
    encoded = rec.elements.get(tag)
    return element_value(encoded).strip(b" \x00") if encoded else b""


def key_text(rec: Record, tag: int) -> str:
    """A key decoded with the record's Specific Character Set."""
    raw = key_bytes(rec, tag)
    if not raw:
        return ""
    from pydicom.charset import convert_encodings, decode_bytes
    charset = key_bytes(rec, SPECIFIC_CHARACTER_SET).decode("ascii", "replace")
    encodings = convert_encodings([c.strip() for c in charset.split("\\")] if charset else ["ISO_IR 6"])
    return decode_bytes(raw, encodings, {0x5E, 0x3D}).replace("^", " ").strip()
