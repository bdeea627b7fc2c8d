"""A recipient certificate made at test time."""
from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..test_secure import _cert, _save


def make_recipient(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _save(folder, "reid", key, _cert("re-identifier", key))
    return folder / "reid.pem", folder / "reid.key"
