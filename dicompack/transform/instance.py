"""One instance through the transform stages (de-identify, JPEG 2000), in
a worker process: the header is transformed (see ``header``), and the
Pixel Data element is either copied byte for byte from the source or
replaced by the J2K encoder's output, frame by frame.  The result is a new
Part 10 file in the private staging folder."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicompack import standard
from dicompack.codecs import j2k
from dicompack.codecs.j2k import J2KOptions
from dicompack.dcmio import encode_meta
from dicompack.deid import Deidentifier, DeidOptions
from dicompack.deid.reid import seal_for_pem
from dicompack.enums import ScanStatus
from dicompack.errors import CompressionError, DeidentificationError, DicompackError, InvalidInputError, StorageError
from dicompack.scan import ScanResult, scan_file
from dicompack.transform.header import encode_header, read_header, remap_uids, resolve_ambiguous_vrs


@dataclass(frozen=True)
class TransformSpec:
    deid: DeidOptions | None = None
    j2k: J2KOptions | None = None
    lossy_uids: tuple[tuple[str, str], ...] = ()   # (post-deid SOP Instance UID, new UID) pairs
    reid_pem: tuple[bytes, ...] = ()               # PEM certificates of re-identification recipients


@dataclass
class Outcome:
    """What one worker did to one instance (picklable, no PHI)."""
    path: str
    staged: str | None = None
    scan: ScanResult | None = None
    actions: dict[str, int] = field(default_factory=dict)
    j2k: dict[str, Any] | None = None
    note: str = ""
    error: DicompackError | None = None
    stage: str = ""                # the stage that failed: STAGES key

    @property
    def problem(self) -> str:
        """One line for the left-out list: the stage, where in the file
        (a frame) when the error says, then why."""
        error = self._failed()
        where = error.where or ""
        detail = where[len(self.path):].strip() if where.startswith(self.path) else ""
        return f"{self.stage}: {detail + ': ' if detail else ''}{error.message}"

    @property
    def failure(self) -> tuple[str, str]:
        """(where, what) for an error listing: the error's own place (file and frame)."""
        error = self._failed()
        return error.where or self.path, f"{self.stage}: {error.message}"

    def _failed(self) -> DicompackError:
        if self.error is None:
            raise ValueError(f"{self.path}: the transform did not fail")   # a caller's bug: ask failed outcomes only
        return self.error


# The transform stages, in pipeline order, with the error class each
# reports: a run that fails on several exits with the earliest one's code.
STAGES = {"read": InvalidInputError, "de-identification": DeidentificationError,
          "J2K": CompressionError, "write": CompressionError}


def lossy_uid(uid: str) -> str:
    """The new SOP Instance UID of a lossy-compressed instance (PS3.3 C.7.6.1.1.5.1)."""
    digest = hashlib.sha256(b"dicompack-lossy\x00" + uid.encode()).digest()
    return standard.uid_from_digest(digest, nbytes=15)    # as every release derived it (see uid_from_digest)


# How this process reports progress: source bytes done (J2K: frame by frame).
_report_bytes: Callable[[int], None] = lambda n: None


def report_bytes_to(add: Callable[[int], None]) -> None:
    """Worker processes: where ``transform_instance`` reports the source bytes it has done."""
    global _report_bytes
    _report_bytes = add


def lossy_candidate(scan: ScanResult, spec: TransformSpec) -> bool:
    """Will this instance be lossy-compressed (so get a new SOP Instance UID)?"""
    if spec.j2k is None or not spec.j2k.lossy or scan.pixel_offset is None:
        return False
    try:
        return j2k.skip_reason(read_header(scan), scan.transfer_syntax, spec.j2k) is None
    except Exception:   # noqa: BLE001 - refused later, with the error, by transform_instance
        return True


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
        out.error, out.stage = err.located(scan.path), out.stage or _stage_of(err)
    except OSError as err:
        # errno set: the system's (disk full, vanished file); pydicom raises
        # plain OSErrors about the data too
        out.error = (StorageError(err.strerror or str(err), where=scan.path) if err.errno is not None
                     else InvalidInputError(f"cannot transform: {_describe(err)}", where=scan.path))
        out.stage = out.stage or "read"
    except Exception as err:  # noqa: BLE001 - outside any _stage block: a bug of ours; still one line
        out.error, out.stage = InvalidInputError(f"cannot transform: {_describe(err)}", where=scan.path), "read"
    finally:
        _report_bytes(max(0, scan.size - counted[0]))
    if out.error is not None and out.staged:
        Path(out.staged).unlink(missing_ok=True)     # a half-written file is not left to be packed
        out.staged, out.scan = None, None
    return out


