"""Walking a data set: which encoding it is really in, and the values,
sequences and Pixel Data position the File-set needs."""
from __future__ import annotations

import re
from functools import lru_cache

from dicompack import dcmio
from dicompack.dcmio import EXPLICIT_LITTLE, Encoding, LimitExceededError, StructureError, Walker, decode_text
from dicompack.enums import ScanStatus
from dicompack.fileset.records import expects_pixel_data, instance_key_tags
from dicompack.scan.inflate import inflate_dataset
from dicompack.scan.result import (
    HEADER_ONLY_NOTE,
    LOSSY_IMAGE_COMPRESSION,
    SOP_CLASS_UID,
    ScanResult,
)
from dicompack.standard import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    NATIVE_SYNTAXES,
)


def _walk_dataset(res: ScanResult, buf, declared_ts: str) -> bool:
    """Walk the data set with the declared encoding, or detect the real one.

    Returns False when it walks in no encoding at all (for a raw file: not
    DICOM), True when it walked, or walked until refused for what it holds."""
    candidates = [declared_ts] if declared_ts else []
    if bytes(buf[res.dataset_offset:res.dataset_offset + 2]) == b"\x00\x08":
        # Group 0008 written big endian: an Explicit VR Big Endian data set
        # (the retired syntax; raw ones come without File Meta to say so).
        candidates.append(EXPLICIT_VR_BIG_ENDIAN)
    candidates += [t for t in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN) if t not in candidates]
    first_error: Exception | None = None
    for ts in candidates:
        try:
            _collect(res, buf, ts)
        except LimitExceededError as exc:
            # Another encoding would not make the file smaller or shallower.
            _forget_walk(res)
            res.status, res.reason = ScanStatus.INVALID, f"refused: {exc}"
            return True
        except _NoFittingSyntax as exc:
            # The structure is sound in this encoding, the Pixel Data is not.
            _forget_walk(res)
            res.status, res.reason = ScanStatus.INVALID, _no_fitting_syntax_reason(exc.ts, declared_ts)
            return True
        except _BrokenInItsEncoding as exc:
            # Elements walked in this encoding up to a defect no other
            # encoding explains: trying them would only cost time.
            _forget_walk(res)
            res.status, res.reason = ScanStatus.INVALID, structure_reason(exc, res.size)
            return True
        except StructureError as exc:
            first_error = first_error or exc
            _forget_walk(res)
            continue
        res.transfer_syntax = ts
        if declared_ts and ts != declared_ts:
            res.fixes.append(f"File Meta says Transfer Syntax {declared_ts} but the "
                             f"data set is encoded as {ts}")
        return True
    res.status = ScanStatus.INVALID
    res.reason = structure_reason(first_error, res.size)
    return False


def _forget_walk(res: ScanResult) -> None:
    """Drop what a failed walk in one encoding collected."""
    res.values.clear()
    res.sequences.clear()
    res.notes.clear()
    res.lossy_compression = ""


_NATIVE_NAMES = {IMPLICIT_VR_LITTLE_ENDIAN: "Implicit VR Little Endian",
                 EXPLICIT_VR_LITTLE_ENDIAN: "Explicit VR Little Endian",
                 EXPLICIT_VR_BIG_ENDIAN: "Explicit VR Big Endian"}


def _no_fitting_syntax_reason(found: str, declared: str) -> str:
    what = f" (undefined length) in a data set encoded as {_NATIVE_NAMES[found]}"
    if declared and declared != found:
        what += f", not in the Explicit VR Little Endian the File Meta's Transfer Syntax {declared} needs"
    return f"corrupt: encapsulated Pixel Data{what}: no Transfer Syntax describes this file"



# Messages of dcmio.StructureError (and struct.error) raised only when a read
# needs bytes past the end of the buffer, i.e. of the file.
_CUT_SHORT_MARKERS = ("cut short", "runs past the end", "requires a buffer", "the file ends")
_NEEDS = re.compile(r"at byte (\d+) needs \d+ bytes, only (\d+) left")


def structure_reason(exc: BaseException | None, size: int | None = None) -> str:
    """The reason for a data set that does not walk: *truncated* when the
    file ends inside an element (a header, or a declared length that needs
    more bytes than the file has), otherwise *corrupt* (invalid VR, stray
    item, odd fragment, a length past its enclosing item...).  A file that
    ends exactly at an element boundary walks fine and is never truncated."""
    text = str(exc)
    needs = _NEEDS.search(text)
    if needs and size is not None:
        # "only K left" counts to the end of the enclosing item, or of the
        # file: it is the file when the value (after an 8 or 12 byte header)
        # starts K bytes before the end of the file.
        cut = size - int(needs[2]) - int(needs[1]) in (8, 12)
    else:
        cut = any(marker in text for marker in _CUT_SHORT_MARKERS)
    if cut:
        return f"truncated (the file ends inside an element): {text}"
    return f"corrupt: {text}"


