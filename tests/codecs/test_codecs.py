"""`--codec htj2k|jpegls`: lossless round trips checked by decoders that
are not ours (OpenJPEG's opj_decompress for HTJ2K, dcmtk's dcmdjpls for
JPEG-LS), dciodvfy, the File-set check, near-lossless bounds, refusals."""
from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array

import dicompack
from dicompack.codecs.choice import Codec, J2KMode, J2KOptions, parse_codec_options, parse_j2k_option
from dicompack.codecs.j2k import _mask
from dicompack.errors import CompressionError, UsageError
from tests.support import synthetic
from tests.support.tools import dciodvfy_errors, require_tool

CASES = {
    "ct16_12bit": dict(bits_allocated=16, bits_stored=12),
    "u16_16bit": dict(bits_allocated=16, bits_stored=16),
    "signed16": dict(bits_allocated=16, bits_stored=16, pixel_representation=1),
    "signed12": dict(bits_allocated=16, bits_stored=12, pixel_representation=1),
    "u8": dict(bits_allocated=8, bits_stored=8),
    "rgb_us": dict(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric="RGB", modality="US"),
    "rgb_planar1": dict(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric="RGB",
                        planar_configuration=1, modality="OT"),
    "ybr_full": dict(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric="YBR_FULL", modality="OT"),
    "odd_multiframe": dict(rows=37, columns=53, frames=3),
}
SYNTAX = {Codec.HTJ2K: "1.2.840.10008.1.2.4.201", Codec.JPEGLS: "1.2.840.10008.1.2.4.80"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("codec-src")
    for n, (name, kw) in enumerate(sorted(CASES.items()), 1):
        kw = {"modality": "CT", **kw}
        ds = synthetic.make_instance(study_uid="1.2.826.0.1.3680043.2.7", series_uid=f"1.2.826.0.1.3680043.2.7.{n}",
                                     sop_uid=f"1.2.826.0.1.3680043.2.7.{n}.1", series_number=n, seed=n, **kw)
        synthetic.write_file(ds, src / f"{name}.dcm", implicit=name == "signed12", big_endian=name == "u8")
    return src


def _pack(src: Path, dest: Path, options: J2KOptions):
    return dicompack.api.pack([src], dest, dicompack.PackOptions(j2k=options, jobs=1))


@pytest.fixture(scope="module", params=[Codec.HTJ2K, Codec.JPEGLS])
def packed(request, source, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"codec-{request.param}") / "out"
    report = _pack(source, out, J2KOptions(J2KMode.LOSSLESS, codec=request.param))
    return request.param, out, report


def _by_uid(folder: Path) -> dict[str, Path]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
            for p in folder.rglob("*") if p.is_file() and p.name != "DICOMDIR"}


