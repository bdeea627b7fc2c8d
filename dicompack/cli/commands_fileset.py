"""``dicompack ls``, ``check`` and ``dicomdir``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dicompack import api
from dicompack.cli.app import app, print_report, progress_bar, reported_errors
from dicompack.errors import PackageInvalidError


@app.command("ls")
def ls_(path: Path = typer.Argument(..., help="File-set folder or its DICOMDIR."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON.")):
    """List patients, studies and series of a File-set."""
    with reported_errors(as_json):
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
    print_report(report, as_json, "\n".join(lines))


@app.command()
def check(path: Path = typer.Argument(..., help="File-set folder or its DICOMDIR."),
          as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
          jobs: Optional[int] = typer.Option(None, "--jobs", "-j")):
    """Validate a File-set: DICOMDIR structure, offsets, records and the files they reference."""
    with reported_errors(as_json):
        report = api.check(path, jobs=jobs)
    lines = [f"{f['severity']}: {f['where']}: {f['what']}" for f in report.findings]
    lines.append(f"{report.path}: {report.records} records, {report.files} files: "
                 + ("OK" if report.ok else "INVALID"))
    print_report(report, as_json, "\n".join(lines))
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
    with reported_errors(as_json), progress_bar(quiet) as bar:
        report = api.build_dicomdir(folder, fileset_id=fileset_id, update=update, jobs=jobs, progress=bar)
    print_report(report, as_json, f"{report.path}: {report.records} records, {report.instances} instances"
          + (f", {report.added} added" if update else "") + f" in {report.seconds:.2f} s")
