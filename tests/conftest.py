"""Shared fixtures: real files on disk, real external tools."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import synthetic
from tests.support.tools import dciodvfy_errors, require_tool, run_cli, tree_digest  # noqa: F401  (re-exported)


@pytest.fixture(scope="session")
def example_corpus(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("example") / "messy"
    info = synthetic.make_example_corpus(root)
    return root, info


@pytest.fixture(scope="session")
def packed_example(example_corpus, tmp_path_factory) -> Path:
    src, _ = example_corpus
    out = tmp_path_factory.mktemp("packed") / "fileset"
    run_cli("pack", src, "-o", out, "--fileset-id", "EXAMPLE", "-q", check=True)
    return out


# Suites marked by the folder they live in: `-m "not interop"` and the
# like select them without a decorator in every module.
_FOLDER_MARKS = {"interop", "robustness", "security", "realworld"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        folder = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
        if folder in _FOLDER_MARKS:
            item.add_marker(folder)