def _values(path: Path) -> np.ndarray:
    """Stored values, masked to Bits Stored, no colour conversion (pydicom's own decoders)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return _mask(pixel_array(path, raw=True), ds.BitsStored, ds.PixelRepresentation == 1)


def _expected(path: Path) -> np.ndarray:
    return _values(path)


def test_every_case_is_encoded_with_the_codec(packed):
    codec, out, report = packed
    stage = report.to_dict()["stages"]["j2k"]
    assert stage["encoded_instances"] == len(CASES) and stage["verified"]
    for path in _by_uid(out).values():
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == SYNTAX[codec]
        assert "LossyImageCompression" not in ds or ds.LossyImageCompression == "00"
        if ds.SamplesPerPixel == 3 and ds.PhotometricInterpretation != "YBR_FULL":
            assert ds.PhotometricInterpretation == ("YBR_RCT" if codec == Codec.HTJ2K else "RGB")
            assert ds.PlanarConfiguration == 0


def _ds_frames(path: Path) -> tuple[pydicom.Dataset, list[bytes]]:
    ds = pydicom.dcmread(path)
    return ds, list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


def test_htj2k_frames_decoded_by_opj_decompress_equal_source(packed, source, tmp_path):
    codec, out, _ = packed
    if codec != Codec.HTJ2K:
        pytest.skip("HTJ2K only")
    tool = require_tool("opj_decompress")
    outputs = _by_uid(out)
    for name in CASES:
        ds, frames = _ds_frames(outputs[pydicom.dcmread(source / f"{name}.dcm").SOPInstanceUID])
        spp = int(ds.SamplesPerPixel)
        expected = _expected(source / f"{name}.dcm").reshape(len(frames), ds.Rows, ds.Columns, spp)
        assert len(frames) == int(ds.get("NumberOfFrames", 1))
        for i, frame in enumerate(frames):
            j2c, raw = tmp_path / f"{name}{i}.j2c", tmp_path / f"{name}{i}.rawl"
            j2c.write_bytes(frame)
            subprocess.run([tool, "-i", str(j2c), "-o", str(raw)], check=True, capture_output=True)
            # .rawl: little-endian samples, one component after another
            dtype = expected.dtype.newbyteorder("<")
            planes = np.frombuffer(raw.read_bytes(), dtype=dtype).reshape(spp, ds.Rows, ds.Columns)
            assert np.array_equal(planes.transpose(1, 2, 0), expected[i]), (name, i)


def test_jpegls_files_decoded_by_dcmdjpls_equal_source(packed, source, tmp_path):
    codec, out, _ = packed
    if codec != Codec.JPEGLS:
        pytest.skip("JPEG-LS only")
    tool = require_tool("dcmdjpls")
    outputs = _by_uid(out)
    for name in CASES:
        path = outputs[pydicom.dcmread(source / f"{name}.dcm").SOPInstanceUID]
        native = tmp_path / f"{name}.dcm"
        subprocess.run([tool, str(path), str(native)], check=True, capture_output=True)
        ds = pydicom.dcmread(native)
        assert ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
        got = _values(native)
        assert np.array_equal(got, _expected(source / f"{name}.dcm")), name


def test_pydicom_reads_the_same_values(packed, source):
    _, out, _ = packed
    outputs = _by_uid(out)
    for name in CASES:
        src = source / f"{name}.dcm"
        ours = pydicom.dcmread(outputs[pydicom.dcmread(src).SOPInstanceUID])
        if ours.PhotometricInterpretation == "YBR_RCT":
            continue     # decoded to RGB by the codec: opj_decompress covers these
        got = _values(outputs[ours.SOPInstanceUID])
        assert np.array_equal(got, _expected(src)), name


def _as_dciodvfy_reads(path: Path, tmp_path: Path) -> Path:
    """dciodvfy (dicom3tools here) predates the HTJ2K syntaxes and stops
    at an unknown transfer syntax: the data set is checked under the JPEG 2000
    lossless UID, which has the same encapsulation (dciodvfy does not decode
    pixels).  JPEG-LS it knows."""
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID != SYNTAX[Codec.HTJ2K]:
        return path
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    copy = tmp_path / (path.name + ".as-j2k.dcm")
    ds.save_as(copy)
    return copy


def test_dciodvfy_shows_no_new_errors(packed, source, tmp_path):
    _, out, _ = packed
    outputs = _by_uid(out)
    for name in CASES:
        src = source / f"{name}.dcm"
        before = set(dciodvfy_errors(src))
        after = set(dciodvfy_errors(_as_dciodvfy_reads(outputs[pydicom.dcmread(src).SOPInstanceUID], tmp_path)))
        assert after <= before, (name, after - before)


def test_fileset_check_passes(packed):
    _, out, _ = packed
    report = dicompack.api.check(out)
    assert report.ok, report.findings


@pytest.mark.parametrize("near", [1, 3])
def test_jpegls_near_lossless_bounded_and_marked(source, tmp_path, near):
    out = tmp_path / "out"
    report = _pack(source, out, parse_j2k_option(f"near:{near}", Codec.JPEGLS)).to_dict()
    stage = report["stages"]["j2k"]
    signed = {name for name, kw in CASES.items() if kw.get("pixel_representation")}
    encoded = len(CASES) - len(signed)
    assert stage["encoded_instances"] == encoded and stage["new_sop_instance_uids"] == encoded
    assert stage["kept"] == {"signed pixel data cannot be compressed near-lossless with JPEG-LS: kept as it is": 2}
    by_series = {d.SeriesNumber: d for d in (pydicom.dcmread(p) for p in _by_uid(out).values())}
    for n, name in enumerate(sorted(CASES), 1):
        ds = by_series[n]
        if name in signed:
            assert ds.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.4.81"
            continue
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.81"
        assert ds.LossyImageCompression == "01" and "ISO_14495_1" in ds.LossyImageCompressionMethod
        src = source / f"{name}.dcm"
        assert ds.SOPInstanceUID != pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
        native = tmp_path / f"{name}.dcm"
        subprocess.run([require_tool("dcmdjpls"), str(_path_of(out, ds.SOPInstanceUID)), str(native)],
                       check=True, capture_output=True)
        got = _values(native).astype(np.int64)
        assert np.abs(got - _expected(src).astype(np.int64)).max() <= near, name


def _path_of(out: Path, uid: str) -> Path:
    return _by_uid(out)[uid]


def test_options_and_refusals():
    assert parse_codec_options(None, None) is None
    assert parse_codec_options(None, "lossless") == J2KOptions(J2KMode.LOSSLESS)
    assert parse_codec_options("HTJ2K", None) == J2KOptions(J2KMode.LOSSLESS, codec=Codec.HTJ2K)
    assert parse_codec_options("jpegls", "near:2") == J2KOptions(J2KMode.NEAR, 2.0, codec=Codec.JPEGLS)
    assert parse_j2k_option("ratio:10") == J2KOptions("ratio", 10.0)
    for codec, j2k in [("htj2k", "ratio:10"), ("htj2k", "psnr:40"), ("htj2k", "near:2"), ("jpegls", "ratio:5"),
                       ("j2k", "near:2"), ("jpegls", "near:0.5"), ("jpegls", "near:300"), ("webp", None)]:
        with pytest.raises(UsageError):
            parse_codec_options(codec, j2k)
    with pytest.raises(UsageError, match="htj2k"):
        J2KOptions("ratio", 10.0, codec="htj2k")


@pytest.mark.parametrize("codec", [Codec.HTJ2K, Codec.JPEGLS])
def test_a_differing_round_trip_fails_the_frame(codec, source, tmp_path, monkeypatch):
    """The verification is real: a decoder returning one wrong sample fails the pack (exit 11)."""
    module = importlib.import_module(f"dicompack.codecs.{codec}")
    real = module.decode

    def off_by_one(*args, **kwargs):
        values = real(*args, **kwargs).copy()
        values.flat[0] ^= 1
        return values
    monkeypatch.setattr(module, "decode", off_by_one)
    with pytest.raises(CompressionError, match="lossless round trip differs"):
        _pack(source / "ct16_12bit.dcm", tmp_path / "out", J2KOptions(J2KMode.LOSSLESS, codec=codec))
    # --no-verify does not decode
    _pack(source / "ct16_12bit.dcm", tmp_path / "out2", J2KOptions(J2KMode.LOSSLESS, codec=codec, verify=False))
