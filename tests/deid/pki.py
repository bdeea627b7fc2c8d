"""A recipient certificate made at test time."""
from __future__ import annotations

from pathlib import Path

from tests.support.pki import make_cert, rsa_key, save


def make_recipient(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa_key()
    save(folder, "reid", key, make_cert("re-identifier", key))
    return folder / "reid.pem", folder / "reid.key"
