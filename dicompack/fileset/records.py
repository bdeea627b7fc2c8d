"""Directory records: the data tables (SOP Class -> record type, required
keys per record type, both generated from the standard into
``data/record_types.json``) and the record tree built from scanned files.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

from dicompack.dcmio import EXPLICIT_LITTLE, UNDEFINED, StructureError, Walker, encode_element
from dicompack.dcmio import LONG_VRS as LONG_VR_NAMES

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
    children: list[Record] = field(default_factory=list)
    in_use: bool = True
    offset: int = 0           # byte offset of the item in its DICOMDIR
    source: object = None     # the scanned input behind a leaf record
    next_offset: int = 0      # as read from a DICOMDIR, until linked
    lower_offset: int = 0

    def same_content(self, other: Record) -> bool:
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


# ------------------------------------------------------------ identity

SOP_CLASS_UID, SOP_INSTANCE_UID = 0x00080016, 0x00080018
_INSTANCE_UIDS = ((SOP_CLASS_UID, "SOP Class UID (0008,0016)"),
                  (SOP_INSTANCE_UID, "SOP Instance UID (0008,0018)"))
_HIERARCHY_UIDS = ((STUDY_UID, "Study Instance UID (0020,000D)"),
                   (SERIES_UID, "Series Instance UID (0020,000E)"))
_UID_CHARS = re.compile(r"[0-9.]+")


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` (padding stripped) is not a valid UI value, or None.

    PS3.5 9.1: digits and dots, at most 64 characters, no empty component,
    no leading zero; an ISO/IEC 8824 object identifier, so it starts with
    arc 1 or 2 (dciodvfy rejects other roots, and 2.999 as an example root).
    """
    if len(uid) > 64:
        return f"is {len(uid)} characters long (at most 64)"
    if not _UID_CHARS.fullmatch(uid):
        return "has characters other than digits and dots"
    components = uid.split(".")
    if "" in components:
        return "has an empty component"
    if any(len(c) > 1 and c[0] == "0" for c in components):
        return "has a component with a leading zero"
    if components[0] not in ("1", "2"):
        return "does not start with the root 1 or 2"
    if components[:2] == ["2", "999"]:
        return "uses the example root 2.999"
    return None


def identity_problem(values: dict[int, bytes]) -> str | None:
    """Why an instance cannot get valid directory records, or None.

    Its SOP Class/Instance UIDs, and, below a STUDY/SERIES, its Study and
    Series Instance UIDs go into records as they are: each must be a valid
    UID.  Instances without them are never merged into an invented study.
    """
    sop_class = values.get(SOP_CLASS_UID, b"").strip(b" \x00").decode("latin-1")
    needed = _INSTANCE_UIDS
    if not is_single_level(record_type_for(sop_class)):
        needed += _HIERARCHY_UIDS
    for tag, name in needed:
        raw = values.get(tag)
        uid = (raw or b"").strip(b" \x00").decode("latin-1")
        if not uid:
            return f"{name} is {'empty' if raw is not None else 'missing'}"
        if (why := uid_problem(uid)) is not None:
            shown = uid if len(uid) <= 24 else uid[:20] + "…"
            return f"{name} is not a valid UID: {shown!r} {why}"
    return None


# ------------------------------------------------------------ values we invent

# The one place for values we invent: a Type 1 key the input leaves empty (or
# holds a value invalid for its VR) gets the caller's value for that key, else
# this one for its VR.  Valid, and obviously invented.
INVENTED_BY_VR = {b"DA": "19000101", b"TM": "000000", b"DT": "19000101000000",
                  b"CS": "UNKNOWN", b"SH": "UNKNOWN", b"LO": "UNKNOWN", b"PN": "UNKNOWN",
                  b"ST": "UNKNOWN", b"LT": "UNKNOWN", b"IS": "1",
                  b"US": "0", b"UL": "0", b"UV": "0"}
# Keys whose invented value is better than their VR's (a series of unknown modality is "OT").
INVENTED_BY_TAG = {MODALITY: "OT"}
_BINARY_FORMATS = {b"US": "<H", b"UL": "<I", b"UV": "<Q"}


def invented_value(key: KeySpec, invent: dict[int, str]) -> str | None:
    """``invent`` holds the caller's values for this record (numbers counted
    in the File-set, a Patient ID derived from the name)."""
    return invent.get(key.tag) or INVENTED_BY_TAG.get(key.tag) or INVENTED_BY_VR.get(key.vr)


def _encode_invented(key: KeySpec, value: str) -> bytes:
    fmt = _BINARY_FORMATS.get(key.vr)
    raw = struct.pack(fmt, int(value)) if fmt else value.encode("ascii")
    return encode_element(key.tag, key.vr, raw)


# ------------------------------------------------------------ valid values

