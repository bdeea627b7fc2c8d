"""A JPEG 2000 encoder on openjpeg's C API, through ctypes.

pylibjpeg-openjpeg (our J2K dependency) bundles openjpeg 2.5 and exports its
whole C API, but its Python ``encode`` exposes no code-block options.  We
call the same library directly so the code-block style can switch on
*selective arithmetic coding bypass* (ISO 15444-1 A.6.1, "lazy" mode, part
of Part 1 that every decoder reads): the low bit planes of a lossless CT
are nearly random, and coding them raw instead of through the MQ coder cuts
both encoding and the verification decode by about a third at the same
size (benchmarks/j2k.py; spec/j2k.md).

The structures below follow openjpeg.h (2.5).  ``_load`` checks them against
the library's own defaults before first use and refuses a layout it does
not recognise, in which case ``available()`` is False and callers use
pylibjpeg-openjpeg's encoder instead.
"""
from __future__ import annotations

import ctypes as C
import glob
import math
import os
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import openjpeg

CBLK_BYPASS = 0x01                 # J2K_CCP_CBLKSTY_LAZY
_CODEC_J2K = 0                     # OPJ_CODEC_J2K: a raw codestream, as DICOM encapsulates it
_CLRSPC_GRAY, _CLRSPC_SRGB = 2, 1
_DEFAULT_RESOLUTIONS = 6           # openjpeg's default (5 wavelet decompositions)
_PATH_LEN, _MAXRLVLS, _JPWL_SPECS = 4096, 33, 16
_U32 = C.c_uint32
_Field = tuple[str, Any]           # (name, ctypes type) as openjpeg.h declares the member


class _Poc(C.Structure):
    _fields_: ClassVar[list[_Field]] = (
        [(n, _U32) for n in ("resno0", "compno0", "layno1", "resno1", "compno1", "layno0",
                             "precno0", "precno1")]
        + [("prg1", C.c_int), ("prg", C.c_int), ("progorder", C.c_char * 5)]
        + [(n, _U32) for n in ("tile", "tx0", "tx1", "ty0", "ty1", "layS", "resS", "compS", "prcS",
                               "layE", "resE", "compE", "prcE", "txS", "txE", "tyS", "tyE", "dx", "dy",
                               "lay_t", "res_t", "comp_t", "prc_t", "tx0_t", "ty0_t")])


class _CParameters(C.Structure):
    _fields_: ClassVar[list[_Field]] = (
        [(n, C.c_int) for n in ("tile_size_on", "cp_tx0", "cp_ty0", "cp_tdx", "cp_tdy",
                                "cp_disto_alloc", "cp_fixed_alloc", "cp_fixed_quality")]
        + [("cp_matrice", C.c_void_p), ("cp_comment", C.c_char_p), ("csty", C.c_int),
           ("prog_order", C.c_int), ("POC", _Poc * 32), ("numpocs", _U32), ("tcp_numlayers", C.c_int),
           ("tcp_rates", C.c_float * 100), ("tcp_distoratio", C.c_float * 100)]
        + [(n, C.c_int) for n in ("numresolution", "cblockw_init", "cblockh_init", "mode",
                                  "irreversible", "roi_compno", "roi_shift", "res_spec")]
        + [("prcw_init", C.c_int * _MAXRLVLS), ("prch_init", C.c_int * _MAXRLVLS),
           ("infile", C.c_char * _PATH_LEN), ("outfile", C.c_char * _PATH_LEN), ("index_on", C.c_int),
           ("index", C.c_char * _PATH_LEN)]
        + [(n, C.c_int) for n in ("image_offset_x0", "image_offset_y0", "subsampling_dx",
                                  "subsampling_dy", "decod_format", "cod_format",
                                  "jpwl_epc_on", "jpwl_hprot_MH")]
        + [("jpwl_hprot_TPH_tileno", C.c_int * _JPWL_SPECS), ("jpwl_hprot_TPH", C.c_int * _JPWL_SPECS),
           ("jpwl_pprot_tileno", C.c_int * _JPWL_SPECS), ("jpwl_pprot_packno", C.c_int * _JPWL_SPECS),
           ("jpwl_pprot", C.c_int * _JPWL_SPECS), ("jpwl_sens_size", C.c_int),
           ("jpwl_sens_addr", C.c_int), ("jpwl_sens_range", C.c_int), ("jpwl_sens_MH", C.c_int),
           ("jpwl_sens_TPH_tileno", C.c_int * _JPWL_SPECS), ("jpwl_sens_TPH", C.c_int * _JPWL_SPECS),
           ("cp_cinema", C.c_int), ("max_comp_size", C.c_int), ("cp_rsiz", C.c_int),
           ("tp_on", C.c_char), ("tp_flag", C.c_char), ("tcp_mct", C.c_char), ("jpip_on", C.c_int),
           ("mct_data", C.c_void_p), ("max_cs_size", C.c_int), ("rsiz", C.c_uint16)])


