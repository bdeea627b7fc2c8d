"""``dicompack verify``, ``unpack`` and ``reidentify``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dicompack import api
from dicompack.cli.app import app, print_report, progress_bar, reported_errors
from dicompack.cli.commands_pack import pack_text
from dicompack.cli.options import KEY_OPTIONS, receive_options
from dicompack.errors import PackageInvalidError


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
           key: Optional[Path] = KEY_OPTIONS["key"], cert: Optional[Path] = KEY_OPTIONS["cert"],
           p12: Optional[Path] = KEY_OPTIONS["p12"],
           key_password_file: Optional[Path] = KEY_OPTIONS["key_password_file"],
           password_file: Optional[Path] = KEY_OPTIONS["password_file"],
           password_prompt: bool = KEY_OPTIONS["password_prompt"],
           trust: list[Path] = KEY_OPTIONS["trust"], allow_unsigned: bool = KEY_OPTIONS["allow_unsigned"],
           allow_plain: bool = KEY_OPTIONS["allow_plain"], legacy: bool = KEY_OPTIONS["legacy"],
           as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
           jobs: Optional[int] = typer.Option(None, "--jobs", "-j")):
    """Verify a package: decryption, signature and signer chain, ZIP CRCs,
    manifest hashes and the packaged File-set."""
    with reported_errors(as_json):
        options = receive_options(key, cert, p12, key_password_file, password_file, password_prompt,
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
    print_report(report, as_json, "\n".join(lines))
    if not report.ok:
        raise typer.Exit(PackageInvalidError.exit_code)


@app.command()
def unpack(packages: list[Path] = typer.Argument(..., help="ZIP or secure package; several volumes (NAME-1ofN) are merged."),
           output: Path = typer.Option(..., "-o", "--output", help="Destination folder."),
           rebuild: bool = typer.Option(False, "--rebuild", help="Foreign ZIP: build a conformant File-set from the DICOM files it holds."),
           key: Optional[Path] = KEY_OPTIONS["key"], cert: Optional[Path] = KEY_OPTIONS["cert"],
           p12: Optional[Path] = KEY_OPTIONS["p12"],
           key_password_file: Optional[Path] = KEY_OPTIONS["key_password_file"],
           password_file: Optional[Path] = KEY_OPTIONS["password_file"],
           password_prompt: bool = KEY_OPTIONS["password_prompt"],
           trust: list[Path] = KEY_OPTIONS["trust"], allow_unsigned: bool = KEY_OPTIONS["allow_unsigned"],
           allow_plain: bool = KEY_OPTIONS["allow_plain"], legacy: bool = KEY_OPTIONS["legacy"],
           force: bool = typer.Option(False, "--force", help="Replace a non-empty destination."),
           as_json: bool = typer.Option(False, "--json"),
           jobs: Optional[int] = typer.Option(None, "--jobs", "-j"),
           quiet: bool = typer.Option(False, "--quiet", "-q")):
    """Verify a package, then restore its File-set atomically (nothing is written on failure)."""
    with reported_errors(as_json), progress_bar(quiet) as bar:
        options = receive_options(key, cert, p12, key_password_file, password_file, password_prompt,
                                   trust, allow_unsigned, jobs, bar, allow_plain=allow_plain, legacy=legacy)
        report = api.unpack(packages if len(packages) > 1 else packages[0], output, options,
                            force=force, rebuild=rebuild)
    print_report(report, as_json, "\n".join(_policy_text(report) + [
        f"{report.output}: {report.files} files restored"
        + (" (rebuilt as a conformant File-set" + _unprotected(report, "; not encrypted, not signed") + ")"
           if report.rebuilt else _unprotected(report, " (integrity checked; not encrypted, not signed)")
           or " (verified)")]))


@app.command()
def reidentify(package: Path = typer.Argument(..., help="De-identified package (ZIP, secure) or File-set folder."),
               output: Path = typer.Option(..., "-o", "--output", help="Destination (folder, .zip)."),
               key: Optional[Path] = KEY_OPTIONS["key"], cert: Optional[Path] = KEY_OPTIONS["cert"],
               p12: Optional[Path] = KEY_OPTIONS["p12"],
               key_password_file: Optional[Path] = KEY_OPTIONS["key_password_file"],
               password_file: Optional[Path] = KEY_OPTIONS["password_file"],
               password_prompt: bool = KEY_OPTIONS["password_prompt"],
               trust: list[Path] = KEY_OPTIONS["trust"], allow_unsigned: bool = KEY_OPTIONS["allow_unsigned"],
               allow_plain: bool = KEY_OPTIONS["allow_plain"], legacy: bool = KEY_OPTIONS["legacy"],
               force: bool = typer.Option(False, "--force"),
               as_json: bool = typer.Option(False, "--json"),
               jobs: Optional[int] = typer.Option(None, "--jobs", "-j")):
    """Restore the original values sealed with --reid-recipient (needs the recipient's key)."""
    with reported_errors(as_json):
        options = receive_options(key, cert, p12, key_password_file, password_file, password_prompt,
                                   trust, allow_unsigned, jobs, allow_plain=allow_plain, legacy=legacy)
        report = api.reidentify(package, output, options, force=force)
    print_report(report, as_json, pack_text(report))
