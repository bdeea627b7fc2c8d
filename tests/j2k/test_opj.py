"""The ctypes encoder on openjpeg's C API (dicompack.codecs.opj): its layout check,
round trips over shapes/depths/signedness, the coding style it writes (read
back from the codestream's COD marker), and the fallback encoder."""
from __future__ import annotations

import io
import struct

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openjpeg import decode

from dicompack.codecs import opj
from dicompack.codecs.j2k import J2KOptions, encode_pixel_data
from dicompack.scan import scan_file
from tests.support import synthetic


def coding_style(codestream: bytes) -> dict:
    """The COD marker segment (ISO 15444-1 A.6.1) of a codestream."""
    assert codestream[:2] == b"\xff\x4f", "no SOC"
    pos = 2
    while True:
        marker, length = struct.unpack(">HH", codestream[pos:pos + 4])
        if marker == 0xFF52:
            body = codestream[pos + 4:pos + 2 + length]
            return {"layers": struct.unpack(">H", body[2:4])[0], "mct": body[4], "levels": body[5],
                    "code_block_style": body[8], "reversible": body[9] == 1}
        assert marker in (0xFF51, 0xFF5C, 0xFF5D, 0xFF64), hex(marker)   # SIZ, QCD, QCC, COM come first
        pos += 2 + length


def test_layout_recognised_here():
    """Without it every pack silently falls back to the slower coder."""
    assert opj.available()


def test_lossless_grey_uses_bypass_and_5_3():
    frame = synthetic.phantom_pixels(rows=64, columns=64)[0]
    style = coding_style(opj.encode(frame, bits_stored=12))
    assert style == {"layers": 1, "mct": 0, "levels": 5, "code_block_style": opj.CBLK_BYPASS, "reversible": True}


def test_rgb_gets_the_colour_transform_and_lossy_gets_9_7():
    rgb = synthetic.phantom_pixels(rows=32, columns=32, bits_allocated=8, bits_stored=8, samples_per_pixel=3,
                                   photometric="RGB")[0]
    assert coding_style(opj.encode(rgb, bits_stored=8, mct=True))["mct"] == 1
    lossy = coding_style(opj.encode(rgb, bits_stored=8, mct=True, ratio=10))
    assert lossy["mct"] == 1 and not lossy["reversible"]


def test_small_images_get_fewer_resolutions():
    frame = np.arange(15, dtype=np.uint8).reshape(3, 5)
    codestream = opj.encode(frame, bits_stored=8)
    assert coding_style(codestream)["levels"] == 1                      # 3 rows: one decomposition at most
    assert np.array_equal(decode(codestream).reshape(frame.shape), frame)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 70), cols=st.integers(1, 70), samples=st.sampled_from([1, 3]),
       depth=st.sampled_from([(np.uint8, 8), (np.int8, 8), (np.uint16, 12), (np.uint16, 16), (np.int16, 16),
                              (np.int16, 11)]), seed=st.integers(0, 2 ** 32 - 1))
def test_lossless_round_trip_any_frame(rows, cols, samples, depth, seed):
    dtype, bits = depth
    signed = np.dtype(dtype).kind == "i"
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    shape = (rows, cols) if samples == 1 else (rows, cols, 3)
    frame = np.random.default_rng(seed).integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    codestream = opj.encode(frame, bits_stored=bits, mct=samples == 3)
    assert np.array_equal(decode(codestream).reshape(shape), frame)


def test_fallback_encoder_when_the_api_is_unusable(tmp_path, monkeypatch):
    """Where the C API cannot be bound, pylibjpeg-openjpeg's encoder is used:
    still lossless, without bypass."""
    monkeypatch.setattr(opj, "available", lambda: False)
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1", rows=48, columns=40)
    path = synthetic.write_file(ds, tmp_path / "a.dcm")
    header = pydicom.dcmread(path, stop_before_pixels=True)
    out = io.BytesIO()
    with open(path, "rb") as src:
        encode_pixel_data(src, scan_file(str(path)).pixel_offset, header, "1.2.840.10008.1.2.1",
                          J2KOptions("lossless"), out, where="a.dcm")
    fragment = out.getvalue()[12 + 8 + 4 + 8:]            # element header, offset table, first item header
    codestream = fragment[:fragment.rindex(b"\xff\xd9") + 2]
    assert coding_style(codestream)["code_block_style"] == 0
    assert np.array_equal(decode(codestream).reshape(48, 40), ds.pixel_array)


@pytest.mark.parametrize("bits", [0, 17])
def test_impossible_precision_is_refused(bits):
    """openjpeg would write such a codestream without complaint."""
    with pytest.raises(opj.EncodeError, match="bits stored"):
        opj.encode(np.zeros((8, 8), np.uint16), bits_stored=bits)


def test_incompressible_frames_still_encode():
    """openjpeg's bypass coder overflows its packet buffer on noise; the
    frame is then coded without bypass instead of failing the pack."""
    noise = np.random.default_rng(0).integers(0, 65535, size=(4, 4, 3), endpoint=True).astype(np.uint16)
    codestream = opj.encode(noise, bits_stored=16, mct=True)
    assert coding_style(codestream)["code_block_style"] == 0
    assert np.array_equal(decode(codestream).reshape(noise.shape), noise)
