"""Emitting a planned File-set: as a folder, or streamed into a PS3.12
Annex V ZIP (one File-set, DICOMDIR at the root, entries named by File IDs)
with an integrity manifest as its last entry."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from .container.manifest import MANIFEST_NAME, build_manifest
from .container.zip import EntryInfo, ZipWriter
from .dicomdir import encode_meta, fileset_instance_uid, write_dicomdir
from .errors import UsageError
from .fileset import Layout, copy_instance, leaf_path, sha256_file
from .report import Progress
from .scan import ScanResult

# Encapsulated (already compressed) syntaxes gain nothing from deflate.
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
ZIP_METHODS = ("auto", "deflate", "store", "zstd")


def entry_method(transfer_syntax: str, choice: str) -> str:
    if choice not in ZIP_METHODS:
        raise UsageError(f"unknown ZIP method {choice!r} (one of {', '.join(ZIP_METHODS)})")
    if choice != "auto":
        return choice
    return "deflate" if transfer_syntax in _NATIVE else "store"


class _Chain(io.RawIOBase):
    """Reads ``head`` then a file from ``offset``: a Part 10 file with new
    File Meta in front of the original data set bytes, without a copy."""

    def __init__(self, head: bytes, path: str, offset: int):
        self._head = memoryview(head)
        self._file = open(path, "rb")
        self._file.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._file.readinto(buf)

    def close(self) -> None:
        self._file.close()
        super().close()


def open_instance(scan: ScanResult) -> BinaryIO:
    """The bytes a leaf has in the File-set, as a stream."""
    if not scan.needs_rewrite:
        return open(scan.path, "rb")
    meta = encode_meta(scan.sop_class, scan.sop_instance, scan.transfer_syntax)
    return io.BufferedReader(_Chain(meta, scan.path, scan.dataset_offset), 1 << 20)


DESCRIPTOR_FILE_ID = ("README",)


def dicomdir_bytes(layout: Layout, fileset_id: str) -> bytes:
    buf = io.BytesIO()
    write_dicomdir(buf, layout.roots, fileset_id=fileset_id,
                   descriptor=DESCRIPTOR_FILE_ID if layout.descriptor else None)
    return buf.getvalue()


def package_uid_for(layout: Layout, fileset_id: str) -> str:
    """Deterministic: the same File-set packed again is the same package."""
    return fileset_instance_uid("package:" + fileset_id, layout.roots)


def write_folder(root: Path, layout: Layout, fileset_id: str, progress: Progress) -> int:
    total, written, made = len(layout.leaves), 0, set()
    for n, leaf in enumerate(layout.leaves, 1):
        dest = leaf_path(root, leaf)
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        written += copy_instance(leaf.source, dest)
        if n % 32 == 0 or n == total:
            progress("copy", n, total, written)
    data = dicomdir_bytes(layout, fileset_id)
    (root / "DICOMDIR").write_bytes(data)
    if layout.descriptor:
        written += copy_descriptor(layout.descriptor, root.joinpath(*DESCRIPTOR_FILE_ID))
    return written + len(data)


def copy_descriptor(src: Path, dest: Path) -> int:
    import shutil
    shutil.copyfile(src, dest)
    return dest.stat().st_size


def write_zip(out: BinaryIO, layout: Layout, *, fileset_id: str, method: str, summary: dict,
              progress: Progress, package_uid: str | None = None,
              volume: tuple[int, int] = (1, 1)) -> list[EntryInfo]:
    """Stream the File-set into a ZIP on ``out`` (which may be a pipe)."""
    entries: list[EntryInfo] = []
    total = len(layout.leaves)
    done_bytes = 0
    with ZipWriter(out) as zw:
        entries.append(zw.add_bytes("DICOMDIR", dicomdir_bytes(layout, fileset_id),
                                    method=entry_method("1.2.840.10008.1.2.1", method)))
        if layout.descriptor:
            entries.append(zw.add_file("/".join(DESCRIPTOR_FILE_ID), layout.descriptor))
        for n, leaf in enumerate(layout.leaves, 1):
            with open_instance(leaf.source) as src:
                info = zw.add_stream("/".join(leaf.file_id), src,
                                     method=entry_method(leaf.transfer_syntax, method))
            entries.append(info)
            done_bytes += info.size
            if n % 32 == 0 or n == total:
                progress("zip", n, total, done_bytes)
        manifest = build_manifest(entries, package_uid=package_uid or package_uid_for(layout, fileset_id),
                                  fileset_summary=summary, volume=volume)
        zw.add_bytes(MANIFEST_NAME, manifest, method="deflate")
    return entries


def write_folder_manifest(root: Path, *, package_uid: str, summary: dict, volume: tuple[int, int]) -> int:
    """The manifest of a folder volume (volumes are identified by it)."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        entries.append(EntryInfo(rel, path.stat().st_size, 0, 0, sha256_file(path), "store"))
    data = build_manifest(entries, package_uid=package_uid, fileset_summary=summary, volume=volume)
    (root / MANIFEST_NAME).write_bytes(data)
    return len(data)


