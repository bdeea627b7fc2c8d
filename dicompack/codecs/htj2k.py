"""High-Throughput JPEG 2000 (ISO 15444-15) frames: OpenJPH through
``imagecodecs.htj2k_encode``, lossless only (reversible 5/3; RGB through the
reversible colour transform, like JPEG 2000 Part 1).  Frames are checked by
decoding with OpenJPH (twice as fast as openjpeg's HTJ2K decoder on CT
frames, and the same practice as the J2K path, which decodes with the
library that encoded); the tests decode every case with OpenJPEG's
opj_decompress, which shares no code with OpenJPH."""
from __future__ import annotations

import imagecodecs
import numpy as np

from dicompack import standard
from dicompack.codecs.choice import J2KOptions

LOSSLESS_TS = standard.HTJ2K_LOSSLESS
LOSSY_TS = standard.HTJ2K          # not written: no lossy mode (see choice.LOSSY_MODES)
METHOD = "ISO_15444_15"
NAME = "HTJ2K"


def encode(frame: np.ndarray, *, photometric: str, bits_stored: int, options: J2KOptions) -> bytes:
    """One frame as a bare HTJ2K codestream (no JPH wrapper).  The
    component precision is the frame's dtype width (OpenJPH takes no other):
    lossless for any Bits Stored, the values having been masked."""
    colour = frame.ndim == 3
    return bytes(imagecodecs.htj2k_encode(frame, reversible=True, rgb=colour and photometric == "RGB",
                                          planar=False if colour else None))


def decode(codestream: bytes, frame: np.ndarray, *, bits_stored: int, signed: bool) -> np.ndarray:
    values = imagecodecs.htj2k_decode(codestream)
    if frame.ndim == 3 and values.shape == (frame.shape[2], *frame.shape[:2]):
        values = values.transpose(1, 2, 0)     # without a colour transform OpenJPH gives the components planar
    return values.reshape(frame.shape)
