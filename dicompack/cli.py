"""Command line interface: a thin shell over ``dicompack.api``.

Errors print one line ``dicompack: <where>: <what>`` (plus one line per
offending file where there are several) and exit with the error's code.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import click
import typer

from dicompack import api
from dicompack._version import __version__
from dicompack.errors import DicompackError, PackageInvalidError, Terminated, UsageError

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="Pack DICOM studies into standard File-sets; verify and unpack them safely.")


def _version(value: bool):
    if value:
        typer.echo(f"dicompack {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


@contextmanager
def _progress_bar(quiet: bool):
    """A rich progress bar on a terminal; nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    console = Console(stderr=True)
    with _cursor_shown_at_exit(console), \
            Progress(TextColumn("{task.description:>9}"), BarColumn(), TextColumn("{task.fields[count]}"),
                     TimeRemainingColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def callback(event):
            if event.stage not in tasks:
                tasks[event.stage] = bar.add_task(event.stage, total=event.files_total, count="")
            if event.bytes_total:      # stages that know their bytes move by MB (frame by frame for J2K)
                done, total = event.bytes_done, event.bytes_total
                count = f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB, {event.files_done}/{event.files_total} files"
            else:
                done, total = event.files_done, event.files_total
                count = f"{done}/{total}"
            bar.update(tasks[event.stage], completed=done, total=total, count=count)
        yield callback


@contextmanager
def _cursor_shown_at_exit(console):
    """Progress hides the cursor and shows it again when it stops; a signal
    (Ctrl-C, SIGTERM) landing inside its own start or stop would skip that."""
    try:
        yield
    finally:
        console.show_cursor(True)


def _fail(err: DicompackError, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(err.to_dict() | {"problems": err.problems}, indent=2))
    else:
        typer.echo(f"dicompack: {err}", err=True)
        for path, reason in err.problems[1:]:
            typer.echo(f"dicompack: {path}: {reason}", err=True)
    raise typer.Exit(err.exit_code)


@contextmanager
def _errors(as_json: bool):
    try:
        with _signals.cancellable():
            yield
    except DicompackError as err:
        if err.problems:
            err.where, err.message = err.problems[0]
        if isinstance(err, PackageInvalidError) and err.findings and not as_json:
            for f in err.findings[1:]:
                typer.echo(f"dicompack: {f['where']}: {f['what']}", err=True)
        _fail(err, as_json)
    except KeyboardInterrupt as err:
        # Ctrl-C or SIGTERM.  Every finally and context manager below has
        # run by now: spools and partial outputs removed, workers stopped,
        # the cursor shown again.
        _cancelled(getattr(err, "signum", signal.SIGINT))
    except click.exceptions.Abort:
        if _signals.received is None:    # end of input at a prompt
            raise
        _cancelled(_signals.received)    # a signal at a prompt: click made it Abort


def _cancelled(signum: int) -> None:
    word = "terminated" if signum == signal.SIGTERM else "interrupted"
    typer.echo(f"dicompack: {word}; nothing was written", err=True)
    raise typer.Exit(128 + signum)


class _Signals:
    """SIGINT and SIGTERM become one cancellation path: while a command
    works (``cancellable``) the first one raises ``Terminated`` in the main
    thread, so cleanup runs as for Ctrl-C; outside that, there is nothing to
    clean up and the process just exits.  Later signals are ignored, so they
    cannot cut that cleanup short (SIGKILL still can: the next run sweeps
    what it leaves, see output.sweep_stale)."""

    def __init__(self):
        self.received: int | None = None
        self.armed = False
        # Set once an output is renamed into place (output.on_commit) or the
        # command's work is done: a signal then no longer cancels anything —
        # what is left is cleanup, the remaining volumes of a split and the
        # report — so the run finishes, prints its report and exits 0: a
        # caller must not read "killed, nothing written" when the
        # destination was in fact replaced.
        self.committed = False
        self._pid = os.getpid()
        self._raised: BaseException | None = None
        self._default_unraisable = sys.unraisablehook

    def install(self) -> None:
        self._pid = os.getpid()
        from dicompack import output
        output.on_commit = self._commit
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        if hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, self._again)
            sys.unraisablehook = self._unraisable

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            return      # a just-forked worker, before it drops this handler: its parent stops it
        if self.received is not None and self._raised is not None:
            return
        if self.committed:
            self.received = signum   # noted, nothing left to cancel: finish the report
            return
        self.received = signum
        self._raised = Terminated(signum) if self.armed else SystemExit(128 + signum)
        raise self._raised

    def _unraisable(self, info) -> None:
        """Python ignores an exception raised where it cannot propagate (an
        at-fork hook of the worker pool, a __del__): it is raised again a
        moment later (SIGALRM), until it lands in ordinary code."""
        if self._raised is not None and info.exc_value is self._raised and os.getpid() == self._pid:
            self._raised = None
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            return
        self._default_unraisable(info)

    def _again(self, signum, frame) -> None:
        if self.received is not None and self._raised is None:
            self._handle(self.received, frame)

    def _commit(self) -> None:
        if os.getpid() == self._pid:
            self.committed = True

    @contextmanager
    def cancellable(self):
        self.armed = True
        try:
            yield
            self.committed = True
        finally:
            self.armed = False

    def hold_until_exit(self) -> None:
        """Block SIGINT/SIGTERM for the last instants of the process: the
        interpreter puts the default handlers back while it shuts down, and a
        signal landing then would end an already finished run by the signal
        (exit -15).  Blocked signals are dropped when the process exits."""
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


