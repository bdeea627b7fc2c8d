"""Pack: volumes (--split SIZE) of at most SIZE bytes as written.

Every instance is compressed once into a private spool; a volume's ZIP size
is then known to the byte before it is written (real compressed sizes plus
exact headers, DICOMDIR and manifest), the CMS envelope is bounded from the
actual recipients and signer, and the volume is assembled by copying
compressed bytes.  Folder volumes count file sizes exactly."""
from __future__ import annotations

import io
import os
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import BinaryIO, cast

from dicompack import fileset as fs
from dicompack.container.manifest import MANIFEST_NAME, build_manifest
from dicompack.container.zip import (
    DEFAULT_ZIP_LEVEL,
    EntryInfo,
    EntrySpool,
    SpooledEntry,
    ZipWriter,
    compress_bytes,
    precompressed_zip_size,
)
from dicompack.dcmio import encode_meta
from dicompack.errors import DicompackError, UsageError
from dicompack.fileset.layout import Layout
from dicompack.options import PackOptions
from dicompack.output import private_tempdir
from dicompack.packing.writers import (
    CMS_CHUNK,
    DESCRIPTOR_FILE_ID,
    CountingWriter,
    dicomdir_bytes,
    entry_method,
    file_id_text,
    open_instance,
    source_of,
)
from dicompack.report import PackReport, Problem, Progress
from dicompack.scan import ScanResult
from dicompack.standard import EXPLICIT_VR_LITTLE_ENDIAN


def plan_volumes(stack: ExitStack, dest: Path, fmt: str, layout: Layout, options: PackOptions, progress: Progress,
                 package_uid: str, summary: dict, report: PackReport, *, size: int):
    """--split: volumes of at most ``size`` bytes as written.

    ZIP and secure volumes: every instance is compressed once into a private
    spool, volumes are planned from the real compressed sizes (exact ZIP,
    DICOMDIR and manifest bytes; the CMS envelope bounded from the actual
    recipients and signer) and later assembled by copying compressed bytes.
    Folder volumes: file sizes, exactly.  Returns the volumes (ZipVolume,
    or Layout for folders) and the spool (None for folders)."""
    sealed = (SecureSizer(list(options.recipients), options.signer, options.aead, options.legacy)
              if fmt == "secure" or options.per_file else None)
    spool: EntrySpool | None = None
    spooled: dict[str, SpooledEntry] = {}
    if fmt != "dir":
        spool = stack.enter_context(EntrySpool(stack.enter_context(private_tempdir("spool")) / "entries",
                                               level=options.zip_level, workers=options.jobs))
        spooled = spool_instances(layout, spool, options.zip_method, progress)

    def build(scans: list, volume: tuple[int, int]):
        vol = fs.plan_layout(scans)
        vol.descriptor = layout.descriptor
        vol_summary = summary | {"volume_instances": len(vol.leaves)}
        if fmt == "dir":
            return vol, folder_volume_size(vol, fileset_id=options.fileset_id, summary=vol_summary,
                                               package_uid=package_uid, volume=volume, sealed=sealed)
        prepared = prepare_zip_volume(vol, spooled, fileset_id=options.fileset_id, method=options.zip_method,
                                          summary=vol_summary, package_uid=package_uid, volume=volume,
                                          level=options.zip_level)
        return prepared, sealed.bound(prepared.zip_size) if sealed else prepared.zip_size

    widest = 10 ** len(str(len(layout.leaves))) - 1     # the volume numbers are not known while planning
    cost = ((lambda scan: spooled[scan.path].info.compressed_size) if spool is not None
            else instance_bytes)
    reserve = 0
    for _attempt in range(6):
        try:
            plan = fs.split_volumes(layout, size - reserve,
                                    lambda scans: build(scans, (widest, widest))[1], cost)
        except fs.VolumeTooSmall as small:
            raise UsageError(f"this instance needs {small.needed:,} bytes in a volume of its own, more than "
                             f"the volume size of {size:,} (--split)", where=small.scan.path) from None
        built = [build(scans, (i, len(plan.volumes))) for i, scans in enumerate(plan.volumes, 1)]
        # With the real volume numbers a deflated manifest may come out a few
        # bytes longer than planned: plan again with that much held back.
        if all(written <= size for _, written in built):
            break
        reserve = reserve * 4 or 256
    else:
        raise DicompackError("could not plan volumes within the volume size (a dicompack bug: please report it)",
                             where=str(dest))
    report.warnings += [Problem(str(dest), note) for note in plan.notes]
    return [vol for vol, _ in built], spool


