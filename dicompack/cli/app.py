"""Command line interface: a thin shell over ``dicompack.api``.

Errors print one line ``dicompack: <where>: <what>`` (plus one line per
offending file where there are several) and exit with the error's code.
"""
from __future__ import annotations

import json
import signal
import sys
import warnings
from contextlib import contextmanager

import click
import typer

from dicompack._version import __version__
from dicompack.cli.signals import SIGNALS
from dicompack.errors import DicompackError, PackageInvalidError
from dicompack.output import sweep_temp

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
def progress_bar(quiet: bool):
    """A rich progress bar on a terminal; nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    # rich is imported only when a bar is drawn: scripts and pipes never pay its start-up.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
    console = Console(stderr=True)
    with _cursor_shown_at_exit(console), \
            Progress(TextColumn("{task.description:>9}"), BarColumn(), TextColumn("{task.fields[count]}"),
                     TimeRemainingColumn(), console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

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
    """Print the error (its first problem, when it lists several, then the
    others) and exit with its code.  The error itself is left as raised."""
    where, message = err.problems[0] if err.problems else (err.where, err.message)
    if as_json:
        typer.echo(json.dumps(err.to_dict() | {"where": where, "message": message, "problems": err.problems},
                              indent=2))
    else:
        typer.echo(f"dicompack: {where}: {message}" if where else f"dicompack: {message}", err=True)
        for path, reason in err.problems[1:]:
            typer.echo(f"dicompack: {path}: {reason}", err=True)
    raise typer.Exit(err.exit_code)


@contextmanager
def reported_errors(as_json: bool):
    try:
        with SIGNALS.cancellable():
            yield
    except DicompackError as err:
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
        if SIGNALS.received is None:    # end of input at a prompt
            raise
        _cancelled(SIGNALS.received)    # a signal at a prompt: click made it Abort


def _cancelled(signum: int) -> None:
    word = "terminated" if signum == signal.SIGTERM else "interrupted"
    typer.echo(f"dicompack: {word}; nothing was written", err=True)
    raise typer.Exit(128 + signum)


def print_report(report, as_json: bool, text: str) -> None:
    typer.echo(report.to_json() if as_json else text)


def main() -> None:
    # The CLI owns its process, so these are set here, never by the library:
    # warnings of libraries (pydicom's value checks, getpass) are not for
    # the user (PYTHONWARNINGS / -W still apply for developers)...
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    # ...and SIGTERM (systemd, timeout, Kubernetes) cleans up like Ctrl-C.
    SIGNALS.install()
    # Only SIGKILL (or a power cut) escapes that: whatever command runs next
    # removes what such a run left in the temporary folder (plaintext spools).
    sweep_temp()
    try:
        app()
    finally:
        SIGNALS.hold_until_exit()


if __name__ == "__main__":
    main()
