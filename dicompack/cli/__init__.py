"""The command line: a thin shell over ``dicompack.api``.  Importing the
command modules registers their commands on the one typer app."""
from dicompack.cli import commands_fileset, commands_pack, commands_receive  # noqa: F401  (registers commands)
from dicompack.cli.app import app, main

__all__ = ["app", "main"]