DESCRIPTOR_KEY = "\0descriptor"  # spool key of the File-set Descriptor (never a path)




def instance_bytes(scan: ScanResult) -> int:
    """Bytes of an instance as written into a File-set (``open_instance``)."""
    if scan.needs_rewrite:
        return len(encode_meta(scan.sop_class, scan.sop_instance, scan.transfer_syntax)) \
            + scan.size - scan.dataset_offset
    return scan.size


def spool_instances(layout: Layout, spool: EntrySpool, method: str, progress: Progress) -> dict[str, SpooledEntry]:
    """Compress every instance (and the descriptor) once, ahead on the
    spool's threads; keyed by source path."""
    spooled: dict[str, SpooledEntry] = {}
    if layout.descriptor:
        with open(layout.descriptor, "rb") as src:
            spooled[DESCRIPTOR_KEY] = spool.add_stream(src, method="deflate")
    total, done = len(layout.leaves), 0
    items = ((source_of(leaf).path, partial(open_instance, source_of(leaf)),
              entry_method(leaf.transfer_syntax, method)) for leaf in layout.leaves)
    for n, (path, entry) in enumerate(spool.add_streams(items), 1):
        spooled[path] = entry
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
                       summary: dict, package_uid: str, volume: tuple[int, int],
                       level: int = DEFAULT_ZIP_LEVEL) -> ZipVolume:
    """The same entries, in the same order, as ``write_zip`` writes."""
    entries: list[EntryInfo] = []
    sources: list = []     # bytes (compressed, in memory) or a SpooledEntry
    info, data = compress_bytes("DICOMDIR", dicomdir_bytes(layout, fileset_id),
                                entry_method(EXPLICIT_VR_LITTLE_ENDIAN, method), level)
    entries.append(info)
    sources.append(data)
    named = [(DESCRIPTOR_KEY, "/".join(DESCRIPTOR_FILE_ID))] if layout.descriptor else []
    named += [(source_of(leaf).path, file_id_text(leaf)) for leaf in layout.leaves]
    for key, name in named:
        entry = spooled[key]
        entries.append(replace(entry.info, name=name))
        sources.append(entry)
    manifest = build_manifest(entries, package_uid=package_uid, fileset_summary=summary, volume=volume)
    info, data = compress_bytes(MANIFEST_NAME, manifest, "deflate", level)
    entries.append(info)
    sources.append(data)
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
        sink = CountingWriter()
        # The envelope of an empty payload: the fixed part of every secure volume.
        from dicompack.container.cms import write_secure_package  # start-up cost: cryptography
        write_secure_package(io.BytesIO(b""), cast(BinaryIO, sink), recipients=recipients, signer=signer, aead=aead,
                             legacy=legacy, chunk_size=CMS_CHUNK)
        self.fixed = sink.count

    def bound(self, plaintext: int) -> int:
        chunks = -(-plaintext // CMS_CHUNK)
        return self.fixed + plaintext + 5 * chunks + 16 + 6 * (2 * chunks + 7) + self.SIGNATURE_SLACK


def folder_volume_size(layout: Layout, *, fileset_id: str, summary: dict, package_uid: str,
                       volume: tuple[int, int], sealed: SecureSizer | None) -> int:
    """Exact bytes of a folder volume (``write_folder`` then
    ``write_folder_manifest``); with ``sealed`` (``--per-file``) every file
    but the README counted at its CMS bound."""
    files = [instance_bytes(source_of(leaf)) for leaf in layout.leaves]
    files.append(len(dicomdir_bytes(layout, fileset_id)))
    names = [file_id_text(leaf) for leaf in layout.leaves] + ["DICOMDIR"]
    readme = os.path.getsize(layout.descriptor) if layout.descriptor else 0
    listed = [EntryInfo(name, size, 0, 0, "0" * 64, "store") for name, size in zip(names, files)]
    if layout.descriptor:
        listed.append(EntryInfo("/".join(DESCRIPTOR_FILE_ID), readme, 0, 0, "0" * 64, "store"))
    files.append(len(build_manifest(listed, package_uid=package_uid, fileset_summary=summary, volume=volume)))
    seal = sealed.bound if sealed else (lambda n: n)
    return sum(seal(n) for n in files) + readme
