"""Low-level DICOM encoding: a structural element walker and an Explicit VR
Little Endian element encoder.

Why our own instead of pydicom here: scanning must (a) tell a truncated file
from a complete one (pydicom silently accepts both), (b) find the byte offsets
of the data set and of Pixel Data so files can be copied or re-wrapped without
decoding pixels, and (c) run at thousands of files per second.  The walker
checks every declared length against the file size, descends into sequences
of undefined length and walks encapsulated Pixel Data fragments.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from dicompack._version import __version__
from dicompack.standard import EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

# VRs with a 4-byte length field in explicit VR (PS3.5 Table 7.1-1).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV",
                      b"UC", b"UN", b"UR", b"UT", b"UV"})
VALID_VRS = LONG_VRS | frozenset({
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS",
    b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
    b"US"})
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQ_END = 0xFFFEE0DD
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


class StructureError(ValueError):
    """The bytes do not form a complete DICOM data set (truncated or garbled)."""


class LimitExceededError(StructureError):
    """The bytes may be well formed, but go past a documented safety limit
    (nesting depth, inflated size).  Never retried with another encoding."""


# Deepest sequence nesting we accept (PS3.5 sets none; SR content trees, the
# deepest real objects, stay far below).  It bounds our own recursion and,
# because every file passes this walker before pydicom sees it, pydicom's
# recursive sequence reader too (it fails near 200 levels).
MAX_SEQUENCE_DEPTH = 64


def _deeper(depth: int, pos: int) -> int:
    """The nesting level one sequence below ``depth``; raise past the cap."""
    if depth >= MAX_SEQUENCE_DEPTH:
        raise LimitExceededError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels "
                                 f"at byte {pos}")
    return depth + 1


@dataclass(frozen=True)
class Encoding:
    explicit: bool
    little: bool

    @classmethod
    def for_syntax(cls, ts_uid: str) -> Encoding:
        if ts_uid == IMPLICIT_VR_LITTLE_ENDIAN:
            return cls(False, True)
        if ts_uid == EXPLICIT_VR_BIG_ENDIAN:
            return cls(True, False)
        # Every other syntax (deflated is inflated first; encapsulated ones)
        # encodes the data set in Explicit VR Little Endian.
        return cls(True, True)


EXPLICIT_LITTLE = Encoding(True, True)
IMPLICIT_LITTLE = Encoding(False, True)


@dataclass
class Element:
    """One top-level element found by the walker (value not copied)."""
    tag: int
    vr: bytes          # explicit VR, or the dictionary VR for implicit files
    length: int        # declared length (UNDEFINED for undefined length)
    header_offset: int
    value_offset: int
    end: int           # offset just past the value (incl. delimiters)


def _implicit_vr(tag: int) -> bytes:
    # Imported here: pydicom's import costs ~0.3 s and most files are explicit VR.
    from pydicom.datadict import dictionary_VR
    try:
        return dictionary_VR(tag).split(" ")[0].encode()
    except KeyError:
        return b"UN"


class Walker:
    """Walks a buffer (bytes or mmap) holding DICOM elements."""

    def __init__(self, buf, encoding: Encoding, *, limit: int | None = None):
        self.buf = buf
        self.enc = encoding
        self.limit = len(buf) if limit is None else limit
        self._u16 = struct.Struct("<H" if encoding.little else ">H").unpack_from
        self._u32 = struct.Struct("<I" if encoding.little else ">I").unpack_from
        self._tag = struct.Struct("<HH" if encoding.little else ">HH").unpack_from

    def peek_tag(self, pos: int) -> int:
        group, elem = self._tag(self.buf, pos)
        return group << 16 | elem

    def read_header(self, pos: int) -> tuple[int, bytes, int, int]:
        """Return (tag, vr, length, value_offset) of the element at ``pos``."""
        if pos + 8 > self.limit:
            raise StructureError(f"element header cut short at byte {pos}")
        group, elem = self._tag(self.buf, pos)
        tag = group << 16 | elem
        if group == 0xFFFE:  # item / delimiters never carry a VR
            return tag, b"", self._u32(self.buf, pos + 4)[0], pos + 8
        if not self.enc.explicit:
            return tag, _implicit_vr(tag), self._u32(self.buf, pos + 4)[0], pos + 8
        vr = bytes(self.buf[pos + 4:pos + 6])
        if vr in LONG_VRS:
            if pos + 12 > self.limit:
                raise StructureError(f"element header cut short at byte {pos}")
            return tag, vr, self._u32(self.buf, pos + 8)[0], pos + 12
        if vr not in VALID_VRS:
            raise StructureError(
                f"invalid VR {vr!r} for tag ({group:04X},{elem:04X}) at byte {pos}")
        return tag, vr, self._u16(self.buf, pos + 6)[0], pos + 8

    def elements(self, start: int, end: int | None = None, *, stop_tag: int | None = None,
                 depth: int = 0, descend: bool = True):
        """Yield the elements between ``start`` and ``end`` (the limit).

        With ``end`` None the walk runs to the end of the buffer.  Stops early
        (without yielding) at an item delimiter, or before ``stop_tag``.
        Sequences are walked too (not yielded): their structure is checked and
        their nesting below ``depth`` is capped at MAX_SEQUENCE_DEPTH.  A caller
        that walks the items of defined-length sequences itself (the DICOMDIR
        reader) passes ``descend=False`` to avoid walking them twice.
        """
        end = self.limit if end is None else end
        pos = start
        while pos < end:
            if stop_tag is not None and pos + 4 <= end and self.peek_tag(pos) >= stop_tag:
                return
            tag, vr, length, value = self.read_header(pos)
            if tag == ITEM_END:
                return
            if length == UNDEFINED:
                value_end = self._skip_undefined(tag, vr, value, depth)
            else:
                value_end = value + length
                if value_end > end:
                    raise StructureError(
                        f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {pos} "
                        f"needs {length} bytes, only {max(end - value, 0)} left")
                if descend and (vr == b"SQ" or vr == b"UN"):
                    self._check_defined_sequence(vr, value, value_end, depth)
            yield Element(tag, vr, length, pos, value, value_end)
            pos = value_end
        if pos != end:
            raise StructureError(f"element runs past the end at byte {pos}")

    def _check_defined_sequence(self, vr: bytes, start: int, end: int, depth: int) -> None:
        """Walk a defined-length value that is, or may be read as, a sequence.

        SQ values must hold items.  UN values (and unknown implicit VR ones)
        are read as sequences by pydicom when a dictionary knows the tag as
        SQ, so any of them that starts with an item is walked as well: a
        garbled one is left as bytes, a too deep one is refused."""
        if vr == b"SQ":
            self._walk_items(start, end, _deeper(depth, start))
            return
        if vr != b"UN" or end - start < 8 or self.peek_tag(start) != ITEM:
            return
        inner = Walker(self.buf, IMPLICIT_LITTLE, limit=self.limit) if self.enc.explicit else self
        try:
            inner._walk_items(start, end, _deeper(depth, start))
        except LimitExceededError:
            raise
        except (StructureError, struct.error):
            pass

    def _walk_items(self, pos: int, end: int, depth: int) -> None:
        """Walk every item of a defined-length sequence value, at ``depth``."""
        while pos < end:
            tag, _, length, value = self.read_header(pos)
            if tag == SEQ_END:
                # A needless delimiter in a defined-length sequence: readers skip it.
                pos = value
                continue
            if tag != ITEM:
                raise StructureError(f"expected an item at byte {pos}")
            if length == UNDEFINED:
                pos = self._skip_item_content(value, depth)
            else:
                pos = value + length
                if pos > end:
                    raise StructureError(f"item at byte {value - 8} runs past its sequence")
                for _ in self.elements(value, pos, depth=depth):
                    pass
        if pos != end:
            raise StructureError(f"sequence items run past the sequence at byte {pos}")

    def _skip_undefined(self, tag: int, vr: bytes, pos: int, depth: int) -> int:
        """Return the offset just past an undefined-length value."""
        if tag in PIXEL_DATA_TAGS:
            return self._skip_fragments(pos)
        if vr == b"UN" and self.enc.explicit:
            # PS3.5 6.2.2: UN with undefined length holds Implicit VR LE content.
            inner = Walker(self.buf, IMPLICIT_LITTLE, limit=self.limit)
            return inner._skip_items(pos, _deeper(depth, pos))
        if vr not in (b"SQ", b"UN", b""):
            raise StructureError(f"undefined length on VR {vr!r} at byte {pos}")
        return self._skip_items(pos, _deeper(depth, pos))

    def _skip_items(self, pos: int, depth: int) -> int:
        """Skip the items of an undefined-length sequence whose content is at ``depth``."""
        while True:
            tag, _, length, value = self.read_header(pos)
            if tag == SEQ_END:
                return value
            if tag != ITEM:
                raise StructureError(f"expected an item at byte {pos}")
            if length == UNDEFINED:
                pos = self._skip_item_content(value, depth)
            else:
                pos = value + length
                if pos > self.limit:
                    raise StructureError(f"item at byte {value - 8} runs past the end")
                for _ in self.elements(value, pos, depth=depth):
                    pass

    def _skip_item_content(self, pos: int, depth: int) -> int:
        for el in self.elements(pos, depth=depth):
            pos = el.end
        # elements() stopped at the item delimiter (or ran to the end).
        tag, _, _, value = self.read_header(pos)
        if tag != ITEM_END:
            raise StructureError(f"item not closed at byte {pos}")
        return value

    def _skip_fragments(self, pos: int) -> int:
        while True:
            tag, _, length, value = self.read_header(pos)
            if tag == SEQ_END:
                return value
            if tag != ITEM or length == UNDEFINED:
                raise StructureError(f"bad Pixel Data fragment at byte {pos}")
            pos = value + length
            if pos > self.limit:
                raise StructureError(f"Pixel Data fragment at byte {value - 8} cut short")

    def items(self, start: int, end: int, *, depth: int = 1, on_overrun=None):
        """Yield (item_offset, content_start, content_end) of a sequence value
        whose item content sits at nesting ``depth`` (1: a top-level sequence).

        An item whose declared length runs past the sequence is an error,
        unless ``on_overrun(item_offset, length, bytes_left)`` is given: the
        item is then read up to the sequence's end (readers of foreign
        DICOMDIRs do that: tools that delete elements from a record often
        leave its length stale)."""
        pos = start
        while pos < end:
            tag, _, length, value = self.read_header(pos)
            if tag == SEQ_END:
                return
            if tag != ITEM:
                raise StructureError(f"expected an item at byte {pos}")
            if length == UNDEFINED:
                item_end = self._skip_item_content(value, depth)
                yield pos, value, item_end - 8
            else:
                item_end = value + length
                if item_end > end:
                    if on_overrun is None:
                        raise StructureError(f"item at byte {pos} runs past its sequence")
                    on_overrun(pos, length, end - value)
                    item_end = end
                yield pos, value, item_end
            pos = item_end


# ---------------------------------------------------------------- encoding

_PAD_NUL = frozenset({b"UI", b"OB", b"UN"})


def pad(value: bytes, vr: bytes) -> bytes:
    """Pad a value to even length as PS3.5 6.2 requires for its VR."""
    if len(value) % 2:
        return value + (b"\x00" if vr in _PAD_NUL else b" ")
    return value


def encode_element(tag: int, vr: bytes, value: bytes, *, undefined: bool = False) -> bytes:
    """Encode one element in Explicit VR Little Endian."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if undefined:
        return head + b"\x00\x00" + struct.pack("<I", UNDEFINED) + value
    value = pad(value, vr)
    if vr in LONG_VRS:
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"value too long for VR {vr!r}")
    return head + struct.pack("<H", len(value)) + value