def is_stream(dest) -> bool:
    return hasattr(dest, "write") and not isinstance(dest, (str, os.PathLike))


def write_secure(out: BinaryIO, layout: Layout, *, recipients: list, signer, aead: bool, legacy: bool,
                 zip_kwargs: dict, progress: Progress):
    """Stream the Annex V ZIP through a pipe into the CMS writer: the ZIP is
    never held in memory nor spooled to disk, and ``out`` may be a pipe."""
    import threading

    from .container.cms import write_secure_package

    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []
    entries: list[EntryInfo] = []

    def produce() -> None:
        try:
            with open(write_fd, "wb", buffering=1 << 20) as pipe:
                entries.extend(write_zip(pipe, layout, progress=progress, **zip_kwargs))
        except BaseException as exc:   # reported by the main thread
            failure.append(exc)

    producer = threading.Thread(target=produce, name="dicompack-zip", daemon=True)
    producer.start()
    try:
        with open(read_fd, "rb", buffering=1 << 20) as zipped:
            info = write_secure_package(zipped, out, recipients=recipients, signer=signer,
                                        aead=aead, legacy=legacy)
    finally:
        producer.join()
    if failure:
        # The CMS writer saw a short ZIP; the caller discards the output.
        raise failure[0]
    return info, entries


def secure_files_in_place(root: Path, *, recipients: list, signer, aead: bool, legacy: bool,
                          progress: Progress) -> dict:
    """PS3.10 7.4 / PS3.11 STD-GEN-SEC-*: every DICOM File of the File-set,
    the DICOMDIR included, becomes a Secure DICOM File (a CMS envelope around
    the whole file) under its own File ID."""
    from .container.cms import write_secure_package
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README")
    info = None
    for n, path in enumerate(files, 1):
        sealed = path.with_name(path.name + ".sealing")
        with open(path, "rb") as src, open(sealed, "wb") as out:
            info = write_secure_package(src, out, recipients=recipients, signer=signer, aead=aead, legacy=legacy)
        os.replace(sealed, path)
        if n % 32 == 0 or n == len(files):
            progress("encrypt", n, len(files))
    return {"secure_files": len(files), "content_encryption": info.content_encryption if info else None,
            "signed": bool(info and info.signed), "profile": "Secure DICOM Files (PS3.10 7.4), STD-GEN-SEC"}


def is_secure_fileset(root: Path) -> bool:
    dicomdir = Path(root) / "DICOMDIR"
    if not dicomdir.is_file():
        return False
    with open(dicomdir, "rb") as f:
        return f.read(1) == b"\x30"


def open_secure_fileset(root: Path, out: Path, *, key, cert, password, trust, allow_unsigned: bool) -> dict:
    """Decrypt and verify every Secure DICOM File of ``root`` into ``out``
    (a private folder); files that are not CMS (a README) are copied."""
    import shutil

    from .container.cms import open_secure_package
    reports = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        dest = out / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as src:
            secure = src.read(1) == b"\x30"
            src.seek(0)
            if not secure:
                with open(dest, "wb") as f:
                    shutil.copyfileobj(src, f)
                continue
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                try:
                    reports.append(open_secure_package(src, f, key=key, cert=cert, password=password, trust=trust,
                                                       allow_unsigned=allow_unsigned))
                except Exception as err:
                    if hasattr(err, "where"):
                        err.where = f"{path.relative_to(root)}: {err.where}" if err.where else str(path.relative_to(root))
                    raise
    first = reports[0].to_dict() if reports else {}
    return first | {"secure_files": len(reports)}