_signals = _Signals()


def _emit(report, as_json: bool, text: str) -> None:
    typer.echo(report.to_json() if as_json else text)


@app.command()
def pack(sources: list[Path] = typer.Argument(..., help="DICOM files or folders (searched recursively)."),
         output: str = typer.Option(..., "-o", "--output", help="Destination: a folder, NAME.zip, NAME.p7m, or - for a ZIP on stdout."),
         fmt: Optional[str] = typer.Option(None, "--format", help="dir | zip | secure (default: from the destination's suffix)."),
         zip_method: str = typer.Option("auto", "--zip-method", help="auto (deflate uncompressed, store compressed) | deflate | store | zstd (most unzip tools cannot read zstd)."),
         fileset_id: str = typer.Option("", "--fileset-id", help="File-set ID (up to 16 of A-Z 0-9 _ space)."),
         descriptor: Optional[Path] = typer.Option(None, "--fileset-descriptor", help="Text file stored as the File-set Descriptor (File ID README)."),
         split: Optional[str] = typer.Option(None, "--split", help="Volume size in bytes written (after compression and encryption), e.g. 650M, 4.7G, 25M: several complete File-sets NAME-1ofN, each at most SIZE."),
         recipient: list[Path] = typer.Option([], "--recipient", help="Recipient certificate (PEM/DER), repeatable: RSA-OAEP (or ECDH for EC keys)."),
         password_file: Optional[Path] = typer.Option(None, "--password-file", help="Encrypt for a password read from this file (PWRI, PBKDF2-HMAC-SHA256)."),
         password_prompt: bool = typer.Option(False, "--password-prompt", help="Ask for the package password on the terminal."),
         pbkdf2_iterations: int = typer.Option(600_000, "--pbkdf2-iterations", help="PBKDF2 iterations for --password-file."),
         rsa_pkcs1v15: bool = typer.Option(False, "--rsa-pkcs1v15", help="RSA PKCS#1 v1.5 key transport for older peers (default OAEP)."),
         sign_key: Optional[Path] = typer.Option(None, "--sign-key", help="Signer private key (PEM/DER)."),
         sign_cert: Optional[Path] = typer.Option(None, "--sign-cert", help="Signer certificate."),
         sign_chain: Optional[Path] = typer.Option(None, "--sign-chain", help="Intermediate certificates to embed."),
         p12: Optional[Path] = typer.Option(None, "--p12", help="Signer key + certificate + chain from a PKCS#12 bundle."),
         key_password_file: Optional[Path] = typer.Option(None, "--key-password-file", help="Password of the signer key or PKCS#12 bundle."),
         sign_pss: bool = typer.Option(False, "--sign-pss", help="RSA-PSS signatures (default PKCS#1 v1.5)."),
         digest: str = typer.Option("sha256", "--digest", help="sha256 | sha384 | sha512 (sha1 only with --legacy)."),
         per_file: bool = typer.Option(False, "--per-file", help="Folder of Secure DICOM Files (PS3.10 7.4): every file, DICOMDIR included, encrypted (and signed) on its own."),
         keep_preamble: bool = typer.Option(False, "--keep-preamble", help="Keep each file's 128-byte preamble as it is (default: zeroed unless it is a TIFF header, since it can hide an executable: CVE-2019-11687)."),
         aead: bool = typer.Option(False, "--aead", help="AES-256-GCM AuthEnvelopedData (outside the PS3.15 D.1 profile)."),
         legacy: bool = typer.Option(False, "--legacy", help="Allow SHA-1 signatures for old peers."),
         j2k: Optional[str] = typer.Option(None, "--j2k", help="Recompress to JPEG 2000: lossless | ratio:N | psnr:DB."),
         no_verify: bool = typer.Option(False, "--no-verify", help="Skip decoding each lossless frame again to compare (about 40% faster)."),
         force_lossy: bool = typer.Option(False, "--force-lossy", help="Allow lossy compression of already lossy images."),
         transcode: bool = typer.Option(False, "--transcode", help="With --j2k: also re-encode lossless-compressed sources (RLE; JPEG/JPEG-LS lossless when a decoder is installed)."),
         deidentify: bool = typer.Option(False, "--deidentify", help="Apply the PS3.15 E.1 Basic Application Level Confidentiality Profile."),
         deid_key_file: Optional[Path] = typer.Option(None, "--deid-key-file", help="Secret for stable pseudonyms/UIDs/date shifts (default: random per run)."),
         patient_id: Optional[str] = typer.Option(None, "--patient-id", help="Pseudonym Patient ID (default: derived from the key)."),
         patient_name: Optional[str] = typer.Option(None, "--patient-name", help="Pseudonym Patient's Name."),
         retain_safe_private: bool = typer.Option(False, "--retain-safe-private", help="Retain Safe Private Option: keep private attributes of PS3.15 Table E.3.10-1 or declared safe by the instance."),
         retain_uids: bool = typer.Option(False, "--retain-uids", help="Retain UIDs Option."),
         retain_device_identity: bool = typer.Option(False, "--retain-device-identity", help="Retain Device Identity Option."),
         retain_institution_identity: bool = typer.Option(False, "--retain-institution-identity", help="Retain Institution Identity Option."),
         retain_patient_characteristics: bool = typer.Option(False, "--retain-patient-characteristics", help="Retain Patient Characteristics Option."),
         retain_dates: Optional[str] = typer.Option(None, "--retain-dates", help="full | modified (Retain Longitudinal Temporal Information)."),
         date_shift_days: Optional[int] = typer.Option(None, "--date-shift-days", help="Shift for --retain-dates modified (default: per patient from the key)."),
         clean_descriptors: bool = typer.Option(False, "--clean-descriptors", help="Clean Descriptors Option."),
         clean_structured_content: bool = typer.Option(False, "--clean-structured-content", help="Clean Structured Content Option."),
         reid_recipient: list[Path] = typer.Option([], "--reid-recipient", help="Certificate that may re-identify: originals go encrypted into each instance's Encrypted Attributes Sequence."),
         burned_in: str = typer.Option("reject", "--burned-in", help="reject | keep instances that may show identity in pixels."),
         skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave out truncated/unparsable files, conflicting duplicates and instances de-identification refuses, instead of failing (each is listed)."),
         force: bool = typer.Option(False, "--force", help="Replace a non-empty destination."),
         jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Worker processes (default: all cores)."),
         as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="List every skipped file, fix and invented key.")):
    """Build a standard File-set (PS3.10 File IDs + DICOMDIR) from messy input."""
    from dicompack import keys
    with _errors(as_json), _progress_bar(quiet) as bar:
        if zip_method == "zstd":
            typer.echo("dicompack: warning: zstd entries (method 93) cannot be read by most unzip tools",
                       err=True)
        # Before any key is read or password asked for: keys given for an
        # output that is neither encrypted nor signed would be dropped silently.
        protection = [name for name, given in (
            ("--recipient", recipient), ("--password-file", password_file), ("--password-prompt", password_prompt),
            ("--sign-key", sign_key), ("--sign-cert", sign_cert), ("--sign-chain", sign_chain), ("--p12", p12),
            ("--aead", aead)) if given]
        api.check_transport(api.output_format(output, fmt), stream=output == "-", per_file=per_file,
                            protection=protection, recipients=bool(recipient or password_file or password_prompt))
        recipients = _recipients(recipient, password_file, password_prompt, pbkdf2_iterations, rsa_pkcs1v15)
        signer = _signer(sign_key, sign_cert, sign_chain, p12, key_password_file, digest, sign_pss)
        reid_certs = tuple(keys.check_recipient_certificate(c, where=str(p))
                           for p in reid_recipient for c in _certs(p))
        report = api.pack(sources, output, api.PackOptions(
            fileset_id=fileset_id, format=fmt, zip_method=zip_method, skip_invalid=skip_invalid,
            split=parse_size(split) if split else None, descriptor=descriptor, recipients=tuple(recipients), signer=signer,
            aead=aead, legacy=legacy, per_file=per_file, keep_preamble=keep_preamble, reid_recipients=reid_certs, j2k=_j2k_options(j2k, no_verify, force_lossy, transcode),
            deid=_deid_options(deidentify, deid_key_file, patient_id=patient_id, patient_name=patient_name,
                               retain_safe_private=retain_safe_private,
                               retain_uids=retain_uids, retain_device_identity=retain_device_identity,
                               retain_institution_identity=retain_institution_identity,
                               retain_patient_characteristics=retain_patient_characteristics,
                               retain_dates=retain_dates, date_shift_days=date_shift_days,
                               clean_descriptors=clean_descriptors,
                               clean_structured_content=clean_structured_content, burned_in=burned_in),
            force=force, jobs=jobs, progress=bar))
    if output == "-":
        typer.echo(report.to_json() if as_json else _pack_text(report, verbose), err=True)
    else:
        _emit(report, as_json, _pack_text(report, verbose))