def encode_item(body: bytes) -> bytes:
    """A sequence item of defined length holding ``body``."""
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def encode_ul(tag: int, number: int) -> bytes:
    return encode_element(tag, b"UL", struct.pack("<I", number))


def encode_us(tag: int, number: int) -> bytes:
    return encode_element(tag, b"US", struct.pack("<H", number))


def decode_text(raw: bytes) -> str:
    """Strip padding from a text value read as bytes (ASCII-safe fields)."""
    return raw.rstrip(b"\x00 ").lstrip(b" ").decode("latin-1")


# ---------------------------------------------------------------- File Meta

# A UUID-derived UID (PS3.5 B.2), fixed for this implementation.
IMPLEMENTATION_CLASS_UID = "2.25.192075148665916019980262044239060793664"
IMPLEMENTATION_VERSION = ("DICOMPACK_" + __version__.replace(".", ""))[:16]


def encode_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, 'DICM' and File Meta Information (PS3.10 7.1)."""
    body = b"".join([
        encode_element(0x00020001, b"OB", b"\x00\x01"),
        encode_element(0x00020002, b"UI", sop_class.encode()),
        encode_element(0x00020003, b"UI", sop_instance.encode()),
        encode_element(0x00020010, b"UI", transfer_syntax.encode()),
        encode_element(0x00020012, b"UI", IMPLEMENTATION_CLASS_UID.encode()),
        encode_element(0x00020013, b"SH", IMPLEMENTATION_VERSION.encode()),
    ])
    return b"\x00" * 128 + b"DICM" + encode_ul(0x00020000, len(body)) + body
