"""Receive: what a package must prove.  The receive policy follows from
the keys and anchors given (strict as soon as any is given) and names
every relaxation; ``sniff`` tells a ZIP, a CMS package and a folder apart
by content, never by name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dicompack.enums import StrEnum
from dicompack.errors import PackageInvalidError, UnsignedPackageError, UsageError

if TYPE_CHECKING:
    from dicompack.options import ReceiveOptions

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


CMS_MAGIC = b"\x30"                      # a DER/BER SEQUENCE: a CMS ContentInfo


class SourceKind(StrEnum):
    """What a received path holds, by content."""
    ZIP = "zip"
    CMS = "cms"           # a secure package (or a Secure DICOM File)
    FILESET = "fileset"   # a folder, or a DICOMDIR


def sniff(path: Path) -> SourceKind:
    """A ZIP, a CMS package or a File-set: by content, not by name."""
    if path.is_dir():
        return SourceKind.FILESET
    if not path.is_file():      # a FIFO or device would block or never end
        raise UsageError("not a regular file or folder", where=str(path))
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] in ZIP_MAGIC:
        return SourceKind.ZIP
    if head[:1] == CMS_MAGIC:
        return SourceKind.CMS
    if path.name.upper() == "DICOMDIR":
        return SourceKind.FILESET
    raise PackageInvalidError("not a dicompack package, ZIP, CMS file or File-set", where=str(path))


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


def policy_for(options: ReceiveOptions) -> ReceivePolicy:
    refuse_keys_without_anchors(options)
    keyed = options.key is not None or options.password is not None or bool(options.trust)
    if not keyed:       # nothing to decrypt or trust with: plain packages are all there can be
        return ReceivePolicy(require_encrypted=False, require_signed=False)
    relaxed = tuple(flag for flag, on in (("--allow-plain", options.allow_plain),
                                          ("--allow-unsigned", options.allow_unsigned),
                                          ("--legacy", options.legacy)) if on)
    return ReceivePolicy(require_encrypted="--allow-plain" not in relaxed,
                         require_signed="--allow-unsigned" not in relaxed, relaxed=relaxed)


def refuse_keys_without_anchors(options: ReceiveOptions) -> None:
    """A key or password without --trust cannot tell a signer from anyone
    who holds our public certificate: every signed package would then fail
    as if tampered (under CBC a trust failure must look like one).  Say so
    before any work.  --allow-unsigned and --allow-plain accept packages
    without origin (DigestedData; a plain ZIP or folder, e.g. for
    reidentify's sealed payloads): a *signed* package still needs --trust."""
    if (options.key is not None or options.password is not None) and not options.trust \
            and not options.allow_unsigned and not options.allow_plain:
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
