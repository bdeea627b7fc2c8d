"""Receive: a ZIP package, staged.  Its structure is validated while it is
extracted into a private folder (names, sizes, CRCs under ZipLimits), then
every entry is hashed against the manifest and the File-set checked."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dicompack.container.manifest import MANIFEST_NAME, parse_manifest
from dicompack.container.zip import ZipLimits, ZipReader, extract_atomically
from dicompack.enums import Severity
from dicompack.fileset.check import check_fileset
from dicompack.output import marked_folder, sweep_stale
from dicompack.report import Finding, Progress


@dataclass
class ZipCheck:
    entries: int = 0
    manifest: dict | None = None
    findings: list[Finding] = field(default_factory=list)
    records: int = 0
    files: int = 0
    fileset_id: str = ""
    digests: dict[str, str] = field(default_factory=dict)


def manifest_findings(digests: dict[str, str], manifest: dict) -> list[Finding]:
    """Compare the SHA-256 of every extracted entry with the manifest's."""
    out = []
    listed = {e["name"] for e in manifest["entries"]}
    for entry in manifest["entries"]:
        digest = digests.get(entry["name"])
        if digest is None:
            out.append(Finding(Severity.ERROR, entry["name"], "listed in the manifest but missing from the ZIP"))
        elif digest != entry["sha256"]:
            out.append(Finding(Severity.ERROR, entry["name"],
                               "SHA-256 differs from the manifest (damaged or altered)"))
    for name in digests:
        if name not in listed and name != MANIFEST_NAME:
            out.append(Finding(Severity.ERROR, name, "in the ZIP but not listed in the manifest"))
    return out


@contextmanager
def staged_zip(src, parent: Path, *, limits: ZipLimits = ZipLimits(), progress: Progress = Progress(None),
               admit: Callable[[], None] | None = None):
    """Extract a ZIP into a private staging folder under ``parent``; yield
    (folder, ZipCheck, reader); remove the staging folder afterwards, always.
    ``admit`` runs once the ZIP's structure is known and before any byte is
    extracted: the receive policy refuses plain ZIPs there."""
    sweep_stale(parent)
    with marked_folder("stage", parent) as staging:
        # Beside the destination (one rename restores it); a marker in the
        # system temporary folder lets any later run sweep it after a SIGKILL.
        with ZipReader(src, limits=limits) as reader:
            result = ZipCheck(entries=len(reader.entries()))
            if admit is not None:
                admit()
            root = staging / "fileset"
            result.digests = extract_atomically(reader, root, on_bytes=None)
            yield root, result, reader


def check_zip_contents(root: Path, reader: ZipReader, result: ZipCheck, progress: Progress,
                       jobs: int | None = None, *, fileset: bool = True) -> None:
    """Fill ``result`` with the manifest and (unless ``fileset`` is False:
    --rebuild) File-set findings of an extracted ZIP."""
    manifest_path = root / MANIFEST_NAME
    if manifest_path.is_file():
        result.manifest = parse_manifest(manifest_path.read_bytes())
        result.findings += manifest_findings(result.digests, result.manifest)
    else:
        result.findings.append(Finding(Severity.WARNING, "ZIP", f"no {MANIFEST_NAME} manifest: not made by "
                                                         "dicompack; integrity rests on CRCs only"))
    if not fileset:
        return
    dd, findings, files = check_fileset(root, jobs=jobs)
    # The manifest is ours and allowed by PS3.12 Annex V; not an orphan.
    result.findings += [f for f in findings if f.where != MANIFEST_NAME]
    result.files = files
    if dd is not None:
        result.records, result.fileset_id = len(dd.records), dd.fileset_id
