"""Emitting a planned File-set: as a folder, or streamed into a PS3.12
Annex V ZIP (one File-set, DICOMDIR at the root, entries named by File IDs)
with an integrity manifest as its last entry."""
from __future__ import annotations

import io
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO

from dicompack.container.manifest import MANIFEST_NAME, build_manifest
from dicompack.container.zip import (
    DEFAULT_ZIP_LEVEL,
    EntryInfo,
    ZipWriter,
)
from dicompack.dcmio import encode_meta
from dicompack.enums import ZipMethod
from dicompack.errors import UsageError
from dicompack.fileset.dicomdir import write_dicomdir
from dicompack.fileset.files import ZERO_PREAMBLE, copy_instance, leaf_path, sha256_file
from dicompack.fileset.layout import Layout
from dicompack.fileset.records import Record
from dicompack.report import Progress
from dicompack.scan import ScanResult
from dicompack.standard import EXPLICIT_VR_LITTLE_ENDIAN, NATIVE_SYNTAXES

ZIP_METHODS = tuple(m.value for m in ZipMethod)
CMS_CHUNK = 1 << 20             # plaintext bytes per OCTET STRING segment of our CMS writer


def parse_zip_method(text: str) -> ZipMethod:
    """``--zip-method`` / ``PackOptions.zip_method`` as given by a caller."""
    if text not in ZIP_METHODS:
        raise UsageError(f"unknown ZIP method {text!r} (one of {', '.join(ZIP_METHODS)})")
    return ZipMethod(text)


def entry_method(transfer_syntax: str, choice: str) -> str:
    """How to store one entry: ``choice``, or for "auto" deflate native
    Pixel Data only (encapsulated, already compressed syntaxes gain nothing)."""
    if parse_zip_method(choice) != ZipMethod.AUTO:
        return choice
    return "deflate" if transfer_syntax in NATIVE_SYNTAXES else "store"


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
    """The bytes a leaf has in the File-set, as a stream (the same bytes
    ``fileset.copy_instance`` writes)."""
    if scan.needs_rewrite:
        meta = encode_meta(scan.sop_class, scan.sop_instance, scan.transfer_syntax)
        return io.BufferedReader(_Chain(meta, scan.path, scan.dataset_offset), 1 << 20)
    if scan.clear_preamble:
        return io.BufferedReader(_Chain(ZERO_PREAMBLE, scan.path, len(ZERO_PREAMBLE)), 1 << 20)
    return open(scan.path, "rb")


DESCRIPTOR_FILE_ID = ("README",)


def dicomdir_bytes(layout: Layout, fileset_id: str) -> bytes:
    buf = io.BytesIO()
    write_dicomdir(buf, layout.roots, fileset_id=fileset_id,
                   descriptor=DESCRIPTOR_FILE_ID if layout.descriptor else None)
    return buf.getvalue()


def package_uid_for(layout: Layout, fileset_id: str) -> str:
    """A new UID for every packing (PS3.5 B.2: 2.25 + a random UUID).

    Every volume's manifest carries it, and inside secure volumes the
    signature covers it, so it binds the volumes of one packing together.
    It used to be derived from the File-set (fileset ID, SOP Instance UIDs,
    File IDs), which made every packing of a study -- a re-send after a
    correction, another --split or --j2k -- share one UID, and their volumes
    merge into one "verified" restore.  ``layout`` and ``fileset_id`` are
    deliberately not used any more."""
    return f"2.25.{uuid.uuid4().int}"


class CountingWriter(io.RawIOBase):
    """Counts the bytes written, passing them on to ``out`` if given (a
    non-seekable stream's size is known only this way; without ``out`` it
    measures what a writer would produce)."""

    def __init__(self, out: BinaryIO | None = None):
        super().__init__()
        self.out, self.count = out, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.out is not None:
            self.out.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


def source_of(leaf: Record) -> ScanResult:
    """The scanned input behind a leaf record (plan_layout sets it)."""
    if not isinstance(leaf.source, ScanResult):
        raise TypeError(f"record {leaf.file_id} has no scanned source")
    return leaf.source


