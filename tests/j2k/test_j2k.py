"""`pack --j2k`: lossless round trips checked by two independent decoders,
lossy bookkeeping, references, refusals."""
from __future__ import annotations

import json
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import RLELossless

import dicompack
from dicompack.codecs.j2k import J2KOptions, _mask, encode_pixel_data
from dicompack.scan import scan_file
from tests.support import synthetic
from tests.support.tools import dciodvfy_errors, require_tool, run_cli

CASES = {
    "ct16_12bit": dict(bits_allocated=16, bits_stored=12),
    "signed16": dict(bits_allocated=16, bits_stored=16, pixel_representation=1),
    "signed12": dict(bits_allocated=16, bits_stored=12, pixel_representation=1),
    "u8": dict(bits_allocated=8, bits_stored=8),
    "mono1": dict(bits_allocated=16, bits_stored=10, photometric="MONOCHROME1"),
    "rgb_planar0": dict(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric="RGB", modality="OT"),
    "rgb_planar1": dict(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric="RGB",
                        planar_configuration=1, modality="OT"),
    "ybr_full": dict(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric="YBR_FULL", modality="OT"),
    "odd_multiframe": dict(rows=37, columns=53, frames=4),
}


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("j2k")
    src = root / "src"
    for n, (name, kw) in enumerate(sorted(CASES.items()), 1):
        kw = {"modality": "CT", **kw}
        ds = synthetic.make_instance(study_uid="1.2.826.0.1.3680043.2.1", series_uid=f"1.2.826.0.1.3680043.2.1.{n}",
                                     sop_uid=f"1.2.826.0.1.3680043.2.1.{n}.1", series_number=n, seed=n, **kw)
        synthetic.write_file(ds, src / f"{name}.dcm", implicit=name == "signed12",
                             big_endian=name == "u8")
    out = root / "out"
    report = json.loads(run_cli("pack", src, "-o", out, "--j2k", "lossless", "--json", check=True).stdout)
    return src, out, report


def _by_uid(folder: Path) -> dict[str, Path]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
            for p in folder.rglob("*") if p.is_file() and p.name != "DICOMDIR"}


def test_every_case_round_trips_with_pydicom(packed):
    src, out, report = packed
    assert report["stages"]["j2k"]["encoded_instances"] == len(CASES)
    outputs = _by_uid(out)
    for name in CASES:
        source = pydicom.dcmread(src / f"{name}.dcm")
        ours = pydicom.dcmread(outputs[source.SOPInstanceUID])
        assert ours.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90", name
        expected = _mask(source.pixel_array, source.BitsStored, source.PixelRepresentation == 1)
        got = ours.pixel_array
        if source.PhotometricInterpretation == "RGB":
            assert ours.PhotometricInterpretation == "YBR_RCT"
        assert np.array_equal(got, expected), name


def _fragments(path: Path) -> list[bytes]:
    ds = pydicom.dcmread(path)
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


def test_independent_decoder_opj_decompress(packed, tmp_path):
    tool = require_tool("opj_decompress")
    src, out, _ = packed
    outputs = _by_uid(out)
    for name in ("ct16_12bit", "signed16", "u8", "odd_multiframe"):
        source = pydicom.dcmread(src / f"{name}.dcm")
        frames = _fragments(outputs[source.SOPInstanceUID])
        expected = _mask(source.pixel_array, source.BitsStored, source.PixelRepresentation == 1)
        expected = expected.reshape(len(frames), source.Rows, source.Columns)
        for i, codestream in enumerate(frames):
            j2c, raw = tmp_path / f"{name}{i}.j2c", tmp_path / f"{name}{i}.rawl"
            j2c.write_bytes(codestream)
            subprocess.run([tool, "-i", str(j2c), "-o", str(raw)], check=True, capture_output=True)
            dtype = {8: "u1", 16: "<u2"}[source.BitsAllocated]
            if source.PixelRepresentation:
                dtype = "<i2"
            decoded = np.frombuffer(raw.read_bytes(), dtype=dtype).reshape(source.Rows, source.Columns)
            assert np.array_equal(decoded, expected[i]), (name, i)


