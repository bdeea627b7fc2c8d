"""File-sets (PS3.10): the layout of scanned instances into records and
File IDs, duplicates, volumes, the files on disk, the check, the FSU
update of a DICOMDIR, the application profile and the listing of what a File-set holds.

The DICOMDIR records and codec (``fileset.records``, ``fileset.dicomdir``)
sit a layer below the rest (spec/architecture.md) and import nothing from
it.  So the names below are loaded on first use, not here: importing
``fileset.records`` runs this file first, and ``dicompack.scan`` imports
``fileset.records`` while ``fileset.layout`` imports ``dicompack.scan`` --
loading them eagerly would be an import cycle.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicompack.fileset.check import check_fileset
    from dicompack.fileset.duplicates import DuplicateOutcome, resolve_duplicates
    from dicompack.fileset.files import ZERO_PREAMBLE, copy_instance, leaf_path, sha256_file
    from dicompack.fileset.layout import (
        Layout,
        plan_layout,
        release_key_values,
        valid_file_id,
        validate_fileset_id,
    )
    from dicompack.fileset.listing import list_index
    from dicompack.fileset.profile import application_profile
    from dicompack.fileset.update import build_dicomdir, merge_records, refuse_lossy_update, updated_index
    from dicompack.fileset.volumes import VolumePlan, VolumeTooSmall, split_volumes, volume_name

# public name -> the module that defines it
_HOME = {
    "check_fileset": "check", "list_index": "listing", "application_profile": "profile",
    "DuplicateOutcome": "duplicates", "resolve_duplicates": "duplicates",
    "ZERO_PREAMBLE": "files", "copy_instance": "files", "leaf_path": "files", "sha256_file": "files",
    "Layout": "layout", "plan_layout": "layout", "release_key_values": "layout",
    "valid_file_id": "layout", "validate_fileset_id": "layout",
    "build_dicomdir": "update", "merge_records": "update", "refuse_lossy_update": "update",
    "updated_index": "update",
    "VolumePlan": "volumes", "VolumeTooSmall": "volumes", "split_volumes": "volumes", "volume_name": "volumes",
}

__all__ = [
    "ZERO_PREAMBLE",
    "DuplicateOutcome",
    "Layout",
    "VolumePlan",
    "VolumeTooSmall",
    "application_profile",
    "build_dicomdir",
    "check_fileset",
    "copy_instance",
    "leaf_path",
    "list_index",
    "merge_records",
    "plan_layout",
    "refuse_lossy_update",
    "release_key_values",
    "resolve_duplicates",
    "sha256_file",
    "split_volumes",
    "updated_index",
    "valid_file_id",
    "validate_fileset_id",
    "volume_name",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value     # later uses find it without this call
    return value
