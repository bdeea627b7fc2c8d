"""Fixtures shared by the attack tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pki import standard_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """The standard test PKI (tests/support/pki.py), made once per module;
    modules that need extra certificates define their own ``pki``."""
    return standard_pki(tmp_path_factory.mktemp("pki"))