def _pack_text(r, verbose: bool = False) -> str:
    """Counts by default; every item with --verbose.  Left-out files and
    warnings are always listed: they change what the package holds."""
    where = (f"{r.volumes[0]} ... {r.volumes[-1]} ({len(r.volumes)} volumes)" if len(r.volumes) > 3
             else ", ".join(r.volumes) or r.output)
    lines = [f"{where}: {r.instances} instances, {r.series} series, "
             f"{r.studies} studies, {r.patients} patients ({r.application_profile}) in {r.seconds:.2f} s"]
    for stage, info in r.stages.items():
        lines.append(f"  {stage}: " + ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("recipients",)))
    for label, items, always in (("left out", r.invalid, True), ("warning", r.warnings, True),
                                 ("skipped", r.skipped, False), ("duplicate", r.duplicates_collapsed, False),
                                 ("fixed", r.fixes, False)):
        if always or verbose:
            lines += [f"  {label}: {p.path}: {p.reason}" for p in items]
        elif items:
            lines.append(f"  {label}: {len(items)} file(s) (--verbose lists them)")
    if verbose:
        lines += [f"  invented: {i['record_type']} {i['keyword']} = {i['value']}" for i in r.invented]
    elif r.invented:
        lines.append(f"  invented: {len(r.invented)} empty Type 1 DICOMDIR key(s) (--verbose lists them)")
    return "\n".join(lines)