def file_id_text(leaf: Record) -> str:
    """A leaf's File ID as a ZIP entry name ("PA000001/ST000001/...")."""
    return "/".join(leaf.file_id or ())


def write_folder(root: Path, layout: Layout, fileset_id: str, progress: Progress) -> int:
    total, written, made = len(layout.leaves), 0, set[Path]()
    for n, leaf in enumerate(layout.leaves, 1):
        dest = leaf_path(root, leaf)
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        written += copy_instance(source_of(leaf), dest)
        if n % 32 == 0 or n == total:
            progress("copy", n, total, written)
    data = dicomdir_bytes(layout, fileset_id)
    (root / "DICOMDIR").write_bytes(data)
    if layout.descriptor:
        written += copy_descriptor(layout.descriptor, root.joinpath(*DESCRIPTOR_FILE_ID))
    return written + len(data)


def copy_descriptor(src: Path, dest: Path) -> int:
    shutil.copyfile(src, dest)
    return dest.stat().st_size


def write_zip(out: BinaryIO, layout: Layout, *, fileset_id: str, method: str, summary: dict,
              progress: Progress, package_uid: str | None = None,
              volume: tuple[int, int] = (1, 1), level: int = DEFAULT_ZIP_LEVEL,
              workers: int | None = None) -> list[EntryInfo]:
    """Stream the File-set into a ZIP on ``out`` (which may be a pipe);
    instances are compressed ahead on ``workers`` threads at ``level``."""
    entries: list[EntryInfo] = []
    total = len(layout.leaves)
    done_bytes = 0
    with ZipWriter(out, level=level, workers=workers) as zw:
        entries.append(zw.add_bytes("DICOMDIR", dicomdir_bytes(layout, fileset_id),
                                    method=entry_method(EXPLICIT_VR_LITTLE_ENDIAN, method)))
        if layout.descriptor:
            entries.append(zw.add_file("/".join(DESCRIPTOR_FILE_ID), layout.descriptor))
        items = ((file_id_text(leaf), partial(open_instance, source_of(leaf)),
                  entry_method(leaf.transfer_syntax, method)) for leaf in layout.leaves)
        for n, info in enumerate(zw.add_streams(items), 1):
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


def write_secure(out: BinaryIO, write_zip_to: Callable[[BinaryIO], list[EntryInfo]], *, recipients: list,
                 signer, aead: bool, legacy: bool):
    """Stream the Annex V ZIP that ``write_zip_to(pipe)`` writes (``write_zip``
    or ``write_zip_volume``) through a pipe into the CMS writer: the ZIP is
    never held in memory nor spooled to disk, and ``out`` may be a pipe."""


    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []
    entries: list[EntryInfo] = []

    def produce() -> None:
        try:
            with open(write_fd, "wb", buffering=1 << 20) as pipe:
                entries.extend(write_zip_to(pipe))
        except BaseException as exc:   # reported by the main thread
            failure.append(exc)

    producer = threading.Thread(target=produce, name="dicompack-zip", daemon=True)
    producer.start()
    try:
        with open(read_fd, "rb", buffering=1 << 20) as zipped:
            from dicompack.container.cms import write_secure_package  # start-up cost: cryptography
            info = write_secure_package(zipped, out, recipients=recipients, signer=signer,
                                        aead=aead, legacy=legacy, chunk_size=CMS_CHUNK)
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
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README")
    info = None
    for n, path in enumerate(files, 1):
        sealed = path.with_name(path.name + ".sealing")
        with open(path, "rb") as src, open(sealed, "wb") as out:
            from dicompack.container.cms import write_secure_package  # start-up cost: cryptography
            info = write_secure_package(src, out, recipients=recipients, signer=signer, aead=aead, legacy=legacy)
        os.replace(sealed, path)
        if n % 32 == 0 or n == len(files):
            progress("encrypt", n, len(files))
    return {"secure_files": len(files), "content_encryption": info.content_encryption if info else None,
            "signed": bool(info and info.signed), "profile": "Secure DICOM Files (PS3.10 7.4), STD-GEN-SEC"}
