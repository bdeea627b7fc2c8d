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
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dicompack.errors import CompressionError, DeidentificationError, DicompackError, InvalidInputError, StorageError
from dicompack.fileset.dicomdir import encode_meta
from dicompack.scan import ScanResult, scan_file

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
    stage: str = ""                # the stage that failed: STAGES key

    @property
    def problem(self) -> str:
        """One line for the left-out list: the stage, where in the file
        (a frame) when the error says, then why."""
        where = self.error.where or ""
        detail = where[len(self.path):].strip() if where.startswith(self.path) else ""
        return f"{self.stage}: {detail + ': ' if detail else ''}{self.error.message}"

    @property
    def failure(self) -> tuple[str, str]:
        """(where, what) for an error listing: the error's own place (file and frame)."""
        return self.error.where or self.path, f"{self.stage}: {self.error.message}"


# The transform stages, in pipeline order, with the error class each
# reports: a run that fails on several exits with the earliest one's code.
STAGES = {"read": InvalidInputError, "de-identification": DeidentificationError,
          "J2K": CompressionError, "write": CompressionError}


def lossy_uid(uid: str) -> str:
    """The new SOP Instance UID of a lossy-compressed instance (PS3.3 C.7.6.1.1.5.1)."""
    digest = hashlib.sha256(b"dicompack-lossy\x00" + uid.encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:15], "big"))


def _read_header(scan: ScanResult):
    from pydicom import dcmread
    with open(scan.path, "rb") as f:
        if scan.has_preamble:
            ds = dcmread(f, stop_before_pixels=True)
            _true_encoding(ds, scan.transfer_syntax)
            return ds
        ds = dcmread(f, force=True, stop_before_pixels=True)
    from pydicom.dataset import FileMetaDataset
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = scan.transfer_syntax
    return ds


def _true_encoding(ds, transfer_syntax: str) -> None:
    """When the File Meta names another encoding than the data set's (the
    scan found which; pydicom reads the right one but records the File
    Meta's), record the real one: pydicom re-encodes from it, and would
    otherwise write implicit VR elements into an explicit VR header
    ("encoding without a string argument")."""
    encoding = (transfer_syntax == "1.2.840.10008.1.2", transfer_syntax != "1.2.840.10008.1.2.2")
    if ds.original_encoding != encoding:
        ds.set_original_encoding(*encoding, ds.original_character_set)


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
    debris = [t for t in ds.keys() if t.group == 0xFFFE]
    if debris:
        raise InvalidInputError(f"an item tag {debris[0]} stands among the data elements "
                                "(a broken encoding): the header cannot be written again")
    if not buf.is_implicit_VR:
        _resolve_ambiguous_vrs(ds, little_endian=buf.is_little_endian)
    write_dataset(buf, ds)
    return buf.getvalue()


# The VR an ambiguous element gets when the data set does not say which
# (PS3.5 A.1 c: implicit VR data is written OW, and OW is valid explicitly).
_AMBIGUOUS_FALLBACK = {"OB or OW": "OW", "US or OW": "OW", "US or SS or OW": "OW", "US or SS": "US"}


def _resolve_ambiguous_vrs(ds, *, little_endian: bool, ancestors: list | None = None) -> None:
    """Give every element whose dictionary VR is ambiguous ('OB or OW',
    'US or SS' ...) one VR before an explicit VR encoding.  pydicom does this
    only when the encoding changes, and not for every tag (Curve Data of old
    RT Images, waveforms without Waveform Bits Allocated), then refuses to
    write.  Its own rules first (Bits Allocated, Pixel Representation, LUT
    Descriptor); the fallback where they cannot decide.  Only sequences and
    ambiguous elements are decoded: the rest stays raw."""
    from pydicom.datadict import dictionary_VR
    from pydicom.filewriter import correct_ambiguous_vr_element
    ancestors = [ds] + (ancestors or [])
    for tag in list(ds.keys()):
        vr = ds.get_item(tag).VR
        if not vr or vr == "UN":
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr == "SQ":
            for item in ds[tag].value or []:
                _resolve_ambiguous_vrs(item, little_endian=little_endian, ancestors=ancestors)
        elif " or " in vr:
            elem = ds[tag]
            try:
                correct_ambiguous_vr_element(elem, ds, little_endian, ancestors)
            except Exception:  # noqa: BLE001 - an attribute it needs is missing: the fallback decides
                pass
            if " or " in elem.VR:
                signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
                elem.VR = "SS" if elem.VR == "US or SS" and signed else _AMBIGUOUS_FALLBACK.get(elem.VR, "UN")


def lossy_candidate(scan: ScanResult, spec: TransformSpec) -> bool:
    """Will this instance be lossy-compressed (so get a new SOP Instance UID)?"""
    from dicompack.codecs import j2k
    if spec.j2k is None or not spec.j2k.lossy or scan.pixel_offset is None:
        return False
    try:
        return j2k.skip_reason(_read_header(scan), scan.transfer_syntax, spec.j2k) is None
    except Exception:   # noqa: BLE001 - refused later, with the error, by transform_instance
        return True


# ---------------------------------------------------------------- the stage

# How a worker reports progress: source bytes done (J2K: frame by frame).
_report_bytes: Callable[[int], None] = lambda n: None


def _count_into(counter) -> None:
    """Pool initializer: report progress into a shared counter, and keep
    library warnings out of the user's terminal (see ``quiet_libraries``)."""
    global _report_bytes
    quiet_libraries()

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

    def __enter__(self) -> Workers:
        if self.jobs > 1:
            from dicompack.parallel import process_pool, shared_counter
            self.counter = shared_counter()
            self.pool = process_pool(max(1, min(self.jobs, self.count)), initializer=_count_into,
                                     initargs=(self.counter,))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.pool is None:
            return
        if exc_type is None:
            self.pool.shutdown(wait=True)
        else:
            # Failed, cancelled or terminated: end the workers now, before
            # the caller removes the staging folder they write into.
            from dicompack.parallel import stop
            stop(self.pool)

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


