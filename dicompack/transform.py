"""Per-instance transformation stages of the pack pipeline (de-identify,
JPEG 2000), run in worker processes, streaming: the header is parsed with
pydicom (no Pixel Data), transformed, re-encoded, and the Pixel Data element
is either copied byte for byte from the source or replaced by the J2K
encoder's output, frame by frame.  The result is a new Part 10 file in a
private staging folder, which is then scanned like any input so the
DICOMDIR is built from the transformed values only.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .dicomdir import encode_meta
from .errors import CompressionError, DicompackError, InvalidInputError
from .scan import ScanResult, scan_file

NATIVE_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


@dataclass(frozen=True)
class TransformSpec:
    deid: object = None            # deid.DeidOptions
    j2k: object = None             # j2k.J2KOptions
    lossy_uids: tuple = ()         # (post-deid SOP Instance UID, new UID) pairs
    reid_pem: tuple = ()           # PEM certificates of re-identification recipients


@dataclass
class Outcome:
    """What one worker did to one instance (picklable, no PHI)."""
    path: str
    staged: str | None = None
    scan: ScanResult | None = None
    actions: dict = field(default_factory=dict)
    j2k: dict | None = None
    note: str = ""
    error: DicompackError | None = None


def lossy_uid(uid: str) -> str:
    """The new SOP Instance UID of a lossy-compressed instance (PS3.3 C.7.6.1.1.5.1)."""
    digest = hashlib.sha256(b"dicompack-lossy\x00" + uid.encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:15], "big"))


def _read_header(scan: ScanResult):
    from pydicom import dcmread
    with open(scan.path, "rb") as f:
        if scan.has_preamble:
            return dcmread(f, stop_before_pixels=True)
        ds = dcmread(f, force=True, stop_before_pixels=True)
    from pydicom.dataset import FileMetaDataset
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = scan.transfer_syntax
    return ds


def _remap_uids(ds, mapping: dict[str, str]) -> int:
    """Replace every UI value found in ``mapping``, in all sequences; return
    how many elements changed."""
    changed = [0]
    if not mapping:
        return 0

    def visit(dataset, elem):
        if elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [mapping.get(str(v), str(v)) for v in values]
            if new != [str(v) for v in values]:
                elem.value = new if elem.VM > 1 else new[0]
                changed[0] += 1
    ds.walk(visit)
    return changed[0]


def _encode_header(ds, transfer_syntax: str) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    buf = DicomBytesIO()
    buf.is_little_endian = transfer_syntax != "1.2.840.10008.1.2.2"
    buf.is_implicit_VR = transfer_syntax == "1.2.840.10008.1.2"
    write_dataset(buf, ds)
    return buf.getvalue()


def lossy_candidate(scan: ScanResult, spec: TransformSpec) -> bool:
    """Will this instance be lossy-compressed (so get a new SOP Instance UID)?"""
    from . import j2k
    if spec.j2k is None or not spec.j2k.lossy or scan.pixel_offset is None:
        return False
    try:
        return j2k.skip_reason(_read_header(scan), scan.transfer_syntax, spec.j2k) is None
    except DicompackError:
        return True   # refused later, with the error, by transform_instance


# ---------------------------------------------------------------- the stage

# How a worker reports progress: source bytes done (J2K: frame by frame).
_report_bytes: Callable[[int], None] = lambda n: None


def _count_into(counter) -> None:
    """Pool initializer: report progress into a shared counter."""
    global _report_bytes

    def add(n: int) -> None:
        with counter.get_lock():
            counter.value += n
    _report_bytes = add


class Workers:
    """The stage's process pool, or this process when one job is asked for.
    ``transform`` reports progress as source bytes, which a worker adds
    frame by frame, so a single multi-GB instance moves the bar too."""

    POLL_SECONDS = 0.25

    def __init__(self, jobs: int, count: int):
        self.jobs, self.count = jobs, count
        self.pool, self.counter = None, None

    def __enter__(self) -> "Workers":
        if self.jobs > 1:
            from .parallel import process_pool, shared_counter
            self.counter = shared_counter()
            self.pool = process_pool(max(1, min(self.jobs, self.count)), initializer=_count_into,
                                     initargs=(self.counter,))
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _chunk(self, n: int) -> int:
        # Batches amortise the per-task round trip (10% on small instances);
        # small enough that every worker stays busy to the end.
        return max(1, min(16, n // (self.jobs * 16)))

    def map(self, fn, items: list, *same) -> list:
        """``fn(item, *same)`` for every item, in order."""
        if self.pool is None:
            return [fn(item, *same) for item in items]
        return list(self.pool.map(fn, items, *([arg] * len(items) for arg in same),
                                  chunksize=self._chunk(len(items))))

    def transform(self, scans: list[ScanResult], stage_dir: str, spec: TransformSpec,
                  progress: Callable, *, tolerate: tuple = ()) -> list[Outcome]:
        """Every instance through ``transform_instance``.  The first error is
        raised, except those of a ``tolerate`` type: their outcomes come back
        with the error set, so the caller can name every one."""
        total = sum(s.size for s in scans)

        def checked(out: Outcome) -> Outcome:
            if out.error is not None and not isinstance(out.error, tolerate):
                raise out.error
            return out
        if self.pool is None:
            outcomes, done = [], 0
            for scan in scans:
                outcomes.append(checked(transform_instance(scan, stage_dir, spec)))
                done += scan.size
                progress("compress", len(outcomes), len(scans), done, total)
            return outcomes
        from concurrent.futures import FIRST_COMPLETED, wait
        chunk = self._chunk(len(scans))
        batches = [scans[i:i + chunk] for i in range(0, len(scans), chunk)]
        results: list[list[Outcome]] = [[] for _ in batches]
        pending = {self.pool.submit(transform_batch, batch, stage_dir, spec): i for i, batch in enumerate(batches)}
        done_files = 0
        while pending:
            finished, _ = wait(pending, timeout=self.POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                results[i] = [checked(out) for out in future.result()]
                done_files += len(results[i])
            progress("compress", done_files, len(scans), min(self.counter.value, total), total)
        return [out for batch in results for out in batch]


def transform_batch(scans: list[ScanResult], stage_dir: str, spec: TransformSpec) -> list[Outcome]:
    return [transform_instance(scan, stage_dir, spec) for scan in scans]


def transform_instance(scan: ScanResult, stage_dir: str, spec: TransformSpec) -> Outcome:
    """Worker entry point: never raises; errors travel in the outcome."""
    out = Outcome(scan.path)
    counted = [0]

    def on_frame(nbytes: int) -> None:
        counted[0] += nbytes
        _report_bytes(nbytes)
    try:
        _transform(scan, Path(stage_dir), spec, out, on_frame)
    except DicompackError as err:
        out.error = err
    except Exception as err:  # a library bug or an input pydicom cannot handle
        out.error = InvalidInputError(f"cannot transform: {type(err).__name__}: {err}", where=scan.path)
    finally:
        _report_bytes(max(0, scan.size - counted[0]))
    return out


def _transform(scan: ScanResult, stage_dir: Path, spec: TransformSpec, out: Outcome,
               on_frame: Callable[[int], None]) -> None:
    if scan.transfer_syntax == "1.2.840.10008.1.2.1.99" and spec.deid is None:
        # Deflated data sets are small; recompressing would need the whole
        # inflated data set in memory.  Kept as they are (noted).
        out.scan, out.note = scan, "deflated transfer syntax: kept as it is"
        return
    if scan.transfer_syntax == "1.2.840.10008.1.2.1.99":
        _deidentify_whole(scan, stage_dir, spec, out)
        return
    if spec.deid is None and scan.pixel_offset is None and not spec.lossy_uids:
        out.scan, out.note = scan, "no Pixel Data: kept as it is"
        return
    ds = _read_header(scan)
    remapped = _remap_uids(ds, dict(spec.lossy_uids))
    if spec.deid is None:
        from . import j2k
        reason = ("no Pixel Data" if scan.pixel_offset is None
                  else j2k.skip_reason(ds, scan.transfer_syntax, spec.j2k))
        if reason is not None and not remapped:
            # Untouched: copied byte for byte like any instance.
            out.scan, out.note = scan, reason + ": kept as it is"
            return
    else:
        _deidentify(ds, scan, spec, out)
    ts = scan.transfer_syntax
    staged = stage_dir / hashlib.sha256(scan.path.encode()).hexdigest()[:32]
    pixel_part = None
    if spec.j2k is not None and scan.pixel_offset is not None:
        from . import j2k
        reason = j2k.skip_reason(ds, ts, spec.j2k)
        if reason is None:
            pixel_part = tempfile.TemporaryFile(dir=stage_dir)
            with open(scan.path, "rb") as src:
                result = j2k.encode_pixel_data(src, scan.pixel_offset, ds, ts, spec.j2k, pixel_part,
                                               where=scan.path, on_frame=on_frame)
            ts = result.transfer_syntax
            out.j2k = result.to_dict()
        else:
            out.note = reason
    header_ts = ts if ts in NATIVE_LE + ("1.2.840.10008.1.2.2",) else "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    with open(staged, "wb") as f:
        f.write(encode_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), ts))
        f.write(_encode_header(ds, header_ts))
        if pixel_part is not None:
            pixel_part.seek(0)
            shutil.copyfileobj(pixel_part, f, 1 << 20)
            pixel_part.close()
        elif scan.pixel_offset is not None:
            _copy_pixel_element(scan, f)
    out.staged = str(staged)
    out.scan = _scan_staged(staged)
    if out.scan.status != "dicom":
        raise CompressionError(f"transformed file is not valid: {out.scan.reason}", where=scan.path)


def _deidentify(ds, scan: ScanResult, spec: TransformSpec, out: Outcome) -> None:
    """De-identify ``ds``; with re-identification recipients, seal the
    original values into its Encrypted Attributes Sequence."""
    from .deid import Deidentifier
    result = Deidentifier(spec.deid).apply(ds, where=scan.path, keep_originals=bool(spec.reid_pem))
    out.actions = dict(result.actions)
    if spec.reid_pem:
        from cryptography import x509

        from .container.cms import CertRecipient
        from .deid.reid import seal
        recipients = [CertRecipient(x509.load_pem_x509_certificate(pem)) for pem in spec.reid_pem]
        seal(ds, result.originals, result.added, recipients)


def _deidentify_whole(scan: ScanResult, stage_dir: Path, spec: TransformSpec, out: Outcome) -> None:
    """Deflated data sets are read whole (they are small) and written back
    deflated after de-identification."""
    from pydicom import dcmread
    ds = dcmread(scan.path)
    _deidentify(ds, scan, spec, out)
    _remap_uids(ds, dict(spec.lossy_uids))
    staged = stage_dir / hashlib.sha256(scan.path.encode()).hexdigest()[:32]
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(staged, enforce_file_format=True)
    out.staged, out.scan = str(staged), _scan_staged(staged)
    out.note = "deflated: de-identified in memory"


def _scan_staged(staged: Path) -> ScanResult:
    """Scan a file this run wrote, as any input is scanned (the DICOMDIR is
    built from what is in the file); it is ours, so it may be moved."""
    result = scan_file(str(staged))
    result.owned = True
    return result


def _copy_pixel_element(scan: ScanResult, f) -> None:
    """Copy the source's Pixel Data element unchanged (only that element:
    anything after it, e.g. Digital Signatures, is not carried over)."""
    with open(scan.path, "rb") as src:
        src.seek(scan.pixel_offset)
        remaining = scan.pixel_end - scan.pixel_offset
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                raise InvalidInputError("Pixel Data cut short while copying", where=scan.path)
            f.write(chunk)
            remaining -= len(chunk)