@contextmanager
def _stage(out: Outcome, name: str, what: str,
           error_class: type[DicompackError] | None = None) -> Iterator[None]:
    """Name the stage running for ``out``, and turn whatever a library
    raises inside it into that stage's error class, naming the file: one
    line, never a traceback (pydicom and the codecs raise assorted types)."""
    out.stage = name
    try:
        yield
    except DicompackError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise             # the disk, not the instance: a StorageError for the whole run
        raise (error_class or STAGES[name])(f"{what}: {_describe(exc)}", where=out.path) from None
    except Exception as exc:  # noqa: BLE001 - see above
        raise (error_class or STAGES[name])(f"{what}: {_describe(exc)}", where=out.path) from None


def _stage_of(err: DicompackError) -> str:
    for name, cls in STAGES.items():
        if type(err) is cls:
            return name
    return "read"


def _describe(exc: Exception) -> str:
    """A library exception as a short line.  Its class name is kept where
    the text alone says little (KeyError's is just the key)."""
    # pydicom puts a whole traceback into some messages ("With tag ... got
    # exception: ...\nTraceback ..."): only the first part is for the user.
    text = " ".join(str(exc).split("Traceback (most recent call last)")[0].split())
    if not text or isinstance(exc, (LookupError, AttributeError, TypeError)):
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return text if len(text) <= 300 else text[:297] + "..."


def _transform(scan: ScanResult, stage_dir: Path, spec: TransformSpec, out: Outcome,
               on_frame: Callable[[int], None]) -> None:
    if scan.transfer_syntax == standard.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN and spec.deid is None:
        # Deflated data sets are small; recompressing would need the whole
        # inflated data set in memory.  Kept as they are (noted).
        out.scan, out.note = scan, "deflated transfer syntax: kept as it is"
        return
    if scan.transfer_syntax == standard.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        _deidentify_whole(scan, stage_dir, spec, out)
        return
    if spec.deid is None and scan.pixel_offset is None and not spec.lossy_uids:
        out.scan, out.note = scan, "no Pixel Data: kept as it is"
        return
    with _stage(out, "read", "cannot read the header"):
        ds = read_header(scan)
        remapped = remap_uids(ds, dict(spec.lossy_uids))
    if spec.deid is None:
        reason = "no Pixel Data" if scan.pixel_offset is None else _j2k_skip_reason(ds, scan, spec, out)
        if reason is not None and not remapped:
            # Untouched: copied byte for byte like any instance.
            out.scan, out.note = scan, _kept(reason)
            return
    else:
        with _stage(out, "de-identification", "de-identification failed"):
            _deidentify(ds, scan, spec, out)
    staged = stage_dir / hashlib.sha256(scan.path.encode()).hexdigest()[:32]
    with tempfile.TemporaryFile(dir=stage_dir) as pixel_part:
        ts = _encode_pixels(ds, scan, spec, out, pixel_part, on_frame)
        header_ts = ts if ts in standard.NATIVE_SYNTAXES else standard.EXPLICIT_VR_LITTLE_ENDIAN
        with _stage(out, "write", "cannot encode the transformed header",
                    DeidentificationError if spec.deid is not None else CompressionError):
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta = encode_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), ts)
            header = encode_header(ds, header_ts)
        out.stage = "write"
        with open(staged, "wb") as f:
            out.staged = str(staged)
            f.write(meta)
            f.write(header)
            if out.j2k is not None:
                pixel_part.seek(0)
                shutil.copyfileobj(pixel_part, f, 1 << 20)
            elif scan.pixel_offset is not None:
                _copy_pixel_element(scan, f)
    out.scan = _scan_staged(staged)
    if out.scan.status != ScanStatus.DICOM:
        raise (DeidentificationError if spec.deid is not None else CompressionError)(
            f"transformed file is not valid: {out.scan.reason}", where=scan.path)


def _kept(reason: str) -> str:
    return reason if reason.endswith("kept as it is") or "(--transcode" in reason else reason + ": kept as it is"