def quiet_libraries() -> None:
    """Worker processes only (they are ours; a library call in a caller's
    thread must not change the process-wide filters): pydicom's value
    checks and the codecs warn about the input on stderr, and a worker
    started by forkserver or spawn does not inherit the CLI's filter.  What
    matters about an instance reaches the report as a note or an error."""
    import sys
    if sys.warnoptions:          # -W / PYTHONWARNINGS: a developer asked to see them
        return
    warnings.filterwarnings("ignore", category=UserWarning)      # pydicom's warn_and_log, GetPassWarning
    for library in ("pydicom", "openjpeg", "numpy", "pylibjpeg", "libjpeg", "jpeg_ls"):
        warnings.filterwarnings("ignore", module=rf"{library}(\.|$)")


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
        err.where = err.where or scan.path
        out.error, out.stage = err, out.stage or _stage_of(err)
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
def _stage(out: Outcome, name: str, what: str, error_class: type | None = None):
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
    with _stage(out, "read", "cannot read the header"):
        ds = _read_header(scan)
        remapped = _remap_uids(ds, dict(spec.lossy_uids))
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
        header_ts = ts if ts in NATIVE_LE + ("1.2.840.10008.1.2.2",) else "1.2.840.10008.1.2.1"
        with _stage(out, "write", "cannot encode the transformed header",
                    DeidentificationError if spec.deid is not None else CompressionError):
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta = encode_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), ts)
            header = _encode_header(ds, header_ts)
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
    if out.scan.status != "dicom":
        raise (DeidentificationError if spec.deid is not None else CompressionError)(
            f"transformed file is not valid: {out.scan.reason}", where=scan.path)


def _kept(reason: str) -> str:
    return reason if reason.endswith("kept as it is") or "(--transcode" in reason else reason + ": kept as it is"


def _j2k_skip_reason(ds, scan: ScanResult, spec: TransformSpec, out: Outcome) -> str | None:
    """Why the J2K stage leaves this instance's Pixel Data as it is (None:
    it encodes it): the header's reasons, then the Pixel Data element's own."""
    from dicompack.codecs import j2k
    with _stage(out, "J2K", "cannot prepare JPEG 2000 encoding"):
        reason = j2k.skip_reason(ds, scan.transfer_syntax, spec.j2k)
        if reason is None:
            with open(scan.path, "rb") as src:
                reason = j2k.pixel_element_skip_reason(src, scan.pixel_offset, scan.transfer_syntax)
    return reason


def _encode_pixels(ds, scan: ScanResult, spec: TransformSpec, out: Outcome, pixel_part,
                   on_frame: Callable[[int], None]) -> str:
    """JPEG 2000 into ``pixel_part`` when asked for and possible; return the
    transfer syntax of the Pixel Data that will be written."""
    from dicompack.codecs import j2k
    if spec.j2k is None or scan.pixel_offset is None:
        return scan.transfer_syntax
    reason = _j2k_skip_reason(ds, scan, spec, out)
    if reason is not None:
        out.note = _kept(reason)
        return scan.transfer_syntax
    with _stage(out, "J2K", "JPEG 2000 encoding failed"), open(scan.path, "rb") as src:
        result = j2k.encode_pixel_data(src, scan.pixel_offset, ds, scan.transfer_syntax, spec.j2k,
                                       pixel_part, where=scan.path, on_frame=on_frame)
    out.j2k = result.to_dict()
    return result.transfer_syntax


def _deidentify(ds, scan: ScanResult, spec: TransformSpec, out: Outcome) -> None:
    """De-identify ``ds``; with re-identification recipients, seal the
    original values into its Encrypted Attributes Sequence."""
    from dicompack.deid import Deidentifier
    result = Deidentifier(spec.deid).apply(ds, where=scan.path, keep_originals=bool(spec.reid_pem))
    out.actions = dict(result.actions)
    # Lossy maps are keyed on de-identified UIDs, so they apply only now; and
    # before sealing, which binds the payload to the final SOP Instance UID.
    _remap_uids(ds, dict(spec.lossy_uids))
    if spec.reid_pem:
        from cryptography import x509

        from dicompack.container.cms import CertRecipient
        from dicompack.deid.reid import seal
        recipients = [CertRecipient(x509.load_pem_x509_certificate(pem)) for pem in spec.reid_pem]
        seal(ds, result.originals, result.added, recipients)


def _deidentify_whole(scan: ScanResult, stage_dir: Path, spec: TransformSpec, out: Outcome) -> None:
    """Deflated data sets are read whole (they are small) and written back
    deflated after de-identification."""
    from pydicom import dcmread
    with _stage(out, "read", "cannot read the deflated data set"):
        ds = dcmread(scan.path)
    with _stage(out, "de-identification", "de-identification failed"):
        _deidentify(ds, scan, spec, out)
        _remap_uids(ds, dict(spec.lossy_uids))
    staged = stage_dir / hashlib.sha256(scan.path.encode()).hexdigest()[:32]
    with _stage(out, "write", "cannot encode the de-identified data set", DeidentificationError):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        _resolve_ambiguous_vrs(ds, little_endian=True)
        out.staged = str(staged)
        ds.save_as(staged, enforce_file_format=True)
    out.scan = _scan_staged(staged)
    out.note = "deflated: de-identified in memory"
    if out.scan.status != "dicom":
        raise DeidentificationError(f"de-identified file is not valid: {out.scan.reason}", where=scan.path)


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
