"""Receive: one source (a ZIP, a secure package, a File-set folder or a
folder of Secure DICOM Files) opened under the receive policy into a
private staging folder and verified there: decryption, signature and
signer chain, ZIP structure, CRCs, manifest hashes, the packaged File-set.
Nothing is restored before everything is verified."""
from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from dicompack.container.manifest import MANIFEST_NAME, parse_manifest
from dicompack.container.zip import ZipLimits
from dicompack.enums import PackageKind
from dicompack.errors import DicompackError, UsageError
from dicompack.fileset.check import check_fileset
from dicompack.options import ReceiveOptions
from dicompack.output import private_tempdir
from dicompack.receiving.open import as_path, label_of
from dicompack.receiving.policy import ReceivePolicy, SourceKind, policy_for, protection_of, sniff
from dicompack.receiving.secure_folder import folder_digests, is_secure_folder, open_secure_folder
from dicompack.receiving.zipcheck import check_zip_contents, manifest_findings, staged_zip
from dicompack.report import Progress, UnpackReport, VerifyReport


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


@dataclass
class Source:
    """One received package or volume, verified, its File-set staged at ``root``."""
    label: str
    root: Path
    report: ReceivedReport
    summary: dict = field(default_factory=dict)     # the manifest's "fileset" (instance counts)


def _open_cms(path: Path, label: str, options: ReceiveOptions, stack: ExitStack,
              progress: Progress) -> tuple[Path, dict]:
    """Decrypt and fully verify a secure package into a private spool (0600
    in a 0700 folder, removed on every path); return the spool and report."""
    if options.key is None and options.password is None:
        raise UsageError("secure package: give --key/--cert, --p12 or --password-file", where=label)
    spool = stack.enter_context(private_tempdir("spool")) / "package.zip"
    fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    done = [0]

    def on_bytes(n: int) -> None:
        done[0] += n
        progress("verify", 0, 1, done[0])

    with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
        from dicompack.container.cms import open_secure_package  # start-up cost: cryptography
        secure = open_secure_package(src, out, key=options.key, cert=options.cert, password=options.password,
                                     trust=list(options.trust), allow_unsigned=options.allow_unsigned,
                                     on_bytes=on_bytes, legacy=options.legacy)
    return spool, secure.to_dict()


def _zip_source(path: Path, label: str, options: ReceiveOptions, policy: ReceivePolicy, stack: ExitStack, parent: Path,
                progress: Progress, fileset: bool) -> Source:
    kind = sniff(path)
    if kind == SourceKind.CMS:
        zip_path, secure = _open_cms(path, label, options, stack, progress)
        admit = None
    else:
        zip_path, secure = path, {}
        admit = lambda: policy.refuse_plain(label)   # noqa: E731 - before any byte is extracted
    root, result, reader = stack.enter_context(
        staged_zip(zip_path, parent, limits=options.limits or ZipLimits(), admit=admit))
    check_zip_contents(root, reader, result, progress, jobs=options.jobs, fileset=fileset)
    report = ReceivedReport(path=label, kind=PackageKind.SECURE if secure else PackageKind.ZIP, entries=result.entries,
                            fileset_id=result.fileset_id, records=result.records, files=result.files,
                            findings=[f.to_dict() for f in result.findings], secure=secure,
                            policy=policy.to_dict(), protection=protection_of(secure))
    summary = {}
    if result.manifest:
        report.package_uid = result.manifest.get("package_uid", "")
        report.volume = result.manifest.get("volume", {})
        summary = result.manifest.get("fileset", {})
    return Source(label, root, report, summary)


def _folder_source(path: Path, label: str, options: ReceiveOptions, policy: ReceivePolicy, stack: ExitStack,
                   parent: Path, fileset: bool) -> Source:
    folder = path if path.is_dir() else path.parent
    if not is_secure_folder(folder):
        policy.refuse_plain(label)
        report = ReceivedReport(path=label, kind=PackageKind.FILESET, policy=policy.to_dict())
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
                                                legacy=options.legacy)
    except DicompackError as err:      # name the file by its place in the folder given
        where = f"{label.rstrip('/')}/{err.where}" if err.where and err.where != str(folder) else label
        raise err.at(where) from None
    report = ReceivedReport(path=label, kind=PackageKind.SECURE_FILESET, secure=secure, policy=policy.to_dict(),
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
    digests = folder_digests(root)
    findings = manifest_findings(digests, manifest)
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


def open_source(path: Path, label: str, options: ReceiveOptions, policy: ReceivePolicy, stack: ExitStack, parent: Path,
                progress: Progress, *, fileset: bool = True) -> Source:
    """Verify one package, volume or folder under ``policy`` and stage its
    File-set privately under ``parent`` (kept until ``stack`` closes)."""
    if sniff(path) == SourceKind.FILESET:
        return _folder_source(path, label, options, policy, stack, parent, fileset)
    return _zip_source(path, label, options, policy, stack, parent, progress, fileset)


def verify(src, options: ReceiveOptions) -> VerifyReport:
    """Verify a package (ZIP, secure package, folder of Secure DICOM Files)
    or a File-set under the receive policy, without restoring anything."""
    policy = policy_for(options)
    with ExitStack() as stack:
        path = as_path(src, stack)
        source = open_source(path, label_of(src), options, policy, stack, Path(tempfile.gettempdir()),
                             Progress(options.progress))
        return source.report