def _j2k_skip_reason(ds: Dataset, scan: ScanResult, spec: TransformSpec, out: Outcome) -> str | None:
    """Why the J2K stage leaves this instance's Pixel Data as it is (None:
    it encodes it): the header's reasons, then the Pixel Data element's own."""
    if spec.j2k is None:
        return "no JPEG 2000 asked for"
    if scan.pixel_offset is None:
        return "no Pixel Data"
    with _stage(out, "J2K", "cannot prepare JPEG 2000 encoding"):
        reason = j2k.skip_reason(ds, scan.transfer_syntax, spec.j2k)
        if reason is None:
            with open(scan.path, "rb") as src:
                reason = j2k.pixel_element_skip_reason(src, scan.pixel_offset, scan.transfer_syntax)
    return reason


_CODEC_NAMES = {j2k.Codec.J2K: "JPEG 2000", j2k.Codec.HTJ2K: "HTJ2K", j2k.Codec.JPEGLS: "JPEG-LS"}


def _encode_pixels(ds: Dataset, scan: ScanResult, spec: TransformSpec, out: Outcome, pixel_part: IO[bytes],
                   on_frame: Callable[[int], None]) -> str:
    """JPEG 2000 (or HTJ2K, JPEG-LS) into ``pixel_part`` when asked for and possible; return the
    transfer syntax of the Pixel Data that will be written."""
    if spec.j2k is None or scan.pixel_offset is None:
        return scan.transfer_syntax
    reason = _j2k_skip_reason(ds, scan, spec, out)
    if reason is not None:
        out.note = _kept(reason)
        return scan.transfer_syntax
    with _stage(out, "J2K", f"{_CODEC_NAMES[spec.j2k.codec]} encoding failed"), open(scan.path, "rb") as src:
        result = j2k.encode_pixel_data(src, scan.pixel_offset, ds, scan.transfer_syntax, spec.j2k,
                                       pixel_part, where=scan.path, on_frame=on_frame)
    out.j2k = result.to_dict()
    return result.transfer_syntax


def _deidentify(ds: Dataset, scan: ScanResult, spec: TransformSpec, out: Outcome) -> None:
    """De-identify ``ds``; with re-identification recipients, seal the
    original values into its Encrypted Attributes Sequence."""
    if spec.deid is None:
        raise DeidentificationError("no de-identification options", where=scan.path)   # a caller's bug
    result = Deidentifier(spec.deid).apply(ds, where=scan.path, keep_originals=bool(spec.reid_pem))
    out.actions = dict(result.actions)
    # Lossy maps are keyed on de-identified UIDs, so they apply only now; and
    # before sealing, which binds the payload to the final SOP Instance UID.
    remap_uids(ds, dict(spec.lossy_uids))
    if spec.reid_pem:
        seal_for_pem(ds, result.originals, result.added, spec.reid_pem)


def _deidentify_whole(scan: ScanResult, stage_dir: Path, spec: TransformSpec, out: Outcome) -> None:
    """Deflated data sets are read whole (they are small) and written back
    deflated after de-identification."""
    with _stage(out, "read", "cannot read the deflated data set"):
        ds = dcmread(scan.path)
    with _stage(out, "de-identification", "de-identification failed"):
        _deidentify(ds, scan, spec, out)
        remap_uids(ds, dict(spec.lossy_uids))
    staged = stage_dir / hashlib.sha256(scan.path.encode()).hexdigest()[:32]
    with _stage(out, "write", "cannot encode the de-identified data set", DeidentificationError):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        resolve_ambiguous_vrs(ds, little_endian=True)
        out.staged = str(staged)
        ds.save_as(staged, enforce_file_format=True)
    out.scan = _scan_staged(staged)
    out.note = "deflated: de-identified in memory"
    if out.scan.status != ScanStatus.DICOM:
        raise DeidentificationError(f"de-identified file is not valid: {out.scan.reason}", where=scan.path)


def _scan_staged(staged: Path) -> ScanResult:
    """Scan a file this run wrote, as any input is scanned (the DICOMDIR is
    built from what is in the file); it is ours, so it may be moved."""
    result = scan_file(str(staged))
    result.owned = True
    return result


def _copy_pixel_element(scan: ScanResult, f: IO[bytes]) -> None:
    """Copy the source's Pixel Data element unchanged (only that element:
    anything after it, e.g. Digital Signatures, is not carried over)."""
    if scan.pixel_offset is None or scan.pixel_end is None:
        return                          # the scan found no Pixel Data element: nothing to copy
    with open(scan.path, "rb") as src:
        src.seek(scan.pixel_offset)
        remaining = scan.pixel_end - scan.pixel_offset
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                raise InvalidInputError("Pixel Data cut short while copying", where=scan.path)
            f.write(chunk)
            remaining -= len(chunk)
