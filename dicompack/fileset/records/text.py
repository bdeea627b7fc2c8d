"""Text values in their Specific Character Set: correcting misspelt
character set terms, decoding and encoding values, and cutting them to
their VR's maximum length."""
from __future__ import annotations

import re
from functools import lru_cache

# PS3.5 6.2 maximum lengths in characters (PN: per component group).
MAX_CHARS = {b"SH": 16, b"LO": 64, b"CS": 16, b"PN": 64, b"ST": 1024, b"LT": 10240,
             b"IS": 12, b"DA": 8, b"DT": 26, b"TM": 14, b"UI": 64, b"AE": 16}
_TEXT_VRS = {b"SH", b"LO", b"PN", b"ST", b"LT"}
_MULTI_VALUED = {b"SH", b"LO", b"PN", b"CS", b"IS"}     # backslash separates values
# Well-known misspellings of the Specific Character Set defined terms
# (PS3.3 C.12.1.1.2): ISO-IR 100, ISO_IR_100, ISO IR 100, UTF-8 ...
_CHARSET_FORMS = ((re.compile(r"ISO[ _-]?IR[ _-]?(\d+)", re.I), "ISO_IR {}"),
                  (re.compile(r"ISO[ _-]?2022[ _-]?IR[ _-]?(\d+)", re.I), "ISO 2022 IR {}"))
_CHARSET_NAMES = {"UTF-8": "ISO_IR 192", "UTF8": "ISO_IR 192", "GB18030": "GB18030", "GBK": "GBK"}


@lru_cache(maxsize=1)
def _known_charsets() -> frozenset[str]:
    from pydicom.charset import python_encoding  # pydicom costs ~0.3 s to import: only when a value needs it
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
    from pydicom.charset import STAND_ALONE_ENCODINGS  # pydicom costs ~0.3 s to import: only when needed
    terms = [t.strip() for t in charset.decode("latin-1").split("\\")] if charset else [""]
    terms = [_charset_term(t) for t in terms]
    terms[0] = terms[0] or "ISO_IR 6"
    if terms[0] in STAND_ALONE_ENCODINGS:
        terms = terms[:1]
    else:
        terms = terms[:1] + [t for t in terms[1:] if t not in STAND_ALONE_ENCODINGS]
    from pydicom.charset import default_encoding, python_encoding  # as above
    return [python_encoding.get(t, default_encoding) for t in terms]


def _charset_term(term: str) -> str:
    """pydicom's corrections of common misspellings ("ISO IR 100")."""
    from pydicom.charset import python_encoding  # pydicom costs ~0.3 s to import: only when needed
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
        from pydicom.charset import decode_bytes  # pydicom costs ~0.3 s to import: only for ISO 2022 values
        return decode_bytes(raw, encodings, delimiters)
    return raw.decode(encodings[0], errors="replace")


def _encoder(raw: bytes, encodings: list[str]):
    """The inverse of ``_decode`` for a value decoded from ``raw``."""
    if 0x1B in raw:
        from pydicom.charset import encode_string  # pydicom costs ~0.3 s to import: only for ISO 2022 values
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