def test_independent_decoder_ffmpeg(packed, tmp_path):
    """FFmpeg's own JPEG 2000 decoder (no openjpeg code) reads our
    bypass-coded codestreams exactly: grey 8/12/16 bits, RGB with the RCT."""
    tool = require_tool("ffmpeg")
    src, out, _ = packed
    outputs = _by_uid(out)
    for name, pix, dtype in (("ct16_12bit", "gray16le", "<u2"), ("u8", "gray", "u1"),
                             ("odd_multiframe", "gray16le", "<u2"), ("rgb_planar0", "rgb24", "u1")):
        source = pydicom.dcmread(src / f"{name}.dcm")
        frames = _fragments(outputs[source.SOPInstanceUID])
        expected = _mask(source.pixel_array, source.BitsStored, False).reshape(len(frames), source.Rows,
                                                                              source.Columns, -1)
        for i, codestream in enumerate(frames):
            j2c, raw = tmp_path / f"{name}{i}.j2c", tmp_path / f"{name}{i}.raw"
            j2c.write_bytes(codestream)
            subprocess.run([tool, "-v", "error", "-y", "-f", "j2k_pipe", "-i", str(j2c), "-f", "rawvideo",
                            "-pix_fmt", pix, str(raw)], check=True, capture_output=True)
            decoded = np.frombuffer(raw.read_bytes(), dtype=dtype).reshape(expected[i].shape)
            if pix == "gray16le":             # FFmpeg scales samples up to 16 bits
                decoded = decoded >> (16 - source.BitsStored)
            assert np.array_equal(decoded, expected[i]), (name, i)


def test_dicomdir_and_files_stay_valid(packed):
    src, out, _ = packed
    assert dciodvfy_errors(out / "DICOMDIR") == []
    outputs = _by_uid(out)
    source = pydicom.dcmread(src / "ct16_12bit.dcm")
    before = dciodvfy_errors(src / "ct16_12bit.dcm")
    assert dciodvfy_errors(outputs[source.SOPInstanceUID]) == before
    dump = subprocess.run([require_tool("dcmdump"), str(outputs[source.SOPInstanceUID])],
                          capture_output=True, encoding="latin-1").stdout
    assert "JPEG2000LosslessOnly" in dump or "1.2.840.10008.1.2.4.90" in dump
    assert "pi (fffe,e000)" in dump.lower() or "Item" in dump
    listing = json.loads(run_cli("ls", out, "--json", check=True).stdout)
    syntaxes = {ts for p in listing["patients"] for st in p["studies"] for se in st["series"]
                for ts in se["transfer_syntaxes"]}
    assert syntaxes == {"1.2.840.10008.1.2.4.90"}


def test_lossy_psnr_new_uids_and_references(example_corpus, tmp_path):
    src, info = example_corpus
    out = tmp_path / "lossy"
    report = json.loads(run_cli("pack", src, "-o", out, "--j2k", "psnr:45", "--json", check=True).stdout)
    stage = report["stages"]["j2k"]
    assert stage["min_psnr"] >= 45 and stage["new_sop_instance_uids"] == stage["encoded_instances"] > 0
    outputs = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in out.rglob("IM*")}
    lossy = {str(ds.SOPInstanceUID) for ds in outputs.values() if ds.get("LossyImageCompression") == "01"}
    assert lossy and not lossy & set(info["instances"])
    for ds in outputs.values():
        if ds.get("LossyImageCompression") == "01":
            assert ds.LossyImageCompressionMethod == "ISO_15444_1"
            assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"
    sr = next(ds for ds in outputs.values() if ds.Modality == "SR")
    refs = {str(item.ReferencedSOPInstanceUID)
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert refs and refs <= {str(ds.SOPInstanceUID) for ds in outputs.values()}
    assert json.loads(run_cli("check", out, "--json").stdout)["ok"]


def test_lossy_on_lossy_refused(tmp_path):
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1")
    ds.LossyImageCompression = "01"
    synthetic.write_file(ds, tmp_path / "src" / "a.dcm")
    proc = run_cli("pack", tmp_path / "src", "-o", tmp_path / "out", "--j2k", "ratio:10")
    assert proc.returncode == 11 and b"already lossy" in proc.stderr
    assert not (tmp_path / "out").exists()
    run_cli("pack", tmp_path / "src", "-o", tmp_path / "out", "--j2k", "ratio:10", "--force-lossy", check=True)


def test_bad_option():
    proc = run_cli("pack", ".", "-o", "/tmp/never-written", "--j2k", "ratio:abc")
    assert proc.returncode == 2 and b"--j2k" in proc.stderr


def _rle_source(path: Path, frames: int = 3) -> Path:
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.9", frames=frames,
                                 rows=48, columns=40)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    synthetic.write_file(ds, path)
    return path


