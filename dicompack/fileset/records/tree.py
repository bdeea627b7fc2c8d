"""The record tree: directory records as read from a DICOMDIR or built from
scanned files, and reading their keys."""
from __future__ import annotations

from dataclasses import dataclass, field

from dicompack.dcmio import LONG_VRS as LONG_VR_NAMES
from dicompack.fileset.records.schema import SPECIFIC_CHARACTER_SET
from dicompack.fileset.records.text import _decode, _encodings


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
