"""The keys of a read directory record, packed into one bytes object, and
the caps on what the records of a DICOMDIR may hold."""
from __future__ import annotations

import struct
from collections.abc import Mapping

from dicompack.errors import PackageInvalidError

# The keys of a record (its non-structural elements) as read from a DICOMDIR.
# A dict of one bytes object per element costs ~135 bytes per element: a
# DICOMDIR at the record cap whose records carry 30 empty elements each
# (60 MB, 1 MB deflated) took 861 MB.  Packed, an element costs its encoded
# bytes plus 8 (its tag and end offset), and what all records keep together
# is capped by MAX_DICOMDIR_KEY_BYTES.
MAX_DICOMDIR_KEY_BYTES = 16 * 1024 * 1024
# Real records carry a few to a few dozen keys; the cap bounds the one dict a
# record is collected in before it is packed.
MAX_RECORD_ELEMENTS = 1_000
_PACKED_INDEX_BYTES = 8     # its tag and end offset


class _KeyBudget:
    """Counts the bytes the packed keys of one DICOMDIR hold; refuses the
    DICOMDIR (a typed error) past MAX_DICOMDIR_KEY_BYTES."""

    def __init__(self, where: str, cap: int):
        self.where, self.cap, self.used = where, cap, 0

    def charge(self, encoded_bytes: int, item_pos: int) -> None:
        self.used += encoded_bytes + _PACKED_INDEX_BYTES
        if self.used > self.cap:
            raise PackageInvalidError(
                f"directory records hold more than {MAX_DICOMDIR_KEY_BYTES // (1024 * 1024)} MiB of keys "
                f"(dicompack's limit; reached in the record at byte {item_pos})", where=self.where)


class PackedElements(Mapping):
    """A read record's keys: tag -> the element encoded in Explicit VR LE
    (read-only).  One bytes object holds them all: the element count, the
    tags, the end offsets, then the elements back to back; one object per
    record keeps a DICOMDIR at the record cap small.

    Lookups search the packed tags in C (``bytes.find``), so checking a
    record's keys stays fast whatever the number of records."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes):
        self._data = data

    @classmethod
    def pack(cls, elements: dict[int, bytes]) -> PackedElements:
        ends, size = [], 0
        for encoded in elements.values():
            size += len(encoded)
            ends.append(size)
        n = len(ends)
        return cls(struct.pack(f"<{1 + 2 * n}I", n, *elements, *ends) + b"".join(elements.values()))

    def __len__(self) -> int:
        return struct.unpack_from("<I", self._data)[0] if self._data else 0

    def _index(self, tag) -> int:
        n = len(self)
        if not n or not isinstance(tag, int) or not 0 <= tag <= 0xFFFFFFFF:
            return -1
        key, tags_end = struct.pack("<I", tag), 4 + 4 * n
        pos = self._data.find(key, 4, tags_end)
        while pos != -1 and pos % 4:          # only whole tags count
            pos = self._data.find(key, pos + 1, tags_end)
        return -1 if pos == -1 else pos // 4 - 1

    def _element(self, i: int) -> bytes:
        n = len(self)
        ends_at, blob_at = 4 + 4 * n, 4 + 8 * n
        start = struct.unpack_from("<I", self._data, ends_at + 4 * (i - 1))[0] if i else 0
        end = struct.unpack_from("<I", self._data, ends_at + 4 * i)[0]
        return self._data[blob_at + start:blob_at + end]

    def __getitem__(self, tag) -> bytes:
        i = self._index(tag)
        if i < 0:
            raise KeyError(tag)
        return self._element(i)

    def __contains__(self, tag) -> bool:
        return self._index(tag) >= 0

    def __iter__(self):
        n = len(self)
        return iter(struct.unpack_from(f"<{n}I", self._data, 4)) if n else iter(())

    def items(self):
        return [(tag, self._element(i)) for i, tag in enumerate(self)]

    def __repr__(self) -> str:
        return f"PackedElements({dict(self.items())!r})"


_NO_ELEMENTS = PackedElements(b"")


class _ElementPacker:
    """Collects a record's elements (a tag seen twice keeps its last
    element, as a dict would) and packs them into one PackedElements.
    The dict lives for one record only; MAX_RECORD_ELEMENTS bounds it."""

    def __init__(self, where: str, item_pos: int):
        self.where, self.item_pos = where, item_pos
        self.elements: dict[int, bytes] = {}

    def add(self, tag: int, encoded: bytes) -> None:
        self.elements[tag] = encoded
        if len(self.elements) > MAX_RECORD_ELEMENTS:
            raise PackageInvalidError(
                f"directory record at byte {self.item_pos} has more than {MAX_RECORD_ELEMENTS:,} "
                "elements (dicompack's limit)", where=self.where)

    def done(self) -> PackedElements:
        return PackedElements.pack(self.elements) if self.elements else _NO_ELEMENTS
