"""Typed exceptions of dicompack.

Every failure the library reports is a ``DicompackError``; each subclass has
its own process exit code (documented in README.md) so that scripts can tell
"wrong password" from "tampered package" without parsing text.  ``where`` names
the file, ZIP entry or package region concerned, and ``str(err)`` is the
one-line message the CLI prints.

The rule for everything else: internal errors are wrapped once, at module
boundaries.  A module's own exception (``codecs.opj.EncodeError``) or a
library's (pydicom, cryptography, the codecs) becomes the matching
DicompackError where it leaves the module that knows what it means
(``codecs.j2k``, a ``transform`` stage), with ``raise ... from None`` and a
message for the user; an error that is already a DicompackError passes
through unchanged.  A raised error is never modified afterwards: ``at`` and
``located`` give a copy naming another place.
"""
from __future__ import annotations

import copy
from typing import TypeVar

_E = TypeVar("_E", bound="DicompackError")


class DicompackError(Exception):
    """Base of every error dicompack raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None,
                 problems: list[tuple[str, str]] | None = None):
        # Always one line: messages may quote multi-line text from libraries.
        message = " ".join(str(message).split())
        super().__init__(message)
        self.message = message
        self.where = where
        # (file, reason) for each offending input, when there are several.
        self.problems = problems or []

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def at(self: _E, where: str | None) -> _E:
        """A copy of this error naming ``where`` (same class, message and
        details): an error already raised, and maybe held elsewhere (a
        worker's outcome, a report), is never changed."""
        moved = copy.copy(self)
        moved.where = where
        return moved

    def located(self: _E, where: str) -> _E:
        """This error, or a copy naming ``where`` when it names no place of its own."""
        return self if self.where else self.at(where)

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "where": self.where,
                "message": self.message, "exit_code": self.exit_code}


class UsageError(DicompackError):
    """The call itself is wrong (bad option combination, missing key...)."""
    exit_code = 2


class OutputExistsError(UsageError):
    """The destination exists and is not empty, and --force was not given."""


class InvalidInputError(DicompackError):
    """An input file is truncated, unparsable or otherwise unusable."""
    exit_code = 3


class DuplicateInstanceError(InvalidInputError):
    """Two different files carry the same SOP Instance UID."""


class PackageInvalidError(DicompackError):
    """A File-set, DICOMDIR, ZIP or package content fails verification."""
    exit_code = 4

    def __init__(self, message: str, *, where: str | None = None,
                 findings: list | None = None):
        super().__init__(message, where=where)
        self.findings = findings or []


class UnsafeArchiveError(PackageInvalidError):
    """An archive entry would escape the target or exceeds a safety limit."""
    exit_code = 5


class DecryptionError(DicompackError):
    """Not a recipient of the package, wrong key or wrong password."""
    exit_code = 6


class SignatureInvalidError(DicompackError):
    """The signature or digest does not match the content (tampering)."""
    exit_code = 7


class SignerUntrustedError(DicompackError):
    """The signer's certificate does not chain to a trust anchor, or is expired."""
    exit_code = 8


class UnsignedPackageError(DicompackError):
    """The receive policy requires a signed (and encrypted) package, and this
    one, or one of its volumes or files, carries no signature (relaxed by
    --allow-unsigned) or is not encrypted at all (relaxed by --allow-plain)."""
    exit_code = 9


class DeidentificationError(DicompackError):
    """An instance cannot be de-identified safely (e.g. burned-in annotation)."""
    exit_code = 10


class CompressionError(DicompackError):
    """Pixel data could not be (re)compressed, or lossless verification failed."""
    exit_code = 11


class KeyMaterialError(UsageError):
    """A key, certificate, PKCS#12 bundle or password file cannot be used."""


class StorageError(DicompackError):
    """Reading or writing a file failed (disk full, read error, vanished file)."""
    exit_code = 12


class OperationCancelledError(DicompackError):
    """The caller's progress callback asked to stop."""
    exit_code = 130


class Terminated(KeyboardInterrupt):
    """A signal asked the process to stop (SIGTERM from systemd, ``timeout``
    or Kubernetes; SIGINT).  The CLI raises it from its signal handler so
    that every ``finally`` runs: spools and partial outputs are removed,
    workers stopped, the terminal restored.  A KeyboardInterrupt, not a
    DicompackError: ``except Exception`` must not swallow it on the way."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum     # the shell's convention: 143 for SIGTERM, 130 for SIGINT


EXIT_CODES = {cls.__name__: cls.exit_code for cls in (
    DicompackError, UsageError, InvalidInputError, PackageInvalidError,
    UnsafeArchiveError, DecryptionError, SignatureInvalidError,
    SignerUntrustedError, UnsignedPackageError, DeidentificationError,
    CompressionError, StorageError, OperationCancelledError)}
