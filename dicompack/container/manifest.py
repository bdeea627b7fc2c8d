"""The package manifest: a non-DICOM entry (allowed by PS3.12 Annex V) that
lists every entry's size and SHA-256 and summarizes the File-set, so that
`verify` can name exactly which file is damaged."""
from __future__ import annotations

import json

from .. import __version__
from ..errors import PackageInvalidError

MANIFEST_NAME = "DICOMPACK.JSON"
FORMAT = "dicompack-manifest"


def build_manifest(entries, *, package_uid: str, fileset_summary: dict, volume=(1, 1)) -> bytes:
    """Deterministic JSON (sorted keys, entries in archive order)."""
    doc = {"format": FORMAT, "version": 1, "package_uid": package_uid,
           "created_by": f"dicompack {__version__}",
           "volume": {"index": volume[0], "count": volume[1]},
           "fileset": fileset_summary,
           "entries": [{"name": e.name, "size": e.size, "sha256": e.sha256} for e in entries]}
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


def parse_manifest(data: bytes) -> dict:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageInvalidError(f"manifest is not valid JSON: {exc}", where=MANIFEST_NAME) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
        raise PackageInvalidError("not a dicompack manifest of version 1", where=MANIFEST_NAME)
    entries = doc.get("entries")
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("size"), int)
            and isinstance(e.get("sha256"), str) for e in entries):
        raise PackageInvalidError("manifest entries are malformed", where=MANIFEST_NAME)
    return doc
