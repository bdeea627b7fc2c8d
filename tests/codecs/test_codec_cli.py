"""`dicompack pack --codec`: the command line reaches every codec, names
impossible combinations, and the File-set it writes checks clean."""
from __future__ import annotations

import json

import pytest

from dicompack.standard import HTJ2K_LOSSLESS, JPEG_LS_LOSSLESS
from tests.support.tools import run_cli


@pytest.mark.parametrize(("codec", "syntax"), [("htj2k", HTJ2K_LOSSLESS), ("jpegls", JPEG_LS_LOSSLESS)])
def test_codec_alone_packs_lossless_and_verified(example_corpus, tmp_path, codec, syntax):
    src, _ = example_corpus
    out = tmp_path / "fs"
    proc = run_cli("pack", src, "-o", out, "--codec", codec, "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    j2k = report["stages"]["j2k"]
    assert (j2k["codec"], j2k["mode"], j2k["verified"]) == (codec, "lossless", True)
    assert report["transfer_syntaxes"].get(syntax) == j2k["encoded_instances"] > 0
    assert run_cli("check", out).returncode == 0


@pytest.mark.parametrize("args", [["--codec", "htj2k", "--j2k", "psnr:40"], ["--codec", "htj2k", "--j2k", "ratio:10"],
                                  ["--codec", "webp"], ["--j2k", "near:2"]])
def test_impossible_combinations_are_refused_before_work(example_corpus, tmp_path, args):
    src, _ = example_corpus
    proc = run_cli("pack", src, "-o", tmp_path / "fs", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.decode().count("\n") == 1 and "Traceback" not in proc.stderr.decode()
    assert not (tmp_path / "fs").exists()
