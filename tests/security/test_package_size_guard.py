"""pack never writes a ZIP or secure volume that receivers would refuse for
its size (the manifest parse budget of ZipLimits)."""
from __future__ import annotations

import pytest

import dicompack.api as dp
from dicompack.container.zip import ZipLimits
from dicompack.errors import UsageError
from dicompack.packing import refusals


def test_guard_stays_within_the_receivers_manifest_budget():
    # Our manifest costs about 1 KB of parse peak per entry (tests/security/test_memory_bounds.py).
    assert refusals.MAX_INSTANCES_PER_PACKAGE * 1024 <= ZipLimits().max_manifest_memory


def test_too_many_instances_for_one_zip_volume_are_refused(example_corpus, tmp_path, monkeypatch):
    src, info = example_corpus
    monkeypatch.setattr(refusals, "MAX_INSTANCES_PER_PACKAGE", 5)
    with pytest.raises(UsageError, match="use --split"):
        dp.pack([src], tmp_path / "big.zip")
    assert not (tmp_path / "big.zip").exists() and not list(tmp_path.iterdir())
    # A folder has no manifest to parse: not limited.
    assert dp.pack([src], tmp_path / "folder").instances == len(info["instances"])
