"""Deflated data sets (PS3.5 A.5), inflated under a cap."""
from __future__ import annotations

import zlib

from dicompack.dcmio import LimitExceededError, StructureError

# Deflated Explicit VR Little Endian (PS3.5 A.5): the inflated data set is held
# in memory to be walked, so its size is capped before it is inflated whole:
# at most DEFLATED_MAX_BYTES, and at most DEFLATED_MAX_RATIO times the
# compressed size beyond the first DEFLATED_RATIO_FLOOR bytes (a deflate bomb
# of zeros inflates ~1000x; real deflated objects, mostly SR and small
# images, a few times).  Everything we hand to pydicom later (de-identification
# reads a deflated file whole and holds about 7x its inflated size) has passed
# this cap, which keeps that under the 200 MB hostile-input bound.
DEFLATED_MAX_BYTES = 16 << 20
DEFLATED_MAX_RATIO = 200
DEFLATED_RATIO_FLOOR = 1 << 20
_INFLATE_INPUT_CHUNK = 1 << 16


def inflate_limit(compressed: int) -> int:
    """The most bytes a deflated data set of ``compressed`` bytes may inflate to."""
    return min(DEFLATED_MAX_BYTES, max(DEFLATED_RATIO_FLOOR, DEFLATED_MAX_RATIO * compressed))


def inflate_dataset(buf, start: int) -> bytearray:
    """Inflate the raw deflate stream at ``buf[start:]`` in bounded chunks.

    Raises LimitExceededError as soon as the output would pass
    ``inflate_limit``, and StructureError for a stream that is cut short.
    """
    compressed = len(buf) - start
    limit = inflate_limit(compressed)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    # One growing buffer (large reallocations move pages, they do not copy):
    # about the inflated size, not twice it as chunks joined at the end.
    out = bytearray()
    pos = start
    while not inflater.eof:
        if inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        elif pos < len(buf):
            data = bytes(buf[pos:pos + _INFLATE_INPUT_CHUNK])
            pos += len(data)
        else:
            raise StructureError("deflated data set is cut short")
        # max_length one past the limit: reaching it proves the limit is passed
        # without ever holding more than limit + 1 bytes.
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise LimitExceededError(
                f"deflated data set inflates to more than {limit:,} bytes from {compressed:,} "
                f"(dicompack's limit: {DEFLATED_MAX_BYTES:,} bytes, and {DEFLATED_MAX_RATIO}x the "
                f"compressed size beyond {DEFLATED_RATIO_FLOOR:,})")
    return out
