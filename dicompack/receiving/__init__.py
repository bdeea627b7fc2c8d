"""Receiving packages: verify, unpack (volumes, secure File-sets, rebuild),
re-identify.  Nothing is restored before everything is verified."""
from dicompack.receiving.open import fileset_root
from dicompack.receiving.reidentify import reidentify
from dicompack.receiving.sources import verify
from dicompack.receiving.unpack import unpack

__all__ = ["fileset_root", "reidentify", "unpack", "verify"]
