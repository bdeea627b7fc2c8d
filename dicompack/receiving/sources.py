"""Receiving packages: decide what a package must prove (the receive
policy), verify it (decryption, signature and signer chain, ZIP structure,
CRCs, manifest hashes, the packaged File-set) and restore it atomically.

Nothing is restored before everything is verified: every source is
decrypted and extracted into a private staging folder beside the
destination, checked there, and only then renamed (or merged) into place.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dicompack.container.manifest import MANIFEST_NAME, parse_manifest
from dicompack.container.zip import ZipLimits, ZipReader, extract_atomically
from dicompack.errors import (
    DicompackError,
    PackageInvalidError,
    SignerUntrustedError,
    UnsafeArchiveError,
    UnsignedPackageError,
    UsageError,
)
from dicompack.fileset.check import check_fileset
from dicompack.fileset.dicomdir import Finding, read_dicomdir
from dicompack.fileset.layout import sha256_file
from dicompack.output import _replace, check_destination, marked_folder, private_tempdir, sweep_stale
from dicompack.report import Progress, UnpackReport, VerifyReport

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
CMS_MAGIC = b"\x30"                      # a DER/BER SEQUENCE: a CMS ContentInfo
DESCRIPTOR_LIMIT = 64 << 10              # the only unverified file we restore is this small
MAX_FOLDER_DEPTH = 8                     # PS3.10: a File ID has at most 8 components
MAX_LISTED_MISSING = 100                 # missing files named one by one; the count says the rest


def sniff(path: Path) -> str:
    """'zip', 'cms' or 'fileset' — by content, not by name."""
    if path.is_dir():
        return "fileset"
    if not path.is_file():      # a FIFO or device would block or never end
        raise UsageError("not a regular file or folder", where=str(path))
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] in ZIP_MAGIC:
        return "zip"
    if head[:1] == CMS_MAGIC:
        return "cms"
    if path.name.upper() == "DICOMDIR":
        return "fileset"
    raise PackageInvalidError("not a dicompack package, ZIP, CMS file or File-set", where=str(path))


# ---------------------------------------------------------------- policy

@dataclass(frozen=True)
class ReceivePolicy:
    """What every package and every volume must prove before anything of it
    is restored.  Safe by default: as soon as the receiver shows it expects
    a secure package (a key, a password or a trust anchor), a plain or
    unsigned package is a downgrade and is refused unless relaxed by name."""
    require_encrypted: bool
    require_signed: bool
    relaxed: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"require_encrypted": self.require_encrypted, "require_signed": self.require_signed,
                "relaxed": list(self.relaxed)}

    def refuse_plain(self, where: str) -> None:
        """A package or volume that is not encrypted (a plain ZIP or folder)."""
        if self.require_encrypted:
            raise UnsignedPackageError(
                "not encrypted and signed, but key material or --trust was given, so every package "
                "and volume must be; use --allow-plain to accept a plain package", where=where)


def policy_for(options) -> ReceivePolicy:
    refuse_keys_without_anchors(options)
    keyed = options.key is not None or options.password is not None or bool(options.trust)
    if not keyed:       # nothing to decrypt or trust with: plain packages are all there can be
        return ReceivePolicy(require_encrypted=False, require_signed=False)
    relaxed = tuple(flag for flag, on in (("--allow-plain", getattr(options, "allow_plain", False)),
                                          ("--allow-unsigned", options.allow_unsigned),
                                          ("--legacy", getattr(options, "legacy", False))) if on)
    return ReceivePolicy(require_encrypted="--allow-plain" not in relaxed,
                         require_signed="--allow-unsigned" not in relaxed, relaxed=relaxed)


def refuse_keys_without_anchors(options) -> None:
    """A key or password without --trust cannot tell a signer from anyone
    who holds our public certificate: every signed package would then fail
    as if tampered (under CBC a trust failure must look like one).  Say so
    before any work.  --allow-unsigned and --allow-plain accept packages
    without origin (DigestedData; a plain ZIP or folder, e.g. for
    reidentify's sealed payloads): a *signed* package still needs --trust."""
    if (options.key is not None or options.password is not None) and not options.trust \
            and not options.allow_unsigned and not getattr(options, "allow_plain", False):
        raise UsageError("no --trust anchors: cannot establish who signed the package; give --trust "
                         "CA.pem, or --allow-unsigned to accept integrity without origin")


def protection_of(secure: dict) -> str:
    """What a source proved beyond CRCs and manifest hashes: "none" (a plain
    ZIP or folder: anyone in transit can rewrite it and its manifest),
    "encrypted+signed", or "encrypted+digested" (--allow-unsigned)."""
    if not secure:
        return "none"
    parts = ["encrypted"] if secure.get("content_encryption") else []
    parts.append("signed" if secure.get("signed") else "digested")
    return "+".join(parts)


@dataclass
class ReceivedReport(VerifyReport):
    """A verify report with the policy it was verified under and the files
    restored without verification (at most the File-set Descriptor)."""
    policy: dict = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    protection: str = "none"


@dataclass
class ReceivedUnpackReport(UnpackReport):
    policy: dict = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    protection: str = "none"


# ---------------------------------------------------------------- ZIP packages

@dataclass
class ZipCheck:
    entries: int = 0
    manifest: dict | None = None
    findings: list[Finding] = field(default_factory=list)
    records: int = 0
    files: int = 0
    fileset_id: str = ""
    digests: dict[str, str] = field(default_factory=dict)


def _manifest_findings(digests: dict[str, str], manifest: dict) -> list[Finding]:
    """Compare the SHA-256 of every extracted entry with the manifest's."""
    out = []
    listed = {e["name"] for e in manifest["entries"]}
    for entry in manifest["entries"]:
        digest = digests.get(entry["name"])
        if digest is None:
            out.append(Finding("error", entry["name"], "listed in the manifest but missing from the ZIP"))
        elif digest != entry["sha256"]:
            out.append(Finding("error", entry["name"], "SHA-256 differs from the manifest (damaged or altered)"))
    for name in digests:
        if name not in listed and name != MANIFEST_NAME:
            out.append(Finding("error", name, "in the ZIP but not listed in the manifest"))
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
        result.findings += _manifest_findings(result.digests, result.manifest)
    else:
        result.findings.append(Finding("warning", "ZIP", f"no {MANIFEST_NAME} manifest: not made by "
                                                         "dicompack; integrity rests on CRCs only"))
    if not fileset:
        return
    dd, findings, files = check_fileset(root, jobs=jobs)
    # The manifest is ours and allowed by PS3.12 Annex V; not an orphan.
    result.findings += [f for f in findings if f.where != MANIFEST_NAME]
    result.files = files
    if dd is not None:
        result.records, result.fileset_id = len(dd.records), dd.fileset_id


# ---------------------------------------------------------------- folders of Secure DICOM Files

def _regular_files(root: Path, limit: int) -> list[tuple[str, Path, int]]:
    """(File ID with '/', path, size) of every file under ``root``, walked
    without following symlinks.  A symlink, a special file or a folder
    deeper than any File ID refuses the whole folder: nothing in a received
    folder may point at, or stand in for, anything outside it."""
    found: list[tuple[str, Path, int]] = []
    pending = [(Path(root), ())]
    while pending:
        folder, parts = pending.pop()
        with os.scandir(folder) as it:
            for entry in it:
                rel = parts + (entry.name,)
                where = "/".join(rel)
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError("symbolic link in a folder of Secure DICOM Files", where=where)
                if stat.S_ISDIR(mode):
                    if len(rel) >= MAX_FOLDER_DEPTH:
                        raise UnsafeArchiveError(f"folder nested deeper than a File ID "
                                                 f"({MAX_FOLDER_DEPTH} components)", where=where)
                    pending.append((Path(entry.path), rel))
                elif stat.S_ISREG(mode):
                    found.append((where, Path(entry.path), entry.stat(follow_symlinks=False).st_size))
                    if len(found) > limit:
                        raise UnsafeArchiveError(f"more than {limit} files", where=str(root))
                else:
                    raise UnsafeArchiveError("special file (device, FIFO or socket) in a folder of "
                                             "Secure DICOM Files", where=where)
    return sorted(found)


def _open_no_follow(path: Path):
    """The walk saw a regular file: refuse one swapped for a link since."""
    try:
        return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeArchiveError("symbolic link in a folder of Secure DICOM Files", where=path.name) from None
        raise exc


def _is_cms(path: Path) -> bool:
    with _open_no_follow(path) as f:
        return f.read(1) == CMS_MAGIC


def _signer_of(report: dict) -> tuple:
    """Whether signed, and by which set of signers (subject, issuer): a file
    signed by [A, B] is not one signed by [A] (every signer counts)."""
    signers = report.get("signers") or (
        [{"subject": report.get("signer_subject"), "issuer": report.get("signer_issuer")}]
        if report.get("signer_subject") else [])
    return bool(report.get("signed")), tuple(sorted({(s.get("subject"), s.get("issuer")) for s in signers}))


def _signer_names(report: dict) -> str:
    return " + ".join(subject for subject, _ in _signer_of(report)[1]) or "nobody"


class _SecureFolder:
    """Decrypts and verifies a folder of Secure DICOM Files (PS3.10 7.4)
    into ``out``.  The verified DICOMDIR decides which files may exist:
    the files it references, the manifest of a volume, and the File-set
    Descriptor it names (the one file that may be plain: PS3.10 does not
    secure it; it is restored only when small and is reported unverified)."""

    def __init__(self, root: Path, out: Path, keys: dict):
        self.root, self.out, self.keys = Path(root), Path(out), keys
        self.unverified: list[str] = []
        self.opened = 0

    def open(self, limit: int) -> dict:
        files = {rel: (path, size) for rel, path, size in _regular_files(self.root, limit)}
        if "DICOMDIR" not in files or not _is_cms(files["DICOMDIR"][0]):
            raise UnsafeArchiveError("no Secure DICOM File DICOMDIR at the root", where=str(self.root))
        first = self._decrypt("DICOMDIR", files.pop("DICOMDIR")[0])
        dd = read_dicomdir(self.out / "DICOMDIR")
        referenced = {"/".join(r.file_id) for r in dd.records if r.in_use and r.file_id}
        descriptor = "/".join(dd.descriptor) if dd.descriptor else None
        self._refuse_missing(referenced, files)
        for rel, (path, size) in files.items():
            if rel == descriptor and rel not in referenced and not _is_cms(path):
                self._copy_descriptor(rel, path, size)
                continue
            if rel not in referenced and rel not in (MANIFEST_NAME, descriptor):
                raise UnsafeArchiveError("not referenced by the verified DICOMDIR", where=rel)
            if not _is_cms(path):
                raise UnsafeArchiveError("not a Secure DICOM File (plain file among Secure DICOM Files)",
                                         where=rel)
            report = self._decrypt(rel, path)
            self._same_signer(rel, report, first)
        return first | {"secure_files": self.opened}

    @staticmethod
    def _refuse_missing(referenced: set[str], files: dict) -> None:
        """A file dropped from the folder (in transit, or by a bad copy) is
        missing from the File-set the signer made: refused here, for verify
        and for every unpack (--rebuild too: nothing else binds the files
        of a folder without manifest to the verified DICOMDIR)."""
        missing = sorted(referenced - set(files) - {"DICOMDIR"})
        if missing:
            raise PackageInvalidError(
                f"referenced file does not exist ({len(missing)} referenced by the verified DICOMDIR "
                "missing)", where=missing[0],
                findings=[{"severity": "error", "where": rel, "what": "referenced file does not exist"}
                          for rel in missing[:MAX_LISTED_MISSING]])

    def _decrypt(self, rel: str, path: Path) -> dict:
        from dicompack.container.cms import open_secure_package
        dest = self.out.joinpath(*rel.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with _open_no_follow(path) as src, os.fdopen(fd, "wb") as f:
            try:
                report = open_secure_package(src, f, **self.keys)
            except Exception as err:
                if hasattr(err, "where"):
                    err.where = f"{rel}: {err.where}" if err.where else rel
                raise
        self.opened += 1
        return report.to_dict()

    def _same_signer(self, rel: str, report: dict, first: dict) -> None:
        """Every file carries the DICOMDIR's signer: a file moved in from
        another package, or an unsigned one encrypted by anyone holding our
        certificate, does not belong to this File-set."""
        if _signer_of(report) == _signer_of(first):
            return
        if first.get("signed") and not report.get("signed"):
            raise UnsignedPackageError("not signed, although the DICOMDIR is", where=rel)
        raise SignerUntrustedError(f"signed by {_signer_names(report)}, the DICOMDIR "
                                   f"by {_signer_names(first)}", where=rel)

    def _copy_descriptor(self, rel: str, path: Path, size: int) -> None:
        if size > DESCRIPTOR_LIMIT:
            raise UnsafeArchiveError(f"plain File-set Descriptor larger than {DESCRIPTOR_LIMIT} bytes",
                                     where=rel)
        dest = self.out.joinpath(*rel.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _open_no_follow(path) as src, open(dest, "xb") as f:
            f.write(src.read(DESCRIPTOR_LIMIT + 1)[:DESCRIPTOR_LIMIT])
        self.unverified.append(rel)


def is_secure_folder(root: Path) -> bool:
    """A folder whose DICOMDIR is a regular file holding CMS (not a link)."""
    dicomdir = Path(root) / "DICOMDIR"
    try:
        if not stat.S_ISREG(os.lstat(dicomdir).st_mode):
            return False
    except OSError:
        return False
    return _is_cms(dicomdir)


def open_secure_folder(root: Path, out: Path, *, key, cert, password, trust, allow_unsigned: bool,
                       limit: int = ZipLimits().max_entries, legacy: bool = False) -> tuple[dict, list[str]]:
    """Decrypt and verify every Secure DICOM File of ``root`` into ``out``;
    return (the DICOMDIR's secure report + file count, unverified files)."""
    folder = _SecureFolder(root, out, dict(key=key, cert=cert, password=password, trust=list(trust),
                                           allow_unsigned=allow_unsigned, legacy=legacy))
    secure = folder.open(limit)
    return secure, folder.unverified


def _folder_digests(root: Path) -> dict[str, str]:
    return {rel: sha256_file(path) for rel, path, _ in _regular_files(root, ZipLimits().max_entries)}


# ---------------------------------------------------------------- one source

@dataclass
class Source:
    """One received package or volume, verified, its File-set staged at ``root``."""
    label: str
    root: Path
    report: ReceivedReport
    summary: dict = field(default_factory=dict)     # the manifest's "fileset" (instance counts)


def _open_cms(path: Path, label: str, options, stack: ExitStack, progress: Progress) -> tuple[Path, dict]:
    """Decrypt and fully verify a secure package into a private spool (0600
    in a 0700 folder, removed on every path); return the spool and report."""
    if options.key is None and options.password is None:
        raise UsageError("secure package: give --key/--cert, --p12 or --password-file", where=label)
    from dicompack.container.cms import open_secure_package
    spool = stack.enter_context(private_tempdir("spool")) / "package.zip"
    fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    done = [0]

    def on_bytes(n: int) -> None:
        done[0] += n
        progress("verify", 0, 1, done[0])

    with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
        secure = open_secure_package(src, out, key=options.key, cert=options.cert, password=options.password,
                                     trust=list(options.trust), allow_unsigned=options.allow_unsigned,
                                     on_bytes=on_bytes, legacy=getattr(options, "legacy", False))
    return spool, secure.to_dict()


def _zip_source(path: Path, label: str, options, policy: ReceivePolicy, stack: ExitStack, parent: Path,
                progress: Progress, fileset: bool) -> Source:
    kind = sniff(path)
    if kind == "cms":
        zip_path, secure = _open_cms(path, label, options, stack, progress)
        admit = None
    else:
        zip_path, secure = path, {}
        admit = lambda: policy.refuse_plain(label)   # noqa: E731 - before any byte is extracted
    root, result, reader = stack.enter_context(
        staged_zip(zip_path, parent, limits=options.limits or ZipLimits(), admit=admit))
    check_zip_contents(root, reader, result, progress, jobs=options.jobs, fileset=fileset)
    report = ReceivedReport(path=label, kind="secure" if secure else "zip", entries=result.entries,
                            fileset_id=result.fileset_id, records=result.records, files=result.files,
                            findings=[f.to_dict() for f in result.findings], secure=secure,
                            policy=policy.to_dict(), protection=protection_of(secure))
    summary = {}
    if result.manifest:
        report.package_uid = result.manifest.get("package_uid", "")
        report.volume = result.manifest.get("volume", {})
        summary = result.manifest.get("fileset", {})
    return Source(label, root, report, summary)


def _folder_source(path: Path, label: str, options, policy: ReceivePolicy, stack: ExitStack, parent: Path,
                   fileset: bool) -> Source:
    folder = path if path.is_dir() else path.parent
    if not is_secure_folder(folder):
        policy.refuse_plain(label)
        report = ReceivedReport(path=label, kind="fileset", policy=policy.to_dict())
        _fill_fileset_findings(report, folder, options.jobs)
        return Source(label, folder, report)
    if options.key is None and options.password is None:
        raise UsageError("Secure DICOM Files: give --key/--cert, --p12 or --password-file", where=label)
    out = stack.enter_context(private_tempdir("spool", parent)) / "fileset"
    out.mkdir()
    try:
        secure, unverified = open_secure_folder(folder, out, key=options.key, cert=options.cert,
                                                password=options.password, trust=list(options.trust),
                                                allow_unsigned=options.allow_unsigned,
                                                legacy=getattr(options, "legacy", False))
    except DicompackError as err:      # name the file by its place in the folder given
        err.where = f"{label.rstrip('/')}/{err.where}" if err.where and err.where != str(folder) else label
        raise
    report = ReceivedReport(path=label, kind="secure-fileset", secure=secure, policy=policy.to_dict(),
                            protection=protection_of(secure))
    summary = _check_folder_manifest(report, out, unverified)
    report.unverified = unverified
    if fileset:
        _fill_fileset_findings(report, out, options.jobs)
    return Source(label, out, report, summary)


def _check_folder_manifest(report: ReceivedReport, root: Path, unverified: list[str]) -> dict:
    """A volume's (decrypted, verified) manifest binds the files together
    by SHA-256 — the README too, which then counts as verified.  Returns
    the manifest's File-set summary."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return {}
    manifest = parse_manifest(path.read_bytes())
    digests = _folder_digests(root)
    findings = _manifest_findings(digests, manifest)
    report.findings += [f.to_dict() for f in findings]
    report.package_uid = manifest.get("package_uid", "")
    report.volume = manifest.get("volume", {})
    if not findings:
        listed = {e["name"] for e in manifest["entries"]}
        unverified[:] = [rel for rel in unverified if rel not in listed]
    return manifest.get("fileset", {})


def _fill_fileset_findings(report: ReceivedReport, root: Path, jobs: int | None) -> None:
    dd, findings, files = check_fileset(root, jobs=jobs)
    report.findings += [f.to_dict() for f in findings if f.where != MANIFEST_NAME]
    report.files = files
    if dd is not None:
        report.fileset_id, report.records = dd.fileset_id, len(dd.records)


def open_source(path: Path, label: str, options, policy: ReceivePolicy, stack: ExitStack, parent: Path,
                progress: Progress, *, fileset: bool = True) -> Source:
    """Verify one package, volume or folder under ``policy`` and stage its
    File-set privately under ``parent`` (kept until ``stack`` closes)."""
    if sniff(path) == "fileset":
        return _folder_source(path, label, options, policy, stack, parent, fileset)
    return _zip_source(path, label, options, policy, stack, parent, progress, fileset)


# ---------------------------------------------------------------- unpack

def _raise_errors(source: Source) -> None:
    errors = [f for f in source.report.findings if f["severity"] == "error"]
    if errors:
        where = errors[0]["where"]     # "File-set": the whole source, named as the user gave it
        raise PackageInvalidError(errors[0]["what"], where=source.label if where == "File-set" else where,
                                  findings=errors)


def _check_volume_set(sources: list[Source], *, rebuild: bool) -> None:
    """The sources are one whole packing: a package on its own, or every
    volume of one split package (same package UID -- a random UID per
    packing, covered by the signature in secure volumes -- each index once,
    none missing).  A volume alone is refused too: a man in the middle who
    drops volumes must not turn a study into a silently partial one.  Only
    --rebuild merges several sources without manifest (foreign ZIPs)."""
    manifested = [s for s in sources if s.report.package_uid]
    if not manifested:
        if len(sources) > 1 and not rebuild:
            raise PackageInvalidError("several sources given, but this one is not a volume of a split "
                                      "package (no volume manifest)", where=sources[0].label)
        return
    for s in sources:
        if not s.report.package_uid:
            raise PackageInvalidError("not a volume of a split package (no volume manifest), but "
                                      f"{manifested[0].label} is", where=s.label)
    first = sources[0].report
    count = first.volume.get("count", 1)
    seen: dict[int, str] = {}
    for s in sources:
        r = s.report
        if r.package_uid != first.package_uid:
            raise PackageInvalidError(f"volume of another package ({r.package_uid}, expected "
                                      f"{first.package_uid}): volumes of different packings never merge",
                                      where=s.label)
        index = r.volume.get("index", 1)
        if r.volume.get("count", 1) != count or index in seen or not 1 <= index <= count:
            raise PackageInvalidError(f"volume {index} of {r.volume.get('count', 1)} does not fit the set "
                                      f"(already have {sorted(seen)} of {count})", where=s.label)
        seen[index] = s.label
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise PackageInvalidError(f"missing volume(s) {', '.join(map(str, missing))} of {count}: give "
                                  "every volume of the package", where=sources[0].label)


def _dicomdir_instances(root: Path) -> set[str]:
    """SOP Instance UIDs the (verified) DICOMDIR references."""
    return {rec.sop_instance for rec in read_dicomdir(root / "DICOMDIR").records
            if rec.in_use and rec.file_id}


def _check_instance_counts(sources: list[Source]) -> int | None:
    """A restore never silently drops instances: each volume holds the
    instances its manifest counts, and together they hold every instance
    of the packed File-set.  Returns that total (None: no counts in the
    manifests, e.g. a foreign ZIP)."""
    totals = {s.summary.get("instances") for s in sources}
    if totals == {None}:
        return None
    if len(totals) != 1 or not all(type(t) is int for t in totals):
        raise PackageInvalidError("volumes disagree on the number of instances of the package",
                                  where=sources[0].label)
    total = totals.pop()
    union: set[str] = set()
    for s in sources:
        here = _dicomdir_instances(s.root) if (s.root / "DICOMDIR").is_file() else set()
        listed = s.summary.get("volume_instances")
        if listed is not None and (type(listed) is not int or listed != len(here)):
            raise PackageInvalidError(f"the manifest counts {listed} instances in this volume, its "
                                      f"DICOMDIR references {len(here)}", where=s.label)
        union |= here
    if len(union) != total:
        raise PackageInvalidError(f"the package holds {total} instances, these sources {len(union)}",
                                  where=sources[0].label)
    return total


def instance_conflicts(sources: list[Source]) -> list[str]:
    """Instances that several volumes carry, from their verified DICOMDIRs:
    byte-identical copies are returned (to be reported, then collapsed);
    differing ones refuse the merge, naming both."""
    seen: dict[str, tuple[str, Path]] = {}
    collapsed, conflicts = [], []
    for s in sources:
        for rec in read_dicomdir(s.root / "DICOMDIR").records:
            if not (rec.in_use and rec.file_id):
                continue
            here = (f"{s.label}: {'/'.join(rec.file_id)}", s.root.joinpath(*rec.file_id))
            other = seen.setdefault(rec.sop_instance, here)
            if other is here:
                continue
            if sha256_file(here[1]) == sha256_file(other[1]):
                collapsed.append(f"{here[0]} is the same instance as {other[0]}")
            else:
                conflicts.append({"severity": "error", "where": here[0],
                                  "what": f"SOP Instance UID {rec.sop_instance} also in {other[0]} "
                                          "with different content"})
    if conflicts:
        raise PackageInvalidError(conflicts[0]["what"], where=conflicts[0]["where"], findings=conflicts)
    return collapsed


def unpack(items: list[tuple[Path, str]], dest: Path, options, *, force: bool, rebuild: bool,
           stack: ExitStack, rebuild_into: Callable) -> ReceivedUnpackReport:
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
        if s.report.kind == "fileset":
            raise UsageError("unpack takes a ZIP, a secure package or a folder of Secure DICOM Files",
                             where=s.label)
        _raise_errors(s)      # with --rebuild: manifest and integrity errors only
    _same_protection_everywhere(sources)
    _check_volume_set(sources, rebuild=rebuild)
    expected = _check_instance_counts(sources)
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


def _same_protection_everywhere(sources: list[Source]) -> None:
    """Volumes of one package are protected alike: all plain, or all secure
    from one signer set.  A plain volume never joins a secure set, even
    with --allow-plain (which accepts a plain package, not a plain part of
    a secure one: its package UID is no secret).  A volume swapped for one
    another trusted sender signed does not belong to the set either."""
    secured = [s for s in sources if s.report.secure]
    if not secured:
        return
    for s in sources:
        if not s.report.secure:
            raise UnsignedPackageError(f"not encrypted and signed, but {secured[0].label} is: a plain "
                                       "volume never joins a secure set", where=s.label)
    first_signed = _signer_of(secured[0].report.secure)[0]
    for s in secured[1:]:
        if _signer_of(s.report.secure)[0] != first_signed:
            raise UnsignedPackageError(f"{'not ' if first_signed else ''}signed, but "
                                       f"{secured[0].label} is{'' if first_signed else ' not'}",
                                       where=s.label)
        if _signer_of(s.report.secure) != _signer_of(secured[0].report.secure):
            raise SignerUntrustedError(f"signed by {_signer_names(s.report.secure)}, "
                                       f"{secured[0].label} by "
                                       f"{_signer_names(secured[0].report.secure)}",
                                       where=s.label)


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
