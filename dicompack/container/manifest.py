"""The package manifest: a non-DICOM entry (allowed by PS3.12 Annex V) that
lists every entry's size and SHA-256 and summarizes the File-set, so that
`verify` can name exactly which file is damaged."""
from __future__ import annotations

import json
import re

from dicompack._version import __version__
from dicompack.container.zip import MANIFEST_NAME, ZipLimits
from dicompack.errors import PackageInvalidError, UnsafeArchiveError

FORMAT = "dicompack-manifest"


def build_manifest(entries, *, package_uid: str, fileset_summary: dict, volume=(1, 1)) -> bytes:
    """Deterministic JSON (sorted keys, entries in archive order)."""
    doc = {"format": FORMAT, "version": 1, "package_uid": package_uid,
           "created_by": f"dicompack {__version__}",
           "volume": {"index": volume[0], "count": volume[1]},
           "fileset": fileset_summary,
           "entries": [{"name": e.name, "size": e.size, "sha256": e.sha256} for e in entries]}
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


def parse_manifest(data: bytes, limits: ZipLimits | None = None) -> dict:
    """The manifest, checked: its size and the number of JSON values in it
    are bounded before parsing (json.loads turns 3 bytes of '[],' into a
    64-byte object), nesting after, and so is the shape of every field the
    receiving side reads."""
    limits = limits or ZipLimits()
    if len(data) > limits.max_manifest_size:
        raise UnsafeArchiveError(f"manifest of {len(data)} bytes exceeds the limit of "
                                 f"{limits.max_manifest_size} bytes", where=MANIFEST_NAME)
    # Each '{', '[', ',' or ':' starts at most one value or key; ours has one
    # every ~21 bytes.  Counting them is cheap and never looks inside strings,
    # so it can only overcount.
    tokens = sum(data.count(c) for c in (b"{", b"[", b",", b":"))
    if tokens > len(data) // limits.manifest_bytes_per_value + 64:
        raise UnsafeArchiveError("manifest holds more JSON values than its size allows", where=MANIFEST_NAME)
    # What parsing would hold at its peak: the bytes, their decoded text, and
    # ~100 bytes of Python objects per value (a short str or a dict slot).
    # At the size cap, short values would take 260 MB; ours takes ~1 KB an
    # entry, so this admits ours up to ~110,000 entries.
    needed = 2 * len(data) + _BYTES_PER_PARSED_VALUE * tokens
    if needed > limits.max_manifest_memory:
        raise UnsafeArchiveError(f"manifest would take about {needed >> 20} MiB to parse, above the limit of "
                                 f"{limits.max_manifest_memory >> 20} MiB (use --split for more entries)",
                                 where=MANIFEST_NAME)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        # ValueError besides JSONDecodeError: an integer of more digits than
        # Python converts (sys.get_int_max_str_digits).
        raise PackageInvalidError(f"manifest is not valid JSON: {_one_line(exc)}", where=MANIFEST_NAME) from None
    except RecursionError:
        doc = None
    if doc is None or _nesting_depth(doc) > limits.max_manifest_depth:
        raise UnsafeArchiveError(f"manifest nests deeper than {limits.max_manifest_depth} levels",
                                 where=MANIFEST_NAME)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
        raise PackageInvalidError("not a dicompack manifest of version 1", where=MANIFEST_NAME)
    entries = doc.get("entries")
    if not isinstance(entries, list) or not all(_valid_entry(e) for e in entries):
        raise PackageInvalidError("manifest entries are malformed", where=MANIFEST_NAME)
    volume = doc.get("volume", {})
    if (not isinstance(doc.get("package_uid", ""), str) or not isinstance(doc.get("fileset", {}), dict)
            or not isinstance(volume, dict)
            or not all(type(volume.get(k, 1)) is int for k in ("index", "count"))):
        raise PackageInvalidError("manifest package UID, File-set summary or volume is malformed",
                                  where=MANIFEST_NAME)
    return doc


_SHA256 = re.compile(r"[0-9a-f]{64}")
_BYTES_PER_PARSED_VALUE = 100


def _one_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _valid_entry(e) -> bool:
    return (isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"].isprintable()
            and type(e.get("size")) is int and e["size"] >= 0
            and isinstance(e.get("sha256"), str) and bool(_SHA256.fullmatch(e["sha256"])))


def _nesting_depth(doc) -> int:
    """Deepest nesting of lists and objects, walked without recursion so the
    check itself cannot overflow the stack."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return deepest
