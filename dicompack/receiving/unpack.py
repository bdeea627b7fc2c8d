"""Receive: unpack.  Every source is verified into a private staging
folder beside the destination; only when all are verified is the result
renamed (or merged, or rebuilt into a conformant File-set) into place."""
from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from dicompack.enums import PackageKind
from dicompack.errors import DicompackError, UsageError
from dicompack.options import PackOptions, ReceiveOptions
from dicompack.output import _replace, check_destination
from dicompack.packing.pipeline import pack
from dicompack.receiving.open import as_path, label_of
from dicompack.receiving.policy import policy_for
from dicompack.receiving.sources import ReceivedUnpackReport, open_source
from dicompack.receiving.volumes import (
    check_instance_counts,
    check_volume_set,
    instance_conflicts,
    raise_errors,
    same_protection_everywhere,
)
from dicompack.report import PackReport, Progress, UnpackReport


def unpack(src, dest, options: ReceiveOptions, *, force: bool = False, rebuild: bool = False) -> UnpackReport:
    """Verify, then restore a package's File-set at ``dest`` atomically.

    ``src`` may be a list of volumes (NAME-1ofN ...): every one is verified
    under the receive policy, all must share one package UID and be
    complete, and are merged into one File-set (an instance two volumes
    carry with different bytes refuses the merge).  With ``rebuild`` a
    foreign ZIP (no DICOMDIR, DICOMDIR in a subfolder, non-conformant names)
    is turned into a conformant File-set instead; a dicompack manifest it
    carries must still match.
    """
    given = list(src) if isinstance(src, (list, tuple)) else [src]
    with ExitStack() as stack:
        items = [(as_path(one, stack), label_of(one)) for one in given]

        def rebuild_into(roots: list[Path], target: Path, label: str) -> PackReport:
            labels = [one for _, one in items] if len(items) == len(roots) else [label] * len(roots)
            return _pack_staged(roots, labels, target, options, force=force, rebuild=rebuild)
        return _unpack_items(items, Path(dest), options, force=force, rebuild=rebuild, stack=stack,
                             rebuild_into=rebuild_into)


def _pack_staged(roots: list[Path], labels: list[str], target: Path, options: ReceiveOptions, *,
                 force: bool, rebuild: bool) -> PackReport:
    """Pack verified staging folders into one conformant File-set.  The
    roots are private staging folders: every path pack reports under one
    is named "<package>: <entry>" instead."""
    rename = staged_names(roots, labels)
    try:
        report = pack(roots, target, PackOptions(force=force, jobs=options.jobs, skip_invalid=rebuild,
                                                 progress=options.progress))
    except DicompackError as err:
        raise _renamed(err, rename) from None
    for name in ("skipped", "invalid", "duplicates_collapsed", "fixes", "warnings"):
        for problem in getattr(report, name, []):
            problem.path = rename(problem.path)
    return report


def _renamed(err: DicompackError, rename: Callable[[str | None], str | None]) -> DicompackError:
    """A copy of ``err`` naming staged paths as the user knows them (the
    raised error itself is never changed)."""
    renamed = err.at(rename(err.where))
    renamed.problems = [(rename(where) or where, what) for where, what in err.problems]
    return renamed


def _unpack_items(items: list[tuple[Path, str]], dest: Path, options: ReceiveOptions, *, force: bool,
                  rebuild: bool, stack: ExitStack,
                  rebuild_into: Callable[[list[Path], Path, str], PackReport]) -> ReceivedUnpackReport:
    """Verify every source under the receive policy, then restore: one
    package is renamed into place; several volumes, or --rebuild, are packed
    into one conformant File-set by ``rebuild_into(roots, dest, label)``."""
    policy = policy_for(options)
    progress = Progress(options.progress)
    check_destination(dest, force=force)
    parent = require_parent(dest)
    sources = [open_source(path, label, options, policy, stack, parent, progress, fileset=not rebuild)
               for path, label in items]
    for s in sources:
        if s.report.kind == PackageKind.FILESET:
            raise UsageError("unpack takes a ZIP, a secure package or a folder of Secure DICOM Files",
                             where=s.label)
        raise_errors(s)      # with --rebuild: manifest and integrity errors only
    same_protection_everywhere(sources)
    check_volume_set(sources, rebuild=rebuild)
    expected = check_instance_counts(sources)
    label = ", ".join(s.label for s in sources)
    collapsed: list[str] = []
    if not rebuild and len(sources) > 1:
        collapsed = instance_conflicts(sources)
    if rebuild or len(sources) > 1:
        packed = rebuild_into([s.root for s in sources], dest, label)
        verify = {"volumes": [s.report.to_dict() for s in sources], "pack": packed.to_dict(),
                  "duplicates_collapsed": collapsed, "instances_expected": expected}
        files = packed.instances
    else:
        progress("restore", 0, 1)
        restore(sources[0].root, dest)
        progress("restore", 1, 1)
        verify, files = sources[0].report.to_dict(), sources[0].report.files
    # Merging and rebuilding keep DICOM instances only: a plain descriptor is not restored then.
    unverified = sources[0].report.unverified if len(sources) == 1 and not rebuild else []
    return ReceivedUnpackReport(path=label, output=str(dest), files=files, rebuilt=rebuild, verify=verify,
                                policy=policy.to_dict(), unverified=list(unverified),
                                protection=sources[0].report.protection)


def restore(root: Path, dest: Path) -> None:
    """Move a verified staging folder into place.  An existing destination
    (--force) is swapped aside first and deleted only once the new File-set
    is in place: a failed delete never costs the old data nor the new."""
    _replace(root, dest)


def require_parent(dest: Path) -> Path:
    """The folder that holds ``dest`` as the user named it: staging goes
    there.  The last component is never resolved: with ``-o LINK --force``
    plaintext must not be staged in the folder the link points into."""
    parent = Path(dest).absolute().parent
    if not parent.is_dir():
        raise UsageError("parent folder does not exist", where=str(dest))
    return parent


def staged_names(roots: list[Path], labels: list[str]):
    """A function naming a path under one of ``roots`` as the user knows
    it: "<package>: <entry>" (or "<package>" for the root itself)."""
    pairs = [(os.path.abspath(root), label) for root, label in zip(roots, labels)]

    def rename(where):
        if not where:
            return where
        text = os.path.abspath(str(where)) if os.path.isabs(str(where)) else str(where)
        for root, label in pairs:
            if text == root:
                return label
            if text.startswith(root + os.sep):
                return f"{label}: {Path(os.path.relpath(text, root)).as_posix()}"
        return where
    return rename
