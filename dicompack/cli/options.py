"""Command-line values turned into library options: sizes, key material
read from files (or prompted), de-identification and J2K choices."""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import typer

from dicompack.errors import UsageError
from dicompack.options import ReceiveOptions

if TYPE_CHECKING:
    from dicompack.codecs.choice import J2KOptions
    from dicompack.container.cms import CertRecipient, PasswordRecipient, Signer
    from dicompack.deid import DeidOptions

# The option builders below import key loading, the codec, de-identification
# and CMS modules only when called: a command pays the start-up cost
# (cryptography, pydicom, numpy, openjpeg, asn1crypto) of what it uses, and
# `ls` or `check` none of it.

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'650M', '4.7G', '25m', '1000000' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)B?\s*", text.upper())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"not a size: {text!r} (e.g. 650M, 4.7G)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def reid_certificates(paths: list[Path]) -> tuple:
    """The --reid-recipient certificates, each checked as a recipient's."""
    from dicompack import keys  # start-up cost (see above)
    return tuple(keys.check_recipient_certificate(c, where=str(p)) for p in paths for c in keys.load_certificates(p))


def deid_options(enabled: bool, key_file: Optional[Path], **kwargs) -> DeidOptions | None:
    if not enabled:
        return None
    from dicompack.deid import DeidOptions  # start-up cost (see above)

    if key_file:
        key = key_file.read_bytes().strip()
        if len(key) < 16:
            raise UsageError("the de-identification key file must hold at least 16 bytes", where=str(key_file))
    else:
        key = os.urandom(32)
        typer.echo("dicompack: warning: no --deid-key-file: pseudonyms, UIDs and date shifts are "
                   "random for this run", err=True)
    return DeidOptions(key=key, **kwargs)


def j2k_options(text: Optional[str], no_verify: bool, force: bool, transcode: bool,
                codec: Optional[str] = None) -> J2KOptions | None:
    """``--j2k MODE`` and/or ``--codec NAME`` (see codecs.choice.parse_codec_options)."""
    if text is None and codec is None:
        if transcode:
            raise UsageError("--transcode goes with --j2k or --codec")
        return None
    from dicompack.codecs.choice import parse_codec_options  # start-up cost (see above)
    options = parse_codec_options(codec, text)
    assert options is not None       # one of the two was given
    return replace(options, verify=not no_verify, force=force, transcode=transcode)


def password_from(password_file: Optional[Path], prompt: bool, confirm: bool) -> bytes | None:
    """Passwords come from a file or the terminal, never from argv.  With
    ``confirm`` it is a new one to pack with: asked twice, and it must be
    long enough; one to receive with is taken as the sender chose it."""
    from dicompack import keys  # start-up cost (see above)
    password = None
    if password_file:
        password = keys.read_password_file(password_file)
    elif prompt:
        text = typer.prompt("Package password", hide_input=True, confirmation_prompt=confirm)
        password = keys.check_pwri_password(text, where="password prompt")
    if password is not None and confirm:
        keys.check_new_password(password, where=str(password_file) if password_file else "password prompt")
    return password


def recipients_from(certs, password_file, prompt, iterations, pkcs1v15) -> list[CertRecipient | PasswordRecipient]:
    from dicompack import keys  # start-up cost (see above)
    from dicompack.container.cms import CertRecipient, PasswordRecipient  # start-up cost (see above)
    padding: Literal["pkcs1v15", "oaep"] = "pkcs1v15" if pkcs1v15 else "oaep"
    out: list[CertRecipient | PasswordRecipient] = [
        CertRecipient(keys.check_recipient_certificate(c, where=str(path)), padding)
        for path in certs for c in keys.load_certificates(path)]
    password = password_from(password_file, prompt, confirm=True)
    if password is not None:
        out.append(PasswordRecipient(password, iterations))
    return out


def signer_from(key_path, cert_path, chain_path, p12, key_password_file, digest, pss) -> Signer | None:
    from dicompack import keys  # start-up cost (see above)
    key_password = keys.read_password_file(key_password_file) if key_password_file else None
    if p12:
        if key_path or cert_path:
            raise UsageError("--p12 holds the signer key and certificate: give it without --sign-key/--sign-cert")
        key, cert, chain = keys.load_pkcs12(p12, key_password)
        keys.check_signer(key, cert, where=str(p12))
    elif key_path or cert_path:
        if not (key_path and cert_path):
            raise UsageError("--sign-key and --sign-cert go together")
        key, cert = keys.load_private_key(key_path, key_password), keys.load_certificate(cert_path)
        keys.check_signer(key, cert, where=f"{key_path} / {cert_path}")
        chain = keys.load_certificates(chain_path) if chain_path else []
    else:
        return None
    from dicompack.container.cms import Signer  # start-up cost (see above)
    return Signer(key, cert, tuple(chain), digest, "pss" if pss else "pkcs1v15")


def receive_options(key, cert, p12, key_password_file, password_file, password_prompt, trust,
                    allow_unsigned, jobs, progress=None, allow_plain=False, legacy=False) -> ReceiveOptions:
    from dicompack import keys  # start-up cost (see above)
    key_password = keys.read_password_file(key_password_file) if key_password_file else None
    if p12:
        key_obj, cert_obj, _ = keys.load_pkcs12(p12, key_password)
    else:
        key_obj = keys.load_private_key(key, key_password) if key else None
        cert_obj = keys.load_certificate(cert) if cert else None
    anchors = tuple(c for path in trust for c in keys.load_certificates(path))
    return ReceiveOptions(key=key_obj, cert=cert_obj, trust=anchors,
                          password=password_from(password_file, password_prompt, confirm=False),
                          allow_unsigned=allow_unsigned, allow_plain=allow_plain, jobs=jobs,
                          progress=progress, legacy=legacy)


KEY_OPTIONS = dict(
    key=typer.Option(None, "--key", help="Recipient private key."),
    cert=typer.Option(None, "--cert", help="Recipient certificate."),
    p12=typer.Option(None, "--p12", help="Recipient key + certificate from a PKCS#12 bundle."),
    key_password_file=typer.Option(None, "--key-password-file", help="Password of the key or bundle."),
    password_file=typer.Option(None, "--password-file", help="Package password (PWRI) from this file."),
    password_prompt=typer.Option(False, "--password-prompt", help="Ask for the package password."),
    trust=typer.Option([], "--trust", help="Trust anchor certificate(s) for the signer, repeatable."),
    allow_unsigned=typer.Option(False, "--allow-unsigned", help="Accept a package without signature (DigestedData)."),
    allow_plain=typer.Option(False, "--allow-plain", help="Accept a plain (unencrypted, unsigned) ZIP although key material or --trust is given."),
    legacy=typer.Option(False, "--legacy", help="Accept SHA-1 and weak password parameters (openssl's -pwri_password default) from old senders."),
)
