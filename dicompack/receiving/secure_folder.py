"""Receive: a folder of Secure DICOM Files (PS3.10 7.4).  Every file but a
small plain File-set Descriptor must be a CMS envelope referenced by the
verified DICOMDIR and signed by the same signers; symlinks, special files
and files the DICOMDIR does not reference refuse the folder."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from dicompack.container.manifest import MANIFEST_NAME
from dicompack.container.zip import ZipLimits
from dicompack.enums import Severity
from dicompack.errors import (
    DicompackError,
    PackageInvalidError,
    SignerUntrustedError,
    UnsafeArchiveError,
    UnsignedPackageError,
)
from dicompack.fileset.dicomdir import read_dicomdir
from dicompack.fileset.files import sha256_file
from dicompack.receiving.policy import CMS_MAGIC

DESCRIPTOR_LIMIT = 64 << 10              # the only unverified file we restore is this small


MAX_FOLDER_DEPTH = 8                     # PS3.10: a File ID has at most 8 components


def _regular_files(root: Path, limit: int) -> list[tuple[str, Path, int]]:
    """(File ID with '/', path, size) of every file under ``root``, walked
    without following symlinks.  A symlink, a special file or a folder
    deeper than any File ID refuses the whole folder: nothing in a received
    folder may point at, or stand in for, anything outside it."""
    found: list[tuple[str, Path, int]] = []
    pending: list[tuple[Path, tuple[str, ...]]] = [(Path(root), ())]
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


def signer_of(report: dict) -> tuple:
    """Whether signed, and by which set of signers (subject, issuer): a file
    signed by [A, B] is not one signed by [A] (every signer counts)."""
    signers = report.get("signers") or (
        [{"subject": report.get("signer_subject"), "issuer": report.get("signer_issuer")}]
        if report.get("signer_subject") else [])
    return bool(report.get("signed")), tuple(sorted({(s.get("subject"), s.get("issuer")) for s in signers}))


def signer_names(report: dict) -> str:
    return " + ".join(subject for subject, _ in signer_of(report)[1]) or "nobody"


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
                findings=[{"severity": Severity.ERROR, "where": rel, "what": "referenced file does not exist"}
                          for rel in missing[:MAX_LISTED_MISSING]])

    def _decrypt(self, rel: str, path: Path) -> dict:
        dest = self.out.joinpath(*rel.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with _open_no_follow(path) as src, os.fdopen(fd, "wb") as f:
            try:
                from dicompack.container.cms import open_secure_package  # start-up cost: cryptography
                report = open_secure_package(src, f, **self.keys)
            except DicompackError as err:     # named by its place in the folder
                raise err.at(f"{rel}: {err.where}" if err.where else rel) from None
        self.opened += 1
        return report.to_dict()

    def _same_signer(self, rel: str, report: dict, first: dict) -> None:
        """Every file carries the DICOMDIR's signer: a file moved in from
        another package, or an unsigned one encrypted by anyone holding our
        certificate, does not belong to this File-set."""
        if signer_of(report) == signer_of(first):
            return
        if first.get("signed") and not report.get("signed"):
            raise UnsignedPackageError("not signed, although the DICOMDIR is", where=rel)
        raise SignerUntrustedError(f"signed by {signer_names(report)}, the DICOMDIR "
                                   f"by {signer_names(first)}", where=rel)

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


def folder_digests(root: Path) -> dict[str, str]:
    return {rel: sha256_file(path) for rel, path, _ in _regular_files(root, ZipLimits().max_entries)}


MAX_LISTED_MISSING = 100                 # missing files named one by one; the count says the rest