class _ComponentParameters(C.Structure):
    _fields_: ClassVar[list[_Field]] = [(n, _U32) for n in ("dx", "dy", "w", "h", "x0", "y0", "prec", "bpp", "sgnd")]


class _Component(C.Structure):
    _fields_: ClassVar[list[_Field]] = (
        [(n, _U32) for n in ("dx", "dy", "w", "h", "x0", "y0", "prec", "bpp", "sgnd",
                             "resno_decoded", "factor")]
        + [("data", C.POINTER(C.c_int32)), ("alpha", C.c_uint16)])


class _Image(C.Structure):
    _fields_: ClassVar[list[_Field]] = (
        [(n, _U32) for n in ("x0", "y0", "x1", "y1", "numcomps")]
        + [("color_space", C.c_int), ("comps", C.POINTER(_Component)),
           ("icc_profile_buf", C.c_void_p), ("icc_profile_len", _U32)])


_WRITE = C.CFUNCTYPE(C.c_size_t, C.c_void_p, C.c_size_t, C.c_void_p)
_SKIP = C.CFUNCTYPE(C.c_int64, C.c_int64, C.c_void_p)
_SEEK = C.CFUNCTYPE(C.c_int, C.c_int64, C.c_void_p)
_MESSAGE = C.CFUNCTYPE(None, C.c_char_p, C.c_void_p)


class EncodeError(Exception):
    """openjpeg refused the image or its parameters (the message is its own).
    Internal to the codecs: j2k wraps it into a CompressionError."""


def _library_path() -> str | None:
    found = glob.glob(os.path.join(os.path.dirname(os.path.dirname(openjpeg.__file__)), "_openjpeg*"))
    return found[0] if found else None


@lru_cache(maxsize=1)
def _load():
    """The bundled library with typed entry points, or None when it does not
    export openjpeg's API or its parameter layout is not the one above."""
    try:
        lib = C.CDLL(_library_path() or "")
        lib.opj_version.restype = C.c_char_p
        version = lib.opj_version().decode()
    except (OSError, AttributeError):
        return None
    if not version.startswith("2.5."):
        return None
    lib.opj_create_compress.restype = C.c_void_p
    lib.opj_create_compress.argtypes = [C.c_int]
    lib.opj_image_create.restype = C.POINTER(_Image)
    lib.opj_image_create.argtypes = [_U32, C.POINTER(_ComponentParameters), C.c_int]
    lib.opj_image_destroy.argtypes = [C.POINTER(_Image)]
    lib.opj_setup_encoder.argtypes = [C.c_void_p, C.POINTER(_CParameters), C.POINTER(_Image)]
    lib.opj_start_compress.argtypes = [C.c_void_p, C.POINTER(_Image), C.c_void_p]
    lib.opj_encode.argtypes = [C.c_void_p, C.c_void_p]
    lib.opj_end_compress.argtypes = [C.c_void_p, C.c_void_p]
    lib.opj_destroy_codec.argtypes = [C.c_void_p]
    lib.opj_stream_create.restype = C.c_void_p
    lib.opj_stream_create.argtypes = [C.c_size_t, C.c_int]
    lib.opj_stream_destroy.argtypes = [C.c_void_p]
    for name, kind in (("write", _WRITE), ("skip", _SKIP), ("seek", _SEEK)):
        getattr(lib, f"opj_stream_set_{name}_function").argtypes = [C.c_void_p, kind]
    lib.opj_set_error_handler.argtypes = [C.c_void_p, _MESSAGE, C.c_void_p]
    lib.opj_set_default_encoder_parameters.argtypes = [C.POINTER(_CParameters)]
    defaults = _CParameters()
    lib.opj_set_default_encoder_parameters(C.byref(defaults))
    # Fields spread over the whole structure, with openjpeg's documented defaults.
    expected = {"numresolution": _DEFAULT_RESOLUTIONS, "cblockw_init": 64, "cblockh_init": 64,
                "roi_compno": -1, "subsampling_dx": 1, "subsampling_dy": 1, "decod_format": -1,
                "cod_format": -1, "cp_fixed_quality": 0, "tcp_numlayers": 0}
    if any(getattr(defaults, k) != v for k, v in expected.items()):
        return None
    return lib


def available() -> bool:
    return _load() is not None


def _resolutions(rows: int, cols: int) -> int:
    """openjpeg's default, or fewer where the image is too small for it."""
    return max(1, min(_DEFAULT_RESOLUTIONS, int(math.log2(min(rows, cols))) + 1))


