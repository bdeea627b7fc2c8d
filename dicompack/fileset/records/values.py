"""Valid record key values: the values we invent for missing Type 1 keys,
and each value made valid for its VR."""
from __future__ import annotations

import re
import struct
from datetime import date
from functools import lru_cache

from dicompack.dcmio import encode_element
from dicompack.fileset.records.schema import MODALITY, KeySpec
from dicompack.fileset.records.text import _TEXT_VRS, MAX_CHARS, _clip_text
from dicompack.standard import DUMMY_DATE, DUMMY_DATETIME, DUMMY_TIME

# ------------------------------------------------------------ values we invent

# The one place for values we invent: a Type 1 key the input leaves empty (or
# holds a value invalid for its VR) gets the caller's value for that key, else
# this one for its VR.  Valid, and obviously invented.
INVENTED_BY_VR = {b"DA": DUMMY_DATE, b"TM": DUMMY_TIME, b"DT": DUMMY_DATETIME,
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
_DA = re.compile(r"\d{8}")
_TM = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")
_DT = re.compile(r"\d{4}(\d{2}(\d{2}(([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")
_IS = re.compile(r"[+-]?\d{1,11}")
_CS_INVALID = re.compile(rb"[^A-Z0-9 _]")
_CONTROL = re.compile(rb"[\x00-\x1a\x1c-\x1f\x7f]")   # all but ESC (ISO 2022 code extensions)


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
