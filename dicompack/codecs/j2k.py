"""JPEG 2000 recompression of native Pixel Data, frame by frame; the same
frame-by-frame driver serves HTJ2K and JPEG-LS (``htj2k``, ``jpegls``: each
only encodes and decodes one frame), chosen by ``J2KOptions.codec``.

Lossless (1.2.840.10008.1.2.4.90): reversible 5/3 wavelet; RGB goes through
the reversible colour transform and becomes YBR_RCT (PS3.5 A.4.4, PS3.3
C.7.6.3.1.2); YBR_FULL and monochrome are encoded without a colour
transform and keep their Photometric Interpretation.  Every encoded frame is
decoded again and compared with the source (masked to Bits Stored) unless
verification is switched off.

Lossy (1.2.840.10008.1.2.4.91): irreversible 9/7 wavelet, RGB -> YBR_ICT;
Lossy Image Compression, Ratio (measured) and Method are set or appended.
The caller gives the instance a new SOP Instance UID and updates references.
JPEG-LS near-lossless (.81) is checked by decoding: no sample may differ
from the source by more than NEAR.

Only one frame is in memory at a time: a 2 GB multi-frame instance needs
about two frames of RAM.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Any, BinaryIO

import numpy as np
import openjpeg
from pydicom.pixels import get_decoder, iter_pixels

from dicompack import standard
from dicompack.codecs import opj
from dicompack.codecs.choice import Codec, J2KMode, J2KOptions, parse_codec_options, parse_j2k_option
from dicompack.errors import CompressionError

__all__ = ["LOSSLESS_TS", "LOSSY_TS", "Codec", "J2KMode", "J2KOptions", "J2KResult", "encode_pixel_data",
           "parse_codec_options", "parse_j2k_option", "pixel_element_skip_reason", "skip_reason"]

LOSSLESS_TS = standard.JPEG_2000_LOSSLESS
LOSSY_TS = standard.JPEG_2000
# Native syntaxes: (byte order for struct/numpy, explicit VR?).
NATIVE = {standard.IMPLICIT_VR_LITTLE_ENDIAN: ("<", False), standard.EXPLICIT_VR_LITTLE_ENDIAN: ("<", True),
          standard.EXPLICIT_VR_BIG_ENDIAN: (">", True)}
# Lossless encapsulated syntaxes --transcode re-encodes (decoded frame by frame).
LOSSLESS_SOURCES = {standard.RLE_LOSSLESS: "RLE Lossless", standard.JPEG_LOSSLESS: "JPEG Lossless",
                    standard.JPEG_LOSSLESS_SV1: "JPEG Lossless SV1", standard.JPEG_LS_LOSSLESS: "JPEG-LS Lossless"}
_OPENJPEG_COLOUR = {"RGB": 1, "YBR_FULL": 3, "MONOCHROME1": 2, "MONOCHROME2": 2, "PALETTE COLOR": 2}


@dataclass(frozen=True)
class Backend:
    """One codec as the frame driver uses it."""
    name: str
    lossless_ts: str
    lossy_ts: str
    method: str                    # Lossy Image Compression Method (PS3.3 C.7.6.1.1.5.2)
    colour_transform: bool         # RGB -> YBR_RCT / YBR_ICT (JPEG 2000 family)
    encode: Callable[..., bytes]   # (frame, *, photometric, bits_stored, near) -> codestream
    decode: Callable[..., np.ndarray]   # (codestream, frame, *, bits_stored, signed) -> values


def _backend(codec: Codec) -> Backend:
    if codec == Codec.J2K:
        return Backend("JPEG 2000", LOSSLESS_TS, LOSSY_TS, "ISO_15444_1", True, _j2k_encode,
                       lambda codestream, frame, **_: openjpeg.decode(codestream).reshape(frame.shape))
    module: Any
    if codec == Codec.HTJ2K:
        from dicompack.codecs import htj2k as module  # optional codec: its library loads only when chosen
    else:
        from dicompack.codecs import jpegls as module  # optional codec: its library loads only when chosen
    return Backend(module.NAME, module.LOSSLESS_TS, module.LOSSY_TS, module.METHOD, codec == Codec.HTJ2K,
                   module.encode, module.decode)


@dataclass
class J2KResult:
    encoded: bool
    note: str
    transfer_syntax: str
    frames: int = 0
    source_bytes: int = 0
    encoded_bytes: int = 0
    ratio: float | None = None
    psnr: float | None = None
    codec: str = Codec.J2K

    def to_dict(self) -> dict:
        return asdict(self)


def skip_reason(header, source_ts: str, options: J2KOptions) -> str | None:
    """None when the instance can be encoded; else why it stays as it is."""
    if "Rows" not in header or "Columns" not in header or "BitsAllocated" not in header:
        return "no image pixel module"
    if source_ts not in NATIVE:
        if source_ts not in LOSSLESS_SOURCES:
            return "already compressed (lossy or JPEG 2000): kept as it is"
        if not options.transcode:
            return f"already compressed ({LOSSLESS_SOURCES[source_ts]}): kept as it is (--transcode re-encodes it)"
        if not _decoder_available(source_ts):
            return f"no decoder installed for {LOSSLESS_SOURCES[source_ts]}: kept as it is"
    if header.BitsAllocated not in (8, 16):
        return f"Bits Allocated {header.BitsAllocated} is not supported by the J2K stage"
    if header.get("SamplesPerPixel", 1) not in (1, 3):
        return "unsupported Samples per Pixel"
    photometric = str(header.get("PhotometricInterpretation", ""))
    if photometric not in _OPENJPEG_COLOUR:
        return f"Photometric Interpretation {photometric} is not supported by the J2K stage"
    if options.codec == Codec.JPEGLS and int(header.get("BitsStored", header.BitsAllocated)) < 2:
        return "Bits Stored below 2 is not supported by JPEG-LS"
    if options.mode == J2KMode.NEAR and int(header.get("PixelRepresentation", 0)) == 1:
        # JPEG-LS codes signed samples as their bit patterns: a near-lossless
        # error wraps from the largest value to the smallest (PS3.5 A.4.3)
        return "signed pixel data cannot be compressed near-lossless with JPEG-LS"
    if options.lossy and photometric == "PALETTE COLOR":
        return "palette indices cannot be compressed lossily"
    if options.lossy and str(header.get("LossyImageCompression", "00")) == "01" and not options.force:
        raise CompressionError("refusing lossy compression of an already lossy image (use --force)")
    return None


def pixel_element_skip_reason(src: BinaryIO, pixel_offset: int, source_ts: str) -> str | None:
    """What the Pixel Data element itself says against encoding (None: it
    can be encoded).  An empty value (some archives strip pixels, PS3.5
    allows a zero length) has nothing to compress: the instance goes in as
    the plain pack would put it, with this note.  Float pixel data is not
    an integer image J2K can hold."""
    if source_ts not in NATIVE:
        return None
    order, explicit = NATIVE[source_ts]
    src.seek(pixel_offset)
    head = src.read(12 if explicit else 8)
    if len(head) < (12 if explicit else 8):
        return None            # encode_pixel_data reports the cut
    if struct.unpack(order + "HH", head[:4]) != (0x7FE0, 0x0010):
        return "Float or Double Float Pixel Data is not supported by the J2K stage"
    length = struct.unpack(order + "I", head[8:12] if explicit else head[4:8])[0]
    return "empty Pixel Data" if length == 0 else None


def _decoder_available(ts: str) -> bool:
    try:
        return get_decoder(ts).is_available
    except (NotImplementedError, ValueError):
        return False


def _compressed_frames(src: BinaryIO, header, where: str):
    """Frames of a lossless-compressed source, decoded one at a time, with
    stored values (no colour conversion), masked to Bits Stored."""
    src.seek(0)
    signed = int(header.get("PixelRepresentation", 0)) == 1
    bits_stored = int(header.get("BitsStored", header.BitsAllocated))
    frames = iter_pixels(src, raw=True)
    n = 0
    while True:
        n += 1
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as exc:   # decoders raise assorted types on damaged data
            raise CompressionError(f"cannot decode the compressed source: {exc}", where=f"{where} frame {n}") from None
        yield _mask(np.ascontiguousarray(frame), bits_stored, signed)


def _frame_geometry(header) -> tuple[int, int, int, int, int]:
    rows, cols = int(header.Rows), int(header.Columns)
    spp = int(header.get("SamplesPerPixel", 1))
    frames = int(header.get("NumberOfFrames", 1) or 1)
    nbytes = rows * cols * spp * header.BitsAllocated // 8
    return rows, cols, spp, frames, nbytes


def _pixel_value_offset(src: BinaryIO, pixel_offset: int, source_ts: str, where: str) -> tuple[int, int]:
    order, explicit = NATIVE[source_ts]
    src.seek(pixel_offset)
    head = src.read(12)
    group, elem = struct.unpack(order + "HH", head[:4])
    if (group, elem) != (0x7FE0, 0x0010):
        raise CompressionError("Pixel Data is Float/Double Float pixel data; not supported", where=where)
    if explicit:
        return pixel_offset + 12, struct.unpack(order + "I", head[8:12])[0]
    return pixel_offset + 8, struct.unpack(order + "I", head[4:8])[0]


def _read_frame(src: BinaryIO, offset: int, nbytes: int, header, order: str, where: str) -> np.ndarray:
    src.seek(offset)
    raw = src.read(nbytes)
    if len(raw) != nbytes:
        raise CompressionError("Pixel Data is shorter than its frames", where=where)
    signed = int(header.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{header.BitsAllocated // 8}")
    arr = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    rows, cols, spp, _, _ = _frame_geometry(header)
    if spp == 1:
        arr = arr.reshape(rows, cols)
    elif int(header.get("PlanarConfiguration", 0)) == 1:
        arr = arr.reshape(spp, rows, cols).transpose(1, 2, 0)
    else:
        arr = arr.reshape(rows, cols, spp)
    return _mask(np.ascontiguousarray(arr), int(header.get("BitsStored", header.BitsAllocated)), signed)


def _mask(arr: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Keep only Bits Stored (the unused high bits may hold anything, PS3.5 8.1.1)."""
    bits = arr.dtype.itemsize * 8
    if bits_stored >= bits:
        return arr
    unsigned = arr.view(arr.dtype.str.replace("i", "u")) & ((1 << bits_stored) - 1)
    if not signed:
        return unsigned.astype(arr.dtype)
    shift = bits - bits_stored
    return ((unsigned.astype(arr.dtype) << shift) >> shift).astype(arr.dtype)


