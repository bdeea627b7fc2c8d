"""Receiving packages: verify a ZIP package (structure, CRCs, manifest
hashes, the packaged File-set) and restore it atomically.

Nothing is restored before everything is verified: entries are extracted
into a private staging folder beside the destination, checked there, and the
folder is renamed into place only when every check passed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .check import check_fileset
from .container.manifest import MANIFEST_NAME, parse_manifest
from .container.zip import ZipLimits, ZipReader, extract_atomically
from .dicomdir import Finding
from .errors import PackageInvalidError, UsageError
from .output import sweep_stale, temp_prefix
from .report import Progress

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def sniff(path: Path) -> str:
    """'zip', 'cms' or 'fileset' — by content, not by name."""
    if path.is_dir():
        return "fileset"
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] in ZIP_MAGIC:
        return "zip"
    if head[:1] == b"\x30":
        return "cms"
    if path.name.upper() == "DICOMDIR":
        return "fileset"
    raise PackageInvalidError("not a dicompack package, ZIP, CMS file or File-set", where=str(path))


@dataclass
class ZipCheck:
    entries: int = 0
    manifest: dict | None = None
    findings: list[Finding] = field(default_factory=list)
    records: int = 0
    files: int = 0
    fileset_id: str = ""
    digests: dict[str, str] = field(default_factory=dict)


def _manifest_findings(digests: dict[str, str], manifest: dict) -> list[Finding]:
    """Compare the SHA-256 of every extracted entry with the manifest's."""
    out = []
    listed = {e["name"] for e in manifest["entries"]}
    for entry in manifest["entries"]:
        digest = digests.get(entry["name"])
        if digest is None:
            out.append(Finding("error", entry["name"], "listed in the manifest but missing from the ZIP"))
        elif digest != entry["sha256"]:
            out.append(Finding("error", entry["name"], "SHA-256 differs from the manifest (damaged or altered)"))
    for name in digests:
        if name not in listed and name != MANIFEST_NAME:
            out.append(Finding("error", name, "in the ZIP but not listed in the manifest"))
    return out


@contextmanager
def staged_zip(src, parent: Path, *, limits: ZipLimits = ZipLimits(), progress: Progress = Progress(None)):
    """Extract a ZIP into a private staging folder under ``parent``; yield
    (folder, ZipCheck); remove the staging folder afterwards, always."""
    sweep_stale(parent)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix("stage"), dir=parent))
    reader = None
    try:
        reader = ZipReader(src, limits=limits)
        result = ZipCheck(entries=len(reader.entries()))
        root = staging / "fileset"
        result.digests = extract_atomically(reader, root, on_bytes=None)
        yield root, result, reader
    finally:
        if reader is not None:
            reader.close()
        shutil.rmtree(staging, ignore_errors=True)


def check_zip_contents(root: Path, reader: ZipReader, result: ZipCheck, progress: Progress,
                       jobs: int | None = None) -> None:
    """Fill ``result`` with the manifest and File-set findings of an extracted ZIP."""
    manifest_path = root / MANIFEST_NAME
    if manifest_path.is_file():
        result.manifest = parse_manifest(manifest_path.read_bytes())
        result.findings += _manifest_findings(result.digests, result.manifest)
    else:
        result.findings.append(Finding("warning", "ZIP", f"no {MANIFEST_NAME} manifest: not made by "
                                                         "dicompack; integrity rests on CRCs only"))
    dd, findings, files = check_fileset(root, jobs=jobs)
    # The manifest is ours and allowed by PS3.12 Annex V; not an orphan.
    result.findings += [f for f in findings if f.where != MANIFEST_NAME]
    result.files = files
    if dd is not None:
        result.records, result.fileset_id = len(dd.records), dd.fileset_id


def restore(root: Path, dest: Path) -> None:
    """Move a verified staging folder into place."""
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    elif dest.exists():
        shutil.rmtree(dest)
    os.rename(root, dest)


def require_parent(dest: Path) -> Path:
    parent = dest.resolve().parent
    if not parent.is_dir():
        raise UsageError("parent folder does not exist", where=str(dest))
    return parent
