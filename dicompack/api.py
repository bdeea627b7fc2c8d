"""The library API: the functions the CLI and portal backends call.

A thin facade.  Each function is the boundary where OS-level failures
become a ``StorageError`` naming the file; the work itself is done by the
pipelines (``dicompack.packing``, ``dicompack.receiving``) and the File-set
code (``dicompack.fileset``).  See spec/architecture.md.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

from dicompack import packing, receiving
from dicompack.errors import StorageError
from dicompack.fileset import update as update_index
from dicompack.fileset.check import check_fileset
from dicompack.fileset.listing import list_index
from dicompack.fileset.records import Record
from dicompack.options import PackOptions, ReceiveOptions
from dicompack.report import (
    CheckReport,
    DicomdirReport,
    ListReport,
    PackReport,
    ProgressCallback,
    UnpackReport,
    VerifyReport,
)

__all__ = ["PackOptions", "ReceiveOptions", "build_dicomdir", "check", "list_fileset", "merge_records", "pack",
           "reidentify", "unpack", "verify"]

P = ParamSpec("P")
R = TypeVar("R")
PathLike = str | os.PathLike[str]
Source = PathLike | BinaryIO | tuple[str, BinaryIO]


def storage_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn OS-level failures (disk full, vanished or unreadable file) into
    a StorageError naming the file, so callers see one error family."""
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise StorageError(exc.strerror or str(exc), where=exc.filename or "output") from None
    return wrapper


@storage_errors
def pack(sources: Source | Sequence[Source], dest: PathLike | BinaryIO,
         options: PackOptions = PackOptions()) -> PackReport:
    """Build a standard File-set from ``sources`` (paths, binary streams or
    (name, stream) pairs) and write it to ``dest``: a folder, a ZIP file, a
    secure package, or any writable binary stream (non-seekable too)."""
    return packing.pack(sources, dest, options)


@storage_errors
def verify(src: PathLike | BinaryIO, options: ReceiveOptions = ReceiveOptions()) -> VerifyReport:
    """Verify a package (ZIP, secure package, folder of Secure DICOM Files)
    or a File-set under the receive policy, without restoring anything."""
    return receiving.verify(src, options)


@storage_errors
def unpack(src: PathLike | BinaryIO | Sequence[PathLike | BinaryIO], dest: PathLike,
           options: ReceiveOptions = ReceiveOptions(), *, force: bool = False,
           rebuild: bool = False) -> UnpackReport:
    """Verify, then restore a package's File-set at ``dest`` atomically;
    several volumes are verified as one set and merged; ``rebuild`` turns a
    foreign ZIP into a conformant File-set (see receiving.unpack)."""
    return receiving.unpack(src, dest, options, force=force, rebuild=rebuild)


@storage_errors
def reidentify(src: PathLike | BinaryIO, dest: PathLike, options: ReceiveOptions = ReceiveOptions(), *,
               force: bool = False) -> PackReport:
    """Restore the original values sealed by ``--reid-recipient`` in every
    instance of a package or File-set, and pack the result at ``dest``."""
    return receiving.reidentify(src, dest, options, force=force)


@storage_errors
def check(path: PathLike, *, jobs: int | None = None) -> CheckReport:
    """Validate a File-set (folder, its DICOMDIR, or a ZIP package)."""
    with receiving.fileset_root(path) as root:
        dd, findings, files = check_fileset(root, jobs=jobs)
    findings = [f for f in findings if f.where != "DICOMPACK.JSON"]
    report = CheckReport(path=str(path), findings=[f.to_dict() for f in findings], files=files)
    if dd is not None:
        report.fileset_id, report.records = dd.fileset_id, len(dd.records)
    return report


@storage_errors
def list_fileset(path: PathLike) -> ListReport:
    """Patients / studies / series of a File-set, from its DICOMDIR."""
    with receiving.fileset_root(path) as root:
        return list_index(root, str(path))


@storage_errors
def build_dicomdir(root: PathLike, *, fileset_id: str | None = None, update: bool = False,
                   jobs: int | None = None, progress: ProgressCallback | None = None) -> DicomdirReport:
    """(Re)build the DICOMDIR of an existing File-set from its files; with
    ``update`` keep its records and add the files it does not reference
    (see fileset.update)."""
    return update_index.build_dicomdir(Path(root), fileset_id=fileset_id, update=update, jobs=jobs,
                                       progress=progress)


def merge_records(old: list[Record], new: list[Record]) -> list[Record]:
    """Add the records of ``new`` into ``old``, matching patients by Patient
    ID, studies by Study Instance UID and series by Series Instance UID."""
    return update_index.merge_records(old, new)