def _j2k_encode(frame: np.ndarray, *, photometric: str, bits_stored: int, options: J2KOptions) -> bytes:
    """Through openjpeg's C API with arithmetic coding bypass (see opj.py);
    pylibjpeg-openjpeg's encoder where that API cannot be used."""
    ratio = options.value if options.mode == J2KMode.RATIO else None
    psnr = options.value if options.mode == J2KMode.PSNR else None
    if opj.available():
        return opj.encode(frame, bits_stored=bits_stored, mct=photometric == "RGB", ratio=ratio, psnr=psnr)
    return openjpeg.encode(frame, bits_stored=bits_stored, photometric_interpretation=_OPENJPEG_COLOUR[photometric],
                  use_mct=photometric == "RGB", compression_ratios=[ratio] if ratio else None,
                  signal_noise_ratios=[psnr] if psnr else None)


def _psnr(a: np.ndarray, b: np.ndarray, bits_stored: int) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(((1 << bits_stored) - 1) ** 2 / mse)


def encode_pixel_data(src: BinaryIO, pixel_offset: int, header, source_ts: str, options: J2KOptions,
                      out: IO[bytes], *, where: str, on_frame: Callable[[int], None] | None = None) -> J2KResult:
    """Write the encapsulated Pixel Data element (Explicit VR LE) to ``out``
    (seekable: the Basic Offset Table is patched at the end) and update
    ``header``'s image attributes.  Raises CompressionError on any problem."""
    rows, cols, spp, frames, nbytes = _frame_geometry(header)
    source = _source_frames(src, pixel_offset, header, source_ts, frames, nbytes, where)
    bits_stored = int(header.get("BitsStored", header.BitsAllocated))
    start = out.tell()
    out.write(struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", 0xFFFFFFFF))
    out.write(struct.pack("<HHI", 0xFFFE, 0xE000, 4 * frames) + b"\x00" * 4 * frames)
    offsets, encoded_total, worst_psnr = [], 0, math.inf
    first_fragment = out.tell()
    for n in range(frames):
        frame_where = f"{where} frame {n + 1}"
        frame = next(source, None)
        if frame is None:
            raise CompressionError("fewer frames than Number of Frames", where=frame_where)
        codestream, psnr = _encode_frame(frame, header, options, bits_stored, frame_where)
        worst_psnr = min(worst_psnr, psnr)
        if len(codestream) % 2:
            codestream += b"\x00"     # even length; padding after EOC is allowed
        offsets.append(out.tell() - first_fragment)
        out.write(struct.pack("<HHI", 0xFFFE, 0xE000, len(codestream)) + codestream)
        encoded_total += len(codestream)
        if on_frame:
            on_frame(nbytes)
    out.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    end = out.tell()
    out.seek(start + 12 + 8)
    out.write(struct.pack(f"<{frames}I", *offsets))
    out.seek(end)
    return _update_header(header, options, frames, frames * nbytes, encoded_total, worst_psnr)


def _source_frames(src: BinaryIO, pixel_offset: int, header, source_ts: str, frames: int, nbytes: int,
                   where: str):
    """The source frames, one at a time, native or decoded."""
    if source_ts not in NATIVE:
        yield from _compressed_frames(src, header, where)
        return
    order = NATIVE[source_ts][0]
    value_offset, length = _pixel_value_offset(src, pixel_offset, source_ts, where)
    if length < frames * nbytes:
        raise CompressionError(f"Pixel Data holds {length} bytes, {frames} frames need {frames * nbytes}", where=where)
    for n in range(frames):
        yield _read_frame(src, value_offset + n * nbytes, nbytes, header, order, f"{where} frame {n + 1}")


def _encode_frame(frame: np.ndarray, header, options: J2KOptions, bits_stored: int,
                  where: str) -> tuple[bytes, float]:
    """Encode one frame and check it: lossless must decode to the same
    values; near-lossless must stay within NEAR of every sample; a PSNR
    request must be met (the encoder's own PSNR target is approximate, so it
    is raised by 1 dB at a time, up to 4 times)."""
    backend = _backend(options.codec)
    photometric = str(header.PhotometricInterpretation)
    signed = int(header.get("PixelRepresentation", 0)) == 1
    attempt = options
    for _ in range(5):
        try:
            codestream = backend.encode(frame, photometric=photometric, bits_stored=bits_stored, options=attempt)
        except opj.EncodeError as exc:   # our encoder's own error: wrapped here, at the codec boundary
            raise CompressionError(f"{backend.name} encoding failed: {exc}", where=where) from None
        except Exception as exc:   # the codec libraries report failures as various types
            raise CompressionError(f"{backend.name} encoding failed: {exc}", where=where) from None
        if not (options.verify or options.lossy):
            return codestream, math.inf
        try:
            decoded = backend.decode(codestream, frame, bits_stored=bits_stored, signed=signed)
        except Exception as exc:   # noqa: BLE001 - a decoder's failure on our own output: the frame fails
            raise CompressionError(f"{backend.name} output does not decode: {exc}", where=where) from None
        if not options.lossy:
            if not np.array_equal(decoded, frame):
                raise CompressionError("lossless round trip differs from the source", where=where)
            return codestream, math.inf
        psnr = _psnr(frame, decoded, bits_stored)
        if options.mode == J2KMode.NEAR:
            error = int(np.max(np.abs(decoded.astype(np.int64) - frame.astype(np.int64)), initial=0))
            if error > _target(options):
                raise CompressionError(f"near-lossless error {error} exceeds NEAR {_target(options):g}", where=where)
            return codestream, psnr
        if options.mode != J2KMode.PSNR or psnr >= _target(options):
            return codestream, psnr
        attempt = J2KOptions(J2KMode.PSNR, _target(attempt) + 1.0)
    raise CompressionError(f"could not reach PSNR {options.value} dB (got {psnr:.1f})", where=where)


def _target(options: J2KOptions) -> float:
    """The number a lossy mode goes by (``parse_j2k_option`` always sets one)."""
    if options.value is None:
        raise CompressionError(f"--j2k {options.mode} needs a value")
    return options.value


def _update_header(header, options: J2KOptions, frames: int, source_bytes: int, encoded: int,
                   psnr: float) -> J2KResult:
    ratio = source_bytes / encoded if encoded else None
    backend = _backend(options.codec)
    photometric = str(header.PhotometricInterpretation)
    if photometric == "RGB" and backend.colour_transform:
        header.PhotometricInterpretation = "YBR_ICT" if options.lossy else "YBR_RCT"
    if int(header.get("SamplesPerPixel", 1)) > 1:
        header.PlanarConfiguration = 0
    for stale in (0x7FE00001, 0x7FE00002):   # offset tables of the old encoding
        if stale in header:
            del header[stale]
    if options.lossy:
        header.LossyImageCompression = "01"
        header.LossyImageCompressionRatio = _appended(header, "LossyImageCompressionRatio", f"{ratio:.2f}")
        header.LossyImageCompressionMethod = _appended(header, "LossyImageCompressionMethod", backend.method)
    syntax = backend.lossy_ts if options.lossy else backend.lossless_ts
    return J2KResult(True, "", syntax, frames, source_bytes, encoded,
                     round(ratio, 3) if ratio else None,
                     None if not options.lossy else (round(psnr, 2) if psnr != math.inf else None), str(options.codec))


def _appended(header, keyword: str, value: str) -> list:
    old = header.get(keyword)
    if old is None or old == "":
        return [value]
    values = list(old) if not isinstance(old, (str, bytes)) and hasattr(old, "__iter__") else [old]
    return [str(v) for v in values] + [value]
