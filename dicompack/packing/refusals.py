"""Pack: refusals before any work.  Option sets that would not protect
what the caller asked to protect, key material receivers would refuse,
and packages too large for any receiver are refused up front."""
from __future__ import annotations

from pathlib import Path

from dicompack.enums import OutputFormat
from dicompack.errors import UsageError
from dicompack.options import PackOptions
from dicompack.packing import writers

FORMATS = tuple(f.value for f in OutputFormat)


def parse_format(text: str) -> OutputFormat:
    """``--format`` / ``PackOptions.format`` as given by a caller."""
    if text not in FORMATS:
        raise UsageError(f"unknown format {text!r} (one of {', '.join(FORMATS)})")
    return OutputFormat(text)


def output_format(dest, requested: str | None) -> OutputFormat:
    """The package format: asked for, or from the destination's suffix."""
    if requested:
        return parse_format(requested)
    if writers.is_stream(dest) or str(dest) == "-":
        return OutputFormat.ZIP
    suffix = Path(dest).suffix.lower()
    return {".zip": OutputFormat.ZIP, ".p7m": OutputFormat.SECURE}.get(suffix, OutputFormat.DIR)


def check_transport(fmt: str, *, stream: bool, per_file: bool, protection: list[str],
                    recipients: bool) -> None:
    """Refuse, before any work, option sets that would not protect what the
    caller asked to protect.  ``protection`` names the encryption/signing
    options given: for an output that is neither encrypted nor signed they
    would be dropped silently and the PHI sent in the clear."""
    secure = fmt == "secure" or per_file
    if protection and not secure:
        output = "stream" if stream else {"dir": "folder", "zip": "ZIP"}[fmt]
        raise UsageError(f"{', '.join(protection)} given, but a {output} output is "
                         "neither encrypted nor signed: write a secure package (-o NAME.p7m or --format "
                         "secure) or, for a folder, Secure DICOM Files (--per-file)")
    if secure and not recipients:
        raise UsageError("a secure package needs --recipient CERT and/or --password-file")
    if per_file and (fmt != "dir" or stream):
        raise UsageError("--per-file writes a folder of Secure DICOM Files: give a folder destination")
    if fmt == "dir" and stream:
        raise UsageError("a folder File-set cannot be written to a stream; use --format zip")


def protection_options(options: PackOptions) -> list[str]:
    """The encryption/signing options of a library call, named as the CLI names them."""
    return [name for name, given in (("recipients", options.recipients), ("signer", options.signer is not None),
                                     ("aead", options.aead)) if given]


def check_key_material(options: PackOptions) -> None:
    """The same checks the CLI makes with file names, for library callers."""
    if not (options.recipients or options.reid_recipients or options.signer):
        return
    # start-up cost: cryptography loads only when there is key material to check.
    from dicompack import keys
    from dicompack.container.cms import (
        MAX_PBKDF2_ITERATIONS,
        MAX_RECIPIENTS,
        MIN_PBKDF2_ITERATIONS,
        CertRecipient,
        PasswordRecipient,
    )
    if len(options.recipients) > MAX_RECIPIENTS:   # receivers refuse more (container.cms.limits)
        raise UsageError(f"{len(options.recipients)} recipients: at most {MAX_RECIPIENTS}")
    for r in options.recipients:
        if isinstance(r, CertRecipient):
            keys.check_recipient_certificate(r.cert, where=f"recipient {r.cert.subject.rfc4514_string()}")
        elif isinstance(r, PasswordRecipient):
            keys.check_new_password(r.password, where="package password")
            if not MIN_PBKDF2_ITERATIONS <= r.iterations <= MAX_PBKDF2_ITERATIONS:
                raise UsageError(f"PBKDF2 iterations must be {MIN_PBKDF2_ITERATIONS:,} to "
                                 f"{MAX_PBKDF2_ITERATIONS:,} (receivers refuse others)",
                                 where="--pbkdf2-iterations")
        else:
            raise UsageError(f"not a recipient: {type(r).__name__} (CertRecipient or PasswordRecipient)")
    for cert in options.reid_recipients:
        keys.check_recipient_certificate(cert, where=f"re-identification recipient "
                                                     f"{cert.subject.rfc4514_string()}")
    if options.signer is not None:
        keys.check_signer(options.signer.key, options.signer.cert,
                          where=f"signer {options.signer.cert.subject.rfc4514_string()}")


# Receivers parse a volume's manifest only within ZipLimits.max_manifest_memory
# (about 115,000 entries): never write a package our own verify would refuse.
MAX_INSTANCES_PER_PACKAGE = 100_000


def refuse_unreceivable(fmt: str, instances: int, options: PackOptions, target) -> None:
    if fmt != "dir" and not options.per_file and instances > MAX_INSTANCES_PER_PACKAGE:
        raise UsageError(f"{instances:,} instances in one package: receivers accept at most "
                         f"{MAX_INSTANCES_PER_PACKAGE:,} per ZIP or secure volume; use --split SIZE",
                         where=str(target))
