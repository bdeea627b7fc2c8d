"""Directory records built from scanned instances: each key taken from the
scan, made valid for its VR, or invented (and noted) when Type 1 and missing."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from dicompack.dcmio import EXPLICIT_LITTLE, UNDEFINED, StructureError, Walker, encode_element
from dicompack.errors import InvalidInputError
from dicompack.fileset.records.schema import (
    CONTENT_SEQUENCE,
    PRIVATE_RECORD_UID,
    RELATIONSHIP_TYPE,
    SPECIFIC_CHARACTER_SET,
    KeySpec,
    record_keys,
)
from dicompack.fileset.records.text import normalised_charset
from dicompack.fileset.records.tree import Record
from dicompack.fileset.records.values import _encode_invented, invented_value, valid_for_vr

# ------------------------------------------------------------ from scans


@dataclass
class Invented:
    """A Type 1 key the input left empty, and what we put there."""
    record_type: str
    keyword: str
    value: str


def make_record(record_type: str, scan, *, invent: dict[int, str],
                notes: list[Invented], fixes: dict[str, list[str]] | None = None) -> Record:
    """A record of ``record_type`` with its keys taken from ``scan``.

    Type 1 keys missing in the input get the value in ``invent`` or the VR's
    invented value (noted); Type 2 keys are written empty; 1C/2C/3 keys only
    when present (1C keys also from where the IOD nests them).  Values are
    made valid for their VR; each change goes into ``fixes`` (path -> what).
    """
    rec = Record(record_type)
    changed: list[str] = []
    charset = (scan.values.get(SPECIFIC_CHARACTER_SET) or b"").strip(b" \x00")
    if charset:
        fixed = normalised_charset(charset)
        if fixed != charset:
            _note(changed, f"Specific Character Set {_show(charset)} written as {_show(fixed)}")
        charset = fixed
        rec.elements[SPECIFIC_CHARACTER_SET] = encode_element(SPECIFIC_CHARACTER_SET, b"CS", charset)
    for key in record_keys(record_type):
        if key.tag == SPECIFIC_CHARACTER_SET:
            continue
        key = _as_required(key, scan)
        encoded = _key_element(key, scan, charset, changed)
        value = invented_value(key, invent)
        if encoded is None and key.type == "1" and value:
            encoded = _encode_invented(key, value)
            notes.append(Invented(record_type, key.keyword, value))
        if encoded is None and key.type in ("1", "2"):
            encoded = encode_element(key.tag, key.vr, b"")
        if encoded is not None:
            rec.elements[key.tag] = encoded
    if record_type == "PRIVATE":
        rec.elements[PRIVATE_RECORD_UID] = encode_element(
            PRIVATE_RECORD_UID, b"UI", scan.sop_class.encode())
    if changed and fixes is not None:
        # Created only when needed: 100,000 clean instances make no entries.
        noted = fixes.setdefault(scan.path, [])
        noted += [what for what in changed if what not in noted]
    return rec


def _note(changed: list[str], what: str) -> None:
    if what not in changed:
        changed.append(what)


def _show(raw: bytes) -> str:
    text = raw.decode("latin-1")
    return repr(text if len(text) <= 40 else text[:36] + "…")


def _key_element(key: KeySpec, scan, charset: bytes, changed: list[str]) -> bytes | None:
    if key.tag in scan.sequences:
        encoded = scan.sequences[key.tag]
        return concept_modifiers_only(encoded) if key.tag == CONTENT_SEQUENCE else encoded
    raw = scan.values.get(key.tag)
    if raw is None and key.tag in NESTED_KEYS:
        raw = nested_value(scan, key.tag)
    if raw is None or (key.type == "1" and not raw.strip(b" \x00")):
        return None
    if not raw.strip(b" \x00") or key.vr == b"SQ":
        return encode_element(key.tag, key.vr, raw)
    value, what = valid_for_vr(key, raw, charset)
    name = f"{key.keyword} ({key.tag >> 16:04X},{key.tag & 0xFFFF:04X})"
    if value is None:
        # No valid form: Type 1 gets the invented value (noted by the caller),
        # Type 2 is written empty, 1C/3 left out.
        fate = {"1": "replaced by an invented value", "2": "written empty"}.get(key.type, "left out")
        _note(changed, f"{name} {_show(raw.strip(b' '))} is {what} for {key.vr.decode()}: {fate}")
        return encode_element(key.tag, key.vr, b"") if key.type == "2" else None
    if what:
        _note(changed, f"{name} {_show(raw.strip(b' '))} {what}: written as {_show(value)}")
    elif value != raw.strip(b" \x00") and key.vr in (b"DA", b"TM"):
        _note(changed, f"{name} {_show(raw.strip(b' '))} written as {_show(value)}")
    return encode_element(key.tag, key.vr, value)


# Type 1C keys the IOD keeps inside a sequence item (PS3.3 F.5.24: an SR's
# Verification DateTime sits in its Verifying Observer Sequence), with the
# condition under which the record requires it.
VERIFICATION_FLAG, VERIFICATION_DATETIME = 0x0040A493, 0x0040A030
VERIFYING_OBSERVER_SEQUENCE = 0x0040A073
NESTED_KEYS = {VERIFICATION_DATETIME: (VERIFYING_OBSERVER_SEQUENCE, VERIFICATION_FLAG, b"VERIFIED")}


def _as_required(key: KeySpec, scan) -> KeySpec:
    """A nested 1C key whose condition holds is, for this record, Type 1."""
    if key.tag in NESTED_KEYS and key.type == "1C":
        _, flag_tag, flag_value = NESTED_KEYS[key.tag]
        if (scan.values.get(flag_tag) or b"").strip(b" \x00") == flag_value:
            return KeySpec(key.tag, key.keyword, key.vr, "1")
    return key


def nested_value(scan, tag: int) -> bytes | None:
    """The value of a 1C key the IOD nests in a sequence, when the record
    requires it: the latest one over the sequence's items; when none of
    them has one, an empty value (so that the caller invents one)."""
    sequence_tag, flag_tag, flag_value = NESTED_KEYS[tag]
    if (scan.values.get(flag_tag) or b"").strip(b" \x00") != flag_value:
        return None
    found = [v for v in _item_values(scan.sequences.get(sequence_tag), tag) if v]
    return max(found) if found else b""


def _item_values(encoded: bytes | None, tag: int) -> list[bytes]:
    if not encoded:
        return []
    walker = Walker(encoded, EXPLICIT_LITTLE)
    found: list[bytes] = []
    try:
        _, _, length, start = walker.read_header(0)
        end = len(encoded) if length == UNDEFINED else start + length
        for _, content_start, content_end in walker.items(start, end):
            for el in walker.elements(content_start, content_end):
                if el.tag == tag:
                    found.append(encoded[el.value_offset:el.end].strip(b" \x00"))
    except (StructureError, struct.error):
        return found
    return found


def concept_modifiers_only(encoded: bytes) -> bytes | None:
    """PS3.3 F.5.24/F.5.27: a record's Content Sequence holds only the items
    of HAS CONCEPT MOD relationships (the document's own tree stays in the file).

    The scan walked the sequence already; should it still not parse, the
    reader's internal error leaves as the typed InvalidInputError."""
    try:
        return _concept_modifiers(encoded)
    except (StructureError, struct.error) as exc:
        raise InvalidInputError(f"Content Sequence (0040,A730) cannot be parsed: {exc}") from None


def _concept_modifiers(encoded: bytes) -> bytes | None:
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