def encode(frame: np.ndarray, *, bits_stored: int, mct: bool = False, ratio: float | None = None,
           psnr: float | None = None, code_block_style: int = CBLK_BYPASS) -> bytes:
    """One frame (rows x cols, or rows x cols x samples; 8 or 16 bit,
    signed or not) as a JPEG 2000 codestream: reversible 5/3 unless a
    compression ``ratio`` or a ``psnr`` target asks for the irreversible 9/7
    wavelet.  ``mct`` applies the colour transform (RCT or ICT)."""
    lib = _load()
    if lib is None:
        raise EncodeError("openjpeg's C API is not available")
    if not 1 <= bits_stored <= frame.dtype.itemsize * 8:       # openjpeg itself accepts any precision
        raise EncodeError(f"{bits_stored} bits stored do not fit {frame.dtype.itemsize * 8}-bit samples")
    planes = frame[..., None] if frame.ndim == 2 else frame
    try:
        return _encode_once(lib, planes, bits_stored, mct, ratio, psnr, code_block_style)
    except EncodeError:
        if not code_block_style:
            raise
        # openjpeg 2.5 sizes its packet buffer too small for bypass-coded
        # data that does not compress at all (small noise-like frames); the
        # plain coder always fits.  A failed attempt leaves the image
        # unusable (the single-tile encoder borrows its buffers): start anew.
        return _encode_once(lib, planes, bits_stored, mct, ratio, psnr, 0)


def _encode_once(lib, planes: np.ndarray, bits_stored: int, mct: bool, ratio, psnr, code_block_style: int) -> bytes:
    rows, cols, samples = planes.shape
    image = _image(lib, planes, bits_stored, signed=planes.dtype.kind == "i")
    try:
        return _compress(lib, _parameters(lib, rows, cols, mct and samples == 3, ratio, psnr, code_block_style),
                         image)
    finally:
        lib.opj_image_destroy(image)


def _parameters(lib, rows: int, cols: int, mct: bool, ratio, psnr, code_block_style: int) -> _CParameters:
    params = _CParameters()
    lib.opj_set_default_encoder_parameters(C.byref(params))
    params.cod_format = _CODEC_J2K
    params.numresolution = _resolutions(rows, cols)
    params.mode = code_block_style
    params.tcp_mct = b"\x01" if mct else b"\x00"
    params.tcp_numlayers = 1
    if psnr is not None:
        params.irreversible, params.cp_fixed_quality = 1, 1
        params.tcp_distoratio[0] = psnr
    else:
        params.irreversible = int(ratio is not None)
        params.cp_disto_alloc = 1
        params.tcp_rates[0] = ratio or 0.0       # 0: lossless
    return params


def _image(lib, planes: np.ndarray, bits_stored: int, *, signed: bool):
    rows, cols, samples = planes.shape
    components = (_ComponentParameters * samples)()
    for c in components:
        c.dx = c.dy = 1
        c.w, c.h, c.prec, c.sgnd = cols, rows, bits_stored, int(signed)
    image = lib.opj_image_create(samples, components, _CLRSPC_SRGB if samples == 3 else _CLRSPC_GRAY)
    if not image:
        raise EncodeError("openjpeg could not allocate the image")
    image.contents.x1, image.contents.y1 = cols, rows
    for s in range(samples):
        target = np.ctypeslib.as_array(image.contents.comps[s].data, shape=(rows, cols))
        np.copyto(target, planes[..., s], casting="unsafe")
    return image


def _compress(lib, params: _CParameters, image) -> bytes:
    out = bytearray()
    position = [0]
    errors: list[str] = []

    def write(buffer, size, _user):
        end = position[0] + size
        if end > len(out):
            out.extend(b"\x00" * (end - len(out)))
        out[position[0]:end] = C.string_at(buffer, size)
        position[0] = end
        return size

    def skip(size, _user):
        position[0] += size
        return size

    def seek(offset, _user):
        position[0] = offset
        return 1

    callbacks = (_WRITE(write), _SKIP(skip), _SEEK(seek),
                 _MESSAGE(lambda msg, _u: errors.append(msg.decode(errors="replace").strip())))
    codec = lib.opj_create_compress(_CODEC_J2K)
    stream = lib.opj_stream_create(1 << 20, 0)
    try:
        lib.opj_set_error_handler(codec, callbacks[3], None)
        lib.opj_stream_set_write_function(stream, callbacks[0])
        lib.opj_stream_set_skip_function(stream, callbacks[1])
        lib.opj_stream_set_seek_function(stream, callbacks[2])
        ok = (lib.opj_setup_encoder(codec, C.byref(params), image)
              and lib.opj_start_compress(codec, image, stream)
              and lib.opj_encode(codec, stream)
              and lib.opj_end_compress(codec, stream))
    finally:
        lib.opj_stream_destroy(stream)
        lib.opj_destroy_codec(codec)
    if not ok:
        raise EncodeError("; ".join(errors) or "openjpeg failed to encode the frame")
    return bytes(out)