def _collect(res: ScanResult, buf, ts: str) -> None:
    data, base = buf, res.dataset_offset
    if ts == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        # Deflated data sets are inflated in memory (bounded by inflate_limit);
        # they are small in practice and are copied whole, so pixel offsets
        # are not needed.
        data, base = inflate_dataset(buf, base), 0
    enc = Encoding.for_syntax(ts)
    walker = Walker(data, enc)
    wanted = instance_key_tags()
    looked_at = _looked_at_tags()
    pixel_offset = None
    has_pixels = encapsulated = stray_meta = False
    count = 0
    for el in walker.elements(base):
        if not count and enc.explicit and el.vr not in dcmio.VALID_VRS:
            raise StructureError("not explicit VR")
        count += 1
        if not _TOP_LEVEL_TAGS_START <= el.tag < _ITEM_TAGS_START:   # rare: one test per element
            stray_meta = _odd_top_level_tag(res, el, stray_meta)
        kind = looked_at.get(el.tag)
        if kind is None:
            continue
        if kind is _KEY:
            tag = wanted[el.tag]
            if el.vr == b"SQ" or el.length == dcmio.UNDEFINED:
                res.sequences[tag] = _encoded_sequence(res.path, data, el, enc)
            else:
                res.values[tag] = bytes(data[el.value_offset:el.end])
        elif kind is _LOSSY:
            res.lossy_compression = decode_text(bytes(data[el.value_offset:el.end]))
        else:   # Pixel Data, Float or Double Float Pixel Data
            has_pixels = True
            if el.length == dcmio.UNDEFINED:
                encapsulated = True
                _check_fragments(walker, el)
            if ts != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                pixel_offset, res.pixel_end = el.header_offset, el.end
    if not count:
        raise StructureError("no data set element: the file ends with its File Meta")
    if encapsulated and ts in NATIVE_SYNTAXES:
        raise _NoFittingSyntax(ts)
    if not has_pixels and expects_pixel_data(decode_text(res.values.get(SOP_CLASS_UID, b""))):
        # Every element is complete (the walk ended exactly at the end of
        # the file), so this is a header-only instance, not a cut one: it is
        # packed as the sender has it, with a warning (spec/fileset.md).
        res.notes.append(HEADER_ONLY_NOTE)
    res.has_pixels, res.element_count = has_pixels, count
    res.pixel_offset = pixel_offset


class _BrokenInItsEncoding(StructureError):
    """A defect found after the data set walked in an encoding (a stray item,
    an odd fragment): the file is broken, not read in the wrong encoding."""


class _NoFittingSyntax(StructureError):
    """Encapsulated Pixel Data in a data set encoded in a native syntax: no
    Transfer Syntax describes the file, so it cannot be written correctly."""

    def __init__(self, ts: str):
        super().__init__(ts)
        self.ts = ts


def _check_fragments(walker: Walker, el: dcmio.Element) -> None:
    """PS3.5 A.4: every fragment of encapsulated Pixel Data has an even
    length.  An odd one (the walker accepts it) makes DCMTK lose its place,
    and the Basic Offset Table cannot point into the fragments correctly."""
    for item, start, end in walker.items(el.value_offset, el.end):
        if (end - start) % 2:
            raise _BrokenInItsEncoding(f"Pixel Data fragment at byte {item} has odd length {end - start} "
                                 f"(PS3.5 A.4 requires even lengths)")


# What _collect does with a top-level tag: a record key, the lossy flag, or pixels.
_KEY, _LOSSY, _PIXELS = "key", "lossy", "pixels"
_TOP_LEVEL_TAGS_START = 0x00030000   # below: File Meta (0002) or command (0000) groups
_ITEM_TAGS_START = 0xFFFE0000        # items and delimiters


@lru_cache(maxsize=1)
def _looked_at_tags() -> dict[int, str]:
    kinds = {tag: _KEY for tag in instance_key_tags()}
    kinds[LOSSY_IMAGE_COMPRESSION] = _LOSSY
    kinds.update({tag: _PIXELS for tag in dcmio.PIXEL_DATA_TAGS})
    return kinds


def _odd_top_level_tag(res: ScanResult, el: dcmio.Element, stray_meta: bool) -> bool:
    """Judge a top-level tag outside the data set's range; True once the
    data set was found to repeat File Meta elements."""
    if el.tag >= _ITEM_TAGS_START:
        # The walker yields what it finds; an item or delimiter at the top
        # level means the sequence before it declared a wrong length.
        raise _BrokenInItsEncoding(f"item tag ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) outside any "
                             f"sequence at byte {el.header_offset} (the length of the "
                             f"sequence before it is wrong)")
    if el.tag >> 16 == 0x0002 and not stray_meta:
        res.notes.append("the data set repeats File Meta elements (group 0002; PS3.10 7.1 keeps "
                         "them out of it): packed as is")
    return stray_meta or el.tag >> 16 == 0x0002


def _encoded_sequence(path: str, data, el: dcmio.Element, enc: Encoding) -> bytes:
    """The sequence element in Explicit VR LE, for copying into a record."""
    if enc == EXPLICIT_LITTLE:
        return bytes(data[el.header_offset:el.end])
    return _reencode_with_pydicom(path, el.tag)


def _reencode_with_pydicom(path: str, tag: int) -> bytes:
    # Rare path (sequence keys of implicit VR or big endian files): let pydicom
    # convert the sequence, then encode it as Explicit VR Little Endian.
    from pydicom import dcmread  # pydicom costs ~0.3 s to import: only on this rare path
    from pydicom.filebase import DicomBytesIO  # as above
    from pydicom.filewriter import write_data_element  # as above

    try:
        ds = dcmread(path, force=True, stop_before_pixels=True, specific_tags=[tag])
    except RecursionError:
        # Not expected (the walker capped the nesting first): still a typed outcome.
        raise LimitExceededError("sequences nested too deeply for the DICOM reader") from None
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_data_element(out, ds[tag])
    return out.getvalue()
