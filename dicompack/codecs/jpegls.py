"""JPEG-LS (ISO 14495-1) frames through CharLS as bundled in pyjpegls:
lossless (1.2.840.10008.1.2.4.80) or near-lossless with a NEAR value
(1.2.840.10008.1.2.4.81).  The sample precision P of the frame header is
Bits Stored.  JPEG-LS has no signed samples: signed pixel data is coded as
its Bits Stored bit patterns, which is what DICOM decoders expect
(PS3.5 A.4.3; dcmtk and pydicom sign-extend on decoding).  No colour
transform: RGB stays RGB (sample-interleaved, Planar Configuration 0)."""
from __future__ import annotations

import jpeg_ls  # type: ignore[import-untyped]  # pyjpegls ships no type information
import numpy as np

from dicompack import standard
from dicompack.codecs.choice import J2KMode, J2KOptions

LOSSLESS_TS = standard.JPEG_LS_LOSSLESS
LOSSY_TS = standard.JPEG_LS_NEAR_LOSSLESS
METHOD = "ISO_14495_1"
NAME = "JPEG-LS"


def _unsigned(frame: np.ndarray, bits_stored: int) -> np.ndarray:
    """The stored bit patterns (two's complement of signed values cut to Bits Stored)."""
    unsigned = frame.view(frame.dtype.str.replace("i", "u"))
    return unsigned & ((1 << bits_stored) - 1) if frame.dtype.kind == "i" else unsigned


def encode(frame: np.ndarray, *, photometric: str, bits_stored: int, options: J2KOptions) -> bytes:
    near = int(options.value or 0) if options.mode == J2KMode.NEAR else 0
    rows, cols = frame.shape[:2]
    spp = frame.shape[2] if frame.ndim == 3 else 1
    data = np.ascontiguousarray(_unsigned(frame, bits_stored))
    return bytes(jpeg_ls.encode_buffer(data.tobytes(), rows=rows, columns=cols, samples_per_pixel=spp,
                                       bits_stored=bits_stored, lossy_error=near,
                                       interleave_mode=2 if spp > 1 else 0))


def decode(codestream: bytes, frame: np.ndarray, *, bits_stored: int, signed: bool) -> np.ndarray:
    """Back to the frame's dtype and shape, sign-extended from Bits Stored for signed data."""
    raw = jpeg_ls.decode_from_buffer(codestream)
    unsigned_dtype = np.dtype(frame.dtype.str.replace("i", "u")).newbyteorder("<")
    values = np.frombuffer(raw, dtype=unsigned_dtype).astype(unsigned_dtype.newbyteorder("="))
    values = values.reshape(frame.shape).view(frame.dtype)
    if not signed or bits_stored >= frame.dtype.itemsize * 8:
        return values
    shift = frame.dtype.itemsize * 8 - bits_stored
    return ((values << shift) >> shift).astype(frame.dtype)