@app.command("ls")
def ls_(path: Path = typer.Argument(..., help="File-set folder or its DICOMDIR."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON.")):
    """List patients, studies and series of a File-set."""
    with _errors(as_json):
        report = api.list_fileset(path)
    lines = [f"File-set {report.fileset_id or '(no ID)'} at {report.path}"]
    for p in report.patients:
        lines.append(f"{p['patient_id']}  {p['name']}")
        for st in p["studies"]:
            lines.append(f"  study {st['date']} {st['description']}  ({st['instances']} instances)")
            for se in st["series"]:
                ts = ", ".join(se["transfer_syntaxes"])
                lines.append(f"    series {se['number']:>4} {se['modality']:<3} {se['instances']:>5} x "
                             f"{'/'.join(se['record_types'])}  [{ts}]")
    _emit(report, as_json, "\n".join(lines))


@app.command()
def check(path: Path = typer.Argument(..., help="File-set folder or its DICOMDIR."),
          as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
          jobs: Optional[int] = typer.Option(None, "--jobs", "-j")):
    """Validate a File-set: DICOMDIR structure, offsets, records and the files they reference."""
    with _errors(as_json):
        report = api.check(path, jobs=jobs)
    lines = [f"{f['severity']}: {f['where']}: {f['what']}" for f in report.findings]
    lines.append(f"{report.path}: {report.records} records, {report.files} files: "
                 + ("OK" if report.ok else "INVALID"))
    _emit(report, as_json, "\n".join(lines))
    if not report.ok:
        raise typer.Exit(PackageInvalidError.exit_code)


@app.command()
def dicomdir(folder: Path = typer.Argument(..., help="Root of an existing File-set."),
             update: bool = typer.Option(False, "--update", help="Keep existing records, add unreferenced files (FSU)."),
             fileset_id: Optional[str] = typer.Option(None, "--fileset-id"),
             jobs: Optional[int] = typer.Option(None, "--jobs", "-j"),
             as_json: bool = typer.Option(False, "--json"),
             quiet: bool = typer.Option(False, "--quiet", "-q")):
    """(Re)build the DICOMDIR of a File-set from its files."""
    with _errors(as_json), _progress_bar(quiet) as bar:
        report = api.build_dicomdir(folder, fileset_id=fileset_id, update=update, jobs=jobs, progress=bar)
    _emit(report, as_json, f"{report.path}: {report.records} records, {report.instances} instances"
          + (f", {report.added} added" if update else "") + f" in {report.seconds:.2f} s")


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'650M', '4.7G', '25m', '1000000' -> bytes (binary units)."""
    import re
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)B?\s*", text.upper())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"not a size: {text!r} (e.g. 650M, 4.7G)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _certs(path: Path) -> list:
    from dicompack import keys
    return keys.load_certificates(path)


def _deid_options(enabled: bool, key_file: Optional[Path], **kwargs):
    if not enabled:
        return None
    import os

    from dicompack.deid import DeidOptions
    if key_file:
        key = key_file.read_bytes().strip()
        if len(key) < 16:
            raise UsageError("the de-identification key file must hold at least 16 bytes", where=str(key_file))
    else:
        key = os.urandom(32)
        typer.echo("dicompack: warning: no --deid-key-file: pseudonyms, UIDs and date shifts are "
                   "random for this run", err=True)
    return DeidOptions(key=key, **kwargs)


def _j2k_options(text: Optional[str], no_verify: bool, force: bool, transcode: bool):
    if text is None:
        if transcode:
            raise UsageError("--transcode goes with --j2k")
        return None
    from dataclasses import replace

    from dicompack.codecs.j2k import parse_j2k_option
    return replace(parse_j2k_option(text), verify=not no_verify, force=force, transcode=transcode)


def _password(password_file: Optional[Path], prompt: bool, confirm: bool) -> bytes | None:
    """Passwords come from a file or the terminal, never from argv.  With
    ``confirm`` it is a new one to pack with: asked twice, and it must be
    long enough; one to receive with is taken as the sender chose it."""
    from dicompack import keys
    password = None
    if password_file:
        password = keys.read_password_file(password_file)
    elif prompt:
        text = typer.prompt("Package password", hide_input=True, confirmation_prompt=confirm)
        password = keys.check_pwri_password(text, where="password prompt")
    if password is not None and confirm:
        keys.check_new_password(password, where=str(password_file) if password_file else "password prompt")
    return password


def _recipients(certs, password_file, prompt, iterations, pkcs1v15) -> list:
    from dicompack import keys
    from dicompack.container.cms import CertRecipient, PasswordRecipient
    out = [CertRecipient(keys.check_recipient_certificate(c, where=str(path)), "pkcs1v15" if pkcs1v15 else "oaep")
           for path in certs for c in keys.load_certificates(path)]
    password = _password(password_file, prompt, confirm=True)
    if password is not None:
        out.append(PasswordRecipient(password, iterations))
    return out


def _signer(key_path, cert_path, chain_path, p12, key_password_file, digest, pss):
    from dicompack import keys
    from dicompack.container.cms import Signer
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
    return Signer(key, cert, tuple(chain), digest, "pss" if pss else "pkcs1v15")


def _receive_options(key, cert, p12, key_password_file, password_file, password_prompt, trust,
                     allow_unsigned, jobs, progress=None, allow_plain=False, legacy=False) -> api.ReceiveOptions:
    from dicompack import keys
    key_password = keys.read_password_file(key_password_file) if key_password_file else None
    if p12:
        key_obj, cert_obj, _ = keys.load_pkcs12(p12, key_password)
    else:
        key_obj = keys.load_private_key(key, key_password) if key else None
        cert_obj = keys.load_certificate(cert) if cert else None
    anchors = tuple(c for path in trust for c in keys.load_certificates(path))
    return api.ReceiveOptions(key=key_obj, cert=cert_obj, trust=anchors,
                              password=_password(password_file, password_prompt, confirm=False),
                              allow_unsigned=allow_unsigned, allow_plain=allow_plain, jobs=jobs,
                              progress=progress, legacy=legacy)


_KEY_OPTIONS = dict(
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


def _policy_text(report) -> list[str]:
    """Relaxations of the receive policy and unverified files are always shown."""
    relaxed = getattr(report, "policy", {}).get("relaxed", [])
    lines = [f"policy relaxed: {', '.join(relaxed)}"] if relaxed else []
    return lines + [f"unverified (no signature covers it): {rel}" for rel in getattr(report, "unverified", [])]


def _unprotected(report, text: str) -> str:
    """``text`` when the package proved nothing beyond CRCs and manifest
    hashes (a plain ZIP or folder, which anyone in transit can rewrite
    together with its manifest): never let that read as "verified"."""
    return text if getattr(report, "protection", "none") == "none" else ""


def _findings_text(report) -> list[str]:
    return [f"{f['severity']}: {f['where']}: {f['what']}" for f in report.findings]


@app.command()
def verify(package: Path = typer.Argument(..., help="ZIP or secure package, or a File-set folder."),
           key: Optional[Path] = _KEY_OPTIONS["key"], cert: Optional[Path] = _KEY_OPTIONS["cert"],
           p12: Optional[Path] = _KEY_OPTIONS["p12"],
           key_password_file: Optional[Path] = _KEY_OPTIONS["key_password_file"],
           password_file: Optional[Path] = _KEY_OPTIONS["password_file"],
           password_prompt: bool = _KEY_OPTIONS["password_prompt"],
           trust: list[Path] = _KEY_OPTIONS["trust"], allow_unsigned: bool = _KEY_OPTIONS["allow_unsigned"],
           allow_plain: bool = _KEY_OPTIONS["allow_plain"], legacy: bool = _KEY_OPTIONS["legacy"],
           as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
           jobs: Optional[int] = typer.Option(None, "--jobs", "-j")):
    """Verify a package: decryption, signature and signer chain, ZIP CRCs,
    manifest hashes and the packaged File-set."""
    with _errors(as_json):
        options = _receive_options(key, cert, p12, key_password_file, password_file, password_prompt,
                                   trust, allow_unsigned, jobs, allow_plain=allow_plain, legacy=legacy)
        report = api.verify(package, options)
    lines = _findings_text(report)
    if report.secure:
        sec = report.secure
        # One line per SignerInfo: every one was verified and chained to a trust anchor.
        signers = sec.get("signers") or ([{"subject": sec["signer_subject"], "chain": sec["chain"],
                                           "signature_algorithm": sec["signature_algorithm"],
                                           "signing_time": sec["signing_time"]}] if sec["signed"] else [])
        signed = [f"signed by {s['subject']} ({s['signature_algorithm']}, {s['signing_time']}), "
                  f"chain {' <- '.join(s['chain'])}" for s in signers]
        lines.append(f"secure: {sec['content_encryption']}, recipient {sec['recipient_used']}; "
                     + (signed[0] if signed else "NOT signed (digest only)"))
        lines += [f"secure: also {s}" for s in signed[1:]]
    lines += _policy_text(report)
    lines.append(f"{report.path}: {report.kind}, {report.entries} entries, {report.records} records, "
                 f"{report.files} files: " + ("INVALID" if not report.ok else "OK" + _unprotected(report,
                 " (integrity only: not encrypted, not signed)")))
    _emit(report, as_json, "\n".join(lines))
    if not report.ok:
        raise typer.Exit(PackageInvalidError.exit_code)


@app.command()
def unpack(packages: list[Path] = typer.Argument(..., help="ZIP or secure package; several volumes (NAME-1ofN) are merged."),
           output: Path = typer.Option(..., "-o", "--output", help="Destination folder."),
           rebuild: bool = typer.Option(False, "--rebuild", help="Foreign ZIP: build a conformant File-set from the DICOM files it holds."),
           key: Optional[Path] = _KEY_OPTIONS["key"], cert: Optional[Path] = _KEY_OPTIONS["cert"],
           p12: Optional[Path] = _KEY_OPTIONS["p12"],
           key_password_file: Optional[Path] = _KEY_OPTIONS["key_password_file"],
           password_file: Optional[Path] = _KEY_OPTIONS["password_file"],
           password_prompt: bool = _KEY_OPTIONS["password_prompt"],
           trust: list[Path] = _KEY_OPTIONS["trust"], allow_unsigned: bool = _KEY_OPTIONS["allow_unsigned"],
           allow_plain: bool = _KEY_OPTIONS["allow_plain"], legacy: bool = _KEY_OPTIONS["legacy"],
           force: bool = typer.Option(False, "--force", help="Replace a non-empty destination."),
           as_json: bool = typer.Option(False, "--json"),
           jobs: Optional[int] = typer.Option(None, "--jobs", "-j"),
           quiet: bool = typer.Option(False, "--quiet", "-q")):
    """Verify a package, then restore its File-set atomically (nothing is written on failure)."""
    with _errors(as_json), _progress_bar(quiet) as bar:
        options = _receive_options(key, cert, p12, key_password_file, password_file, password_prompt,
                                   trust, allow_unsigned, jobs, bar, allow_plain=allow_plain, legacy=legacy)
        report = api.unpack(packages if len(packages) > 1 else packages[0], output, options,
                            force=force, rebuild=rebuild)
    _emit(report, as_json, "\n".join(_policy_text(report) + [
        f"{report.output}: {report.files} files restored"
        + (" (rebuilt as a conformant File-set" + _unprotected(report, "; not encrypted, not signed") + ")"
           if report.rebuilt else _unprotected(report, " (integrity checked; not encrypted, not signed)")
           or " (verified)")]))


@app.command()
def reidentify(package: Path = typer.Argument(..., help="De-identified package (ZIP, secure) or File-set folder."),
               output: Path = typer.Option(..., "-o", "--output", help="Destination (folder, .zip)."),
               key: Optional[Path] = _KEY_OPTIONS["key"], cert: Optional[Path] = _KEY_OPTIONS["cert"],
               p12: Optional[Path] = _KEY_OPTIONS["p12"],
               key_password_file: Optional[Path] = _KEY_OPTIONS["key_password_file"],
               password_file: Optional[Path] = _KEY_OPTIONS["password_file"],
               password_prompt: bool = _KEY_OPTIONS["password_prompt"],
               trust: list[Path] = _KEY_OPTIONS["trust"], allow_unsigned: bool = _KEY_OPTIONS["allow_unsigned"],
               allow_plain: bool = _KEY_OPTIONS["allow_plain"], legacy: bool = _KEY_OPTIONS["legacy"],
               force: bool = typer.Option(False, "--force"),
               as_json: bool = typer.Option(False, "--json"),
               jobs: Optional[int] = typer.Option(None, "--jobs", "-j")):
    """Restore the original values sealed with --reid-recipient (needs the recipient's key)."""
    with _errors(as_json):
        options = _receive_options(key, cert, p12, key_password_file, password_file, password_prompt,
                                   trust, allow_unsigned, jobs, allow_plain=allow_plain, legacy=legacy)
        report = api.reidentify(package, output, options, force=force)
    _emit(report, as_json, _pack_text(report))


def main() -> None:
    # The CLI owns its process, so these are set here, never by the library:
    # warnings of libraries (pydicom's value checks, getpass) are not for
    # the user (PYTHONWARNINGS / -W still apply for developers)...
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    # ...and SIGTERM (systemd, timeout, Kubernetes) cleans up like Ctrl-C.
    _signals.install()
    # Only SIGKILL (or a power cut) escapes that: whatever command runs next
    # removes what such a run left in the temporary folder (plaintext spools).
    from dicompack.output import sweep_temp
    sweep_temp()
    try:
        app()
    finally:
        _signals.hold_until_exit()


if __name__ == "__main__":
    main()