def test_transcode_rle_losslessly(tmp_path):
    src = _rle_source(tmp_path / "src" / "rle.dcm")
    out = tmp_path / "out"
    kept = json.loads(run_cli("pack", src.parent, "-o", tmp_path / "kept", "--j2k", "lossless", "--json",
                              check=True).stdout)
    assert kept["stages"]["j2k"]["encoded_instances"] == 0 and "--transcode" in str(kept["stages"]["j2k"]["kept"])
    report = json.loads(run_cli("pack", src.parent, "-o", out, "--j2k", "lossless", "--transcode", "--json",
                                check=True).stdout)
    assert report["stages"]["j2k"]["encoded_instances"] == 1
    ours = pydicom.dcmread(next(out.rglob("IM*")))
    assert ours.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert np.array_equal(ours.pixel_array, pydicom.dcmread(src).pixel_array)


def test_corrupt_compressed_frame_is_named(tmp_path):
    src = _rle_source(tmp_path / "src" / "rle.dcm")
    ds = pydicom.dcmread(src)
    frames = list(generate_frames(ds.PixelData, number_of_frames=3))
    frames[1] = frames[1][:64] + b"\x7f" * 8          # a damaged RLE segment in frame 2
    ds.PixelData = encapsulate(frames)
    ds.save_as(src, enforce_file_format=True)
    proc = run_cli("pack", src.parent, "-o", tmp_path / "out", "--j2k", "lossless", "--transcode")
    assert proc.returncode == 11, proc.stderr
    line = proc.stderr.decode().strip()
    assert "rle.dcm frame 2" in line and len(line.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_big_multiframe_encodes_frame_by_frame(tmp_path):
    """A 48 MB instance: traced memory stays near one frame, not the instance."""
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.7", frames=96,
                                 rows=512, columns=512)
    path = synthetic.write_file(ds, tmp_path / "big.dcm")
    del ds
    scan = scan_file(str(path))
    header = pydicom.dcmread(path, stop_before_pixels=True)
    tracemalloc.start()
    with open(path, "rb") as src, open(tmp_path / "out.bin", "w+b") as out:
        result = encode_pixel_data(src, scan.pixel_offset, header, scan.transfer_syntax, J2KOptions("lossless"),
                                   out, where="big.dcm")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.frames == 96 and result.source_bytes == 96 * 512 * 512 * 2
    assert peak < 8 << 20, f"peak {peak >> 20} MB for a {result.source_bytes >> 20} MB instance"


def test_progress_moves_frame_by_frame(tmp_path):
    """One 32 MB multi-frame instance: the compress stage reports source
    bytes before the instance is done (workers count frames)."""
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.8", frames=64,
                                 rows=512, columns=512)
    synthetic.write_file(ds, tmp_path / "src" / "big.dcm")
    events = []
    dicompack.pack([tmp_path / "src"], tmp_path / "out",
                   dicompack.PackOptions(j2k=J2KOptions("lossless"), jobs=2, progress=events.append))
    compress = [e for e in events if e.stage == "compress"]
    assert any(e.files_done == 0 and 0 < e.bytes_done < e.bytes_total for e in compress), compress[:3]
    assert compress[-1].files_done == 1 and compress[-1].bytes_done == compress[-1].bytes_total
