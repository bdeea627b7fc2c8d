"""``dicompack pack``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dicompack import api
from dicompack.cli.app import app, print_report, progress_bar, reported_errors
from dicompack.cli.options import (
    deid_options,
    j2k_options,
    parse_size,
    recipients_from,
    reid_certificates,
    signer_from,
)
from dicompack.options import PackOptions, parse_zip_level
from dicompack.packing.refusals import check_transport, output_format, parse_format
from dicompack.packing.writers import parse_zip_method


@app.command()
def pack(sources: list[Path] = typer.Argument(..., help="DICOM files or folders (searched recursively)."),
         output: str = typer.Option(..., "-o", "--output", help="Destination: a folder, NAME.zip, NAME.p7m, or - for a ZIP on stdout."),
         fmt: Optional[str] = typer.Option(None, "--format", help="dir | zip | secure (default: from the destination's suffix)."),
         zip_method: str = typer.Option("auto", "--zip-method", help="auto (deflate uncompressed, store compressed) | deflate | store | zstd (most unzip tools cannot read zstd)."),
         zip_level: str = typer.Option("default", "--zip-level", help="Deflate effort: fast | default | small, or 1-12 (libdeflate scale). Default 2: about zip -6's size at several times its speed."),
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
         j2k: Optional[str] = typer.Option(None, "--j2k", help="Recompress pixel data: lossless | ratio:N | psnr:DB (JPEG 2000) | near:N (JPEG-LS)."),
         codec: Optional[str] = typer.Option(None, "--codec", help="Codec for --j2k: j2k (default, read everywhere) | htj2k (lossless only, fast) | jpegls (lossless or near:N). Alone: lossless. See spec/codecs.md."),
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
    with reported_errors(as_json), progress_bar(quiet) as bar:
        if zip_method == "zstd":
            typer.echo("dicompack: warning: zstd entries (method 93) cannot be read by most unzip tools",
                       err=True)
        # Before any key is read or password asked for: keys given for an
        # output that is neither encrypted nor signed would be dropped silently.
        protection = [name for name, given in (
            ("--recipient", recipient), ("--password-file", password_file), ("--password-prompt", password_prompt),
            ("--sign-key", sign_key), ("--sign-cert", sign_cert), ("--sign-chain", sign_chain), ("--p12", p12),
            ("--aead", aead)) if given]
        check_transport(output_format(output, fmt), stream=output == "-", per_file=per_file,
                            protection=protection, recipients=bool(recipient or password_file or password_prompt))
        recipients = recipients_from(recipient, password_file, password_prompt, pbkdf2_iterations, rsa_pkcs1v15)
        signer = signer_from(sign_key, sign_cert, sign_chain, p12, key_password_file, digest, sign_pss)
        reid_certs = reid_certificates(reid_recipient)
        report = api.pack(sources, output, PackOptions(
            fileset_id=fileset_id, format=parse_format(fmt) if fmt else None, zip_method=parse_zip_method(zip_method), zip_level=parse_zip_level(zip_level), skip_invalid=skip_invalid,
            split=parse_size(split) if split else None, descriptor=descriptor, recipients=tuple(recipients), signer=signer,
            aead=aead, legacy=legacy, per_file=per_file, keep_preamble=keep_preamble, reid_recipients=reid_certs, j2k=j2k_options(j2k, no_verify, force_lossy, transcode, codec),
            deid=deid_options(deidentify, deid_key_file, patient_id=patient_id, patient_name=patient_name,
                               retain_safe_private=retain_safe_private,
                               retain_uids=retain_uids, retain_device_identity=retain_device_identity,
                               retain_institution_identity=retain_institution_identity,
                               retain_patient_characteristics=retain_patient_characteristics,
                               retain_dates=retain_dates, date_shift_days=date_shift_days,
                               clean_descriptors=clean_descriptors,
                               clean_structured_content=clean_structured_content, burned_in=burned_in),
            force=force, jobs=jobs, progress=bar))
    if output == "-":
        typer.echo(report.to_json() if as_json else pack_text(report, verbose), err=True)
    else:
        print_report(report, as_json, pack_text(report, verbose))


def pack_text(r, verbose: bool = False) -> str:
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