# PS3.5 6.2 maximum lengths in characters (PN: per component group).
MAX_CHARS = {b"SH": 16, b"LO": 64, b"CS": 16, b"PN": 64, b"ST": 1024, b"LT": 10240,
             b"IS": 12, b"DA": 8, b"DT": 26, b"TM": 14, b"UI": 64, b"AE": 16}
_TEXT_VRS = {b"SH", b"LO", b"PN", b"ST", b"LT"}
_MULTI_VALUED = {b"SH", b"LO", b"PN", b"CS", b"IS"}     # backslash separates values
_DA = re.compile(r"\d{8}")
_TM = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")
_DT = re.compile(r"\d{4}(\d{2}(\d{2}(([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")
_IS = re.compile(r"[+-]?\d{1,11}")
_CS_INVALID = re.compile(rb"[^A-Z0-9 _]")
_CONTROL = re.compile(rb"[\x00-\x1a\x1c-\x1f\x7f]")   # all but ESC (ISO 2022 code extensions)
# Well-known misspellings of the Specific Character Set defined terms
# (PS3.3 C.12.1.1.2): ISO-IR 100, ISO_IR_100, ISO IR 100, UTF-8 ...
_CHARSET_FORMS = ((re.compile(r"ISO[ _-]?IR[ _-]?(\d+)", re.I), "ISO_IR {}"),
                  (re.compile(r"ISO[ _-]?2022[ _-]?IR[ _-]?(\d+)", re.I), "ISO 2022 IR {}"))
_CHARSET_NAMES = {"UTF-8": "ISO_IR 192", "UTF8": "ISO_IR 192", "GB18030": "GB18030", "GBK": "GBK"}


@lru_cache(maxsize=1)
def _known_charsets() -> frozenset[str]:
    from pydicom.charset import python_encoding
    return frozenset(python_encoding) - {"ISO 2022 GBK", "ISO 2022 58"}


@lru_cache(maxsize=64)
def normalised_charset(raw: bytes) -> bytes:
    """Specific Character Set with each misspelt defined term corrected;
    terms we do not recognise stay as they are."""
    known = _known_charsets()
    out = []
    for term in raw.decode("latin-1").strip(" \x00").split("\\"):
        term = term.strip()
        fixed = _CHARSET_NAMES.get(term.upper())
        for pattern, form in _CHARSET_FORMS:
            if fixed is None and (m := pattern.fullmatch(term)):
                fixed = form.format(int(m.group(1)))
        out.append(fixed if term not in known and fixed in known else term)
    return "\\".join(out).encode("latin-1")


def _encodings(charset: bytes) -> list[str]:
    """Python codecs for a Specific Character Set, chosen as pydicom's
    ``convert_encodings`` chooses them but without its warnings: library
    code may not touch the warning filters (``catch_warnings`` is not
    thread-safe, and portals call us from many threads).  Misspelt terms
    are corrected, unknown ones fall back to pydicom's default, and a
    stand-alone encoding (UTF-8, GB18030, GBK) is used alone or not at all."""
    from pydicom.charset import STAND_ALONE_ENCODINGS
    terms = [t.strip() for t in charset.decode("latin-1").split("\\")] if charset else [""]
    terms = [_charset_term(t) for t in terms]
    terms[0] = terms[0] or "ISO_IR 6"
    if terms[0] in STAND_ALONE_ENCODINGS:
        terms = terms[:1]
    else:
        terms = terms[:1] + [t for t in terms[1:] if t not in STAND_ALONE_ENCODINGS]
    from pydicom.charset import default_encoding, python_encoding
    return [python_encoding.get(t, default_encoding) for t in terms]


def _charset_term(term: str) -> str:
    """pydicom's corrections of common misspellings ("ISO IR 100")."""
    from pydicom.charset import python_encoding
    if term in python_encoding:
        return term
    if re.match("^ISO[^_]IR", term):
        return "ISO_IR" + term[6:]
    if re.match("^(?=ISO.2022.IR.)(?!ISO 2022 IR )", term):
        return "ISO 2022 IR " + term[12:]
    return term


def _decode(raw: bytes, encodings: list[str], delimiters: set[int]) -> str:
    """``raw`` as text; undecodable bytes become U+FFFD, as pydicom does —
    without its warning.  Only values with ISO 2022 escape sequences (code
    extensions) go through pydicom's decoder, which may then warn through
    the caller's own filters (the CLI silences them; we never change them)."""
    if 0x1B in raw:
        from pydicom.charset import decode_bytes
        return decode_bytes(raw, encodings, delimiters)
    return raw.decode(encodings[0], errors="replace")


def _encoder(raw: bytes, encodings: list[str]):
    """The inverse of ``_decode`` for a value decoded from ``raw``."""
    if 0x1B in raw:
        from pydicom.charset import encode_string
        return lambda text: encode_string(text, encodings)
    return lambda text: text.encode(encodings[0], errors="replace")


