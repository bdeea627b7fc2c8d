"""Emitting a planned File-set: as a folder, or streamed into a PS3.12
Annex V ZIP (one File-set, DICOMDIR at the root, entries named by File IDs)
with an integrity manifest as its last entry."""
from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from dicompack.container.manifest import MANIFEST_NAME, build_manifest
from dicompack.container.zip import (
    EntryInfo,
    EntrySpool,
    SpooledEntry,
    ZipWriter,
    compress_bytes,
    precompressed_zip_size,
)
from dicompack.errors import UsageError
from dicompack.fileset.dicomdir import encode_meta, write_dicomdir
from dicompack.fileset.layout import ZERO_PREAMBLE, Layout, copy_instance, leaf_path, sha256_file
from dicompack.report import Progress
from dicompack.scan import ScanResult

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


def write_secure(out: BinaryIO, write_zip_to: Callable[[BinaryIO], list[EntryInfo]], *, recipients: list,
                 signer, aead: bool, legacy: bool):
    """Stream the Annex V ZIP that ``write_zip_to(pipe)`` writes (``write_zip``
    or ``write_zip_volume``) through a pipe into the CMS writer: the ZIP is
    never held in memory nor spooled to disk, and ``out`` may be a pipe."""
    import threading

    from dicompack.container.cms import write_secure_package

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
    from dicompack.container.cms import write_secure_package
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
    """A folder of Secure DICOM Files: its DICOMDIR is a regular file (not a
    link) holding CMS."""
    from dicompack.receiving.sources import is_secure_folder
    return is_secure_folder(root)


def open_secure_fileset(root: Path, out: Path, *, key, cert, password, trust, allow_unsigned: bool) -> dict:
    """Decrypt and verify every Secure DICOM File of ``root`` into ``out``
    (a private folder).  Every file but a small plain File-set Descriptor
    must be a Secure DICOM File referenced by the verified DICOMDIR;
    symlinks, special and unexpected files refuse the folder (see
    ``receive.open_secure_folder``).  The report names unverified files."""
    from dicompack.receiving.sources import open_secure_folder
    secure, unverified = open_secure_folder(root, out, key=key, cert=cert, password=password, trust=trust,
                                            allow_unsigned=allow_unsigned)
    return secure | {"unverified": unverified}


# ---------------------------------------------------------------- volumes (--split)
#
# ``--split SIZE`` bounds the bytes of each volume as written: compressed,
# and for a secure package after encryption.  Every instance is compressed
# once into a private spool; a volume's ZIP size is then known to the byte
# before it is written (real compressed sizes plus exact headers, DICOMDIR
# and manifest), the CMS envelope is bounded from the actual recipients and
# signer, and the volume is assembled by copying compressed bytes.

CMS_CHUNK = 1 << 20             # plaintext bytes per OCTET STRING segment of our CMS writer
DESCRIPTOR_KEY = "\0descriptor"  # spool key of the File-set Descriptor (never a path)
_EXPLICIT_LE = "1.2.840.10008.1.2.1"


def instance_bytes(scan: ScanResult) -> int:
    """Bytes of an instance as written into a File-set (``open_instance``)."""
    if scan.needs_rewrite:
        return len(encode_meta(scan.sop_class, scan.sop_instance, scan.transfer_syntax)) \
            + scan.size - scan.dataset_offset
    return scan.size


def spool_instances(layout: Layout, spool: EntrySpool, method: str, progress: Progress) -> dict[str, SpooledEntry]:
    """Compress every instance (and the descriptor) once; keyed by source path."""
    spooled: dict[str, SpooledEntry] = {}
    if layout.descriptor:
        with open(layout.descriptor, "rb") as src:
            spooled[DESCRIPTOR_KEY] = spool.add_stream(src, method="deflate")
    total, done = len(layout.leaves), 0
    for n, leaf in enumerate(layout.leaves, 1):
        with open_instance(leaf.source) as src:
            entry = spool.add_stream(src, method=entry_method(leaf.transfer_syntax, method))
        spooled[leaf.source.path] = entry
        done += entry.info.size
        if n % 32 == 0 or n == total:
            progress("zip", n, total, done)
    return spooled


class ZipVolume:
    """One volume ready to write: its entries named and in archive order,
    where each one's compressed bytes are, and the exact size of the ZIP."""

    def __init__(self, layout: Layout, entries: list[EntryInfo], sources: list):
        self.layout, self.entries, self.sources = layout, entries, sources
        self.zip_size = precompressed_zip_size(entries)


