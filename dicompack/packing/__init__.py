"""Packing: scan -> transform -> layout -> emit (folder, ZIP, secure package, volumes)."""
from dicompack.packing.pipeline import pack

__all__ = ["pack"]