def _clip_text(raw: bytes, vr: bytes, charset: bytes) -> bytes:
    """``raw`` with each value (each PN component group) cut to the VR's
    maximum length.  PS3.5 counts characters; dciodvfy counts bytes, so a
    value is cut to fit both, at a character boundary."""
    limit = MAX_CHARS[vr]
    values = raw.split(b"\\") if vr in _MULTI_VALUED else [raw]
    groups = [v.split(b"=") if vr == b"PN" else [v] for v in values]
    if all(len(g) <= limit for v in groups for g in v):
        return raw
    if raw.isascii():
        return b"\\".join(b"=".join(g[:limit] for g in v) for v in groups)
    encodings = _encodings(charset)
    encode = _encoder(raw, encodings)

    def cut(text: str) -> str:
        text = text[:limit]
        while len(encode(text)) > limit:
            text = text[:-1]
        return text

    text = _decode(raw, encodings, {0x5C, 0x3D})
    parts = text.split("\\") if vr in _MULTI_VALUED else [text]
    parts = ["=".join(cut(g) for g in p.split("=")) if vr == b"PN" else cut(p) for p in parts]
    return encode("\\".join(parts))


def valid_for_vr(key: KeySpec, raw: bytes, charset: bytes) -> tuple[bytes | None, str]:
    """The value to write for ``key`` and what was changed to make it valid
    for its VR ('' when nothing).  None: no valid form exists (use the dummy)."""
    if len(raw) <= 256:
        # Instances of a series repeat their patient/study/series values; the
        # cache holds short values only, so hostile long ones cannot bloat it.
        return _valid_for_vr_cached(key, raw, charset)
    return _valid_for_vr(key, raw, charset)


_valid_for_vr_cached = lru_cache(maxsize=4096)(lambda key, raw, charset: _valid_for_vr(key, raw, charset))


def _valid_for_vr(key: KeySpec, raw: bytes, charset: bytes) -> tuple[bytes | None, str]:
    vr = key.vr
    if vr == b"DA":
        return _match_or_none(raw.strip(b" \x00").replace(b".", b""), _DA, _real_date)
    if vr == b"TM":
        return _match_or_none(raw.strip(b" \x00").replace(b":", b""), _TM)
    if vr == b"DT":
        return _match_or_none(raw.strip(b" \x00"), _DT)
    if vr == b"IS":
        values = [v.strip(b" \x00") for v in raw.split(b"\\")]
        if all(_IS.fullmatch(v.decode("latin-1")) and -2**31 <= int(v) < 2**31 for v in values):
            return b"\\".join(values), ""
        return None, "not a valid IS"
    if vr == b"UI":
        return raw.strip(b" \x00"), ""
    if vr in _BINARY_FORMATS:
        # Every binary record key (Rows, Number of Priors Referenced ...) has VM 1.
        single = len(raw) == struct.calcsize(_BINARY_FORMATS[vr])
        return (raw, "") if single else (None, "not a single value")
    if vr == b"CS":
        values = [v.strip(b" \x00") for v in raw.split(b"\\")]
        fixed = [_CS_INVALID.sub(b"_", v.upper())[:MAX_CHARS[vr]] for v in values]
        return b"\\".join(fixed), ("not valid CS characters or too long" if fixed != values else "")
    if vr in _TEXT_VRS:
        text = raw.rstrip(b" \x00") if vr in (b"ST", b"LT") else raw.strip(b" \x00")
        cleaned = _CONTROL.sub(b" ", text) if vr not in (b"ST", b"LT") else text
        clipped = _clip_text(cleaned, vr, charset)
        what = []
        if cleaned != text:
            what.append("control characters replaced by spaces")
        if clipped != cleaned:
            what.append(f"cut to {MAX_CHARS[vr]} characters" if raw.isascii()
                        else f"cut to fit {MAX_CHARS[vr]} characters and bytes")
        return clipped, ", ".join(what)
    return raw, ""


def _real_date(text: str) -> bool:
    from datetime import date
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        return True
    except ValueError:
        return False


def _match_or_none(value: bytes, pattern: re.Pattern, also=None) -> tuple[bytes | None, str]:
    text = value.decode("latin-1")
    if pattern.fullmatch(text) and (also is None or also(text)):
        return value, ""
    return None, "not a valid value"


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
    _, _, length, start = walker.read_header(0)
    end = len(encoded) if length == UNDEFINED else start + length
    found = []
    try:
        for _, content_start, content_end in walker.items(start, end):
            for el in walker.elements(content_start, content_end):
                if el.tag == tag:
                    found.append(encoded[el.value_offset:el.end].strip(b" \x00"))
    except StructureError:
        return found
    return found


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
    encodings = _encodings(key_bytes(rec, SPECIFIC_CHARACTER_SET))
    return _decode(raw, encodings, {0x5E, 0x3D}).replace("^", " ").strip()