def prepare_zip_volume(layout: Layout, spooled: dict[str, SpooledEntry], *, fileset_id: str, method: str,
                       summary: dict, package_uid: str, volume: tuple[int, int]) -> ZipVolume:
    """The same entries, in the same order, as ``write_zip`` writes."""
    from dataclasses import replace
    entries: list[EntryInfo] = []
    sources: list = []     # bytes (compressed, in memory) or a SpooledEntry
    info, data = compress_bytes("DICOMDIR", dicomdir_bytes(layout, fileset_id),
                                entry_method(_EXPLICIT_LE, method))
    entries.append(info), sources.append(data)
    if layout.descriptor:
        entry = spooled[DESCRIPTOR_KEY]
        entries.append(replace(entry.info, name="/".join(DESCRIPTOR_FILE_ID))), sources.append(entry)
    for leaf in layout.leaves:
        entry = spooled[leaf.source.path]
        entries.append(replace(entry.info, name="/".join(leaf.file_id))), sources.append(entry)
    manifest = build_manifest(entries, package_uid=package_uid, fileset_summary=summary, volume=volume)
    info, data = compress_bytes(MANIFEST_NAME, manifest, "deflate")
    entries.append(info), sources.append(data)
    return ZipVolume(layout, entries, sources)


def write_zip_volume(out: BinaryIO, volume: ZipVolume, spool: EntrySpool, progress: Progress) -> list[EntryInfo]:
    """Assemble a prepared volume by copying compressed bytes; returns the
    entries but the manifest, as ``write_zip`` does."""
    total = len(volume.entries)
    with ZipWriter(out) as zw:
        for n, (info, source) in enumerate(zip(volume.entries, volume.sources), 1):
            zw.add_precompressed(info, (source,) if isinstance(source, bytes) else spool.chunks(source))
            if n % 32 == 0 or n == total:
                progress("copy", n, total)
    return volume.entries[:-1]


class SecureSizer:
    """A safe upper bound of the bytes ``write_secure_package`` writes for a
    plaintext of N bytes, for given recipients and signer.

    The fixed part (ContentInfo/EnvelopedData/SignedData framing with BER
    indefinite lengths, recipient infos, certificates, signer info, one CBC
    block or the GCM tag) is measured by sealing an empty content once with
    the same recipients and signer.  On top of it a content of N bytes in
    c = ceil(N / CMS_CHUNK) chunks adds: the N bytes; an inner OCTET STRING
    header per chunk (<= 5 bytes: lengths below 2**24); CBC padding swing
    (<= 16); an outer OCTET STRING header (<= 6 bytes) per ciphertext
    piece, pieces being at most the 2c chunk pieces plus the 7 fixed ones
    (counted in full, although the empty seal already paid some); and
    SIGNATURE_SLACK for DER signature values that vary in length (ECDSA)
    and a length-of-length that may grow."""

    SIGNATURE_SLACK = 32

    def __init__(self, recipients: list, signer, aead: bool, legacy: bool):
        from dicompack.container.cms import write_secure_package
        sink = _Counter()
        write_secure_package(io.BytesIO(b""), sink, recipients=recipients, signer=signer, aead=aead,
                             legacy=legacy, chunk_size=CMS_CHUNK)
        self.fixed = sink.count

    def bound(self, plaintext: int) -> int:
        chunks = -(-plaintext // CMS_CHUNK)
        return self.fixed + plaintext + 5 * chunks + 16 + 6 * (2 * chunks + 7) + self.SIGNATURE_SLACK


class _Counter:
    def __init__(self):
        self.count = 0

    def write(self, data) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def folder_volume_size(layout: Layout, *, fileset_id: str, summary: dict, package_uid: str,
                       volume: tuple[int, int], sealed: SecureSizer | None) -> int:
    """Exact bytes of a folder volume (``write_folder`` then
    ``write_folder_manifest``); with ``sealed`` (``--per-file``) every file
    but the README counted at its CMS bound."""
    files = [instance_bytes(leaf.source) for leaf in layout.leaves]
    files.append(len(dicomdir_bytes(layout, fileset_id)))
    names = ["/".join(leaf.file_id) for leaf in layout.leaves] + ["DICOMDIR"]
    readme = os.path.getsize(layout.descriptor) if layout.descriptor else 0
    listed = [EntryInfo(name, size, 0, 0, "0" * 64, "store") for name, size in zip(names, files)]
    if layout.descriptor:
        listed.append(EntryInfo("/".join(DESCRIPTOR_FILE_ID), readme, 0, 0, "0" * 64, "store"))
    files.append(len(build_manifest(listed, package_uid=package_uid, fileset_summary=summary, volume=volume)))
    seal = sealed.bound if sealed else (lambda n: n)
    return sum(seal(n) for n in files) + readme
