"""The real command line and the independent tools the tests check us with."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def require_tool(name: str) -> str:
    """The path of an external tool; in CI a missing tool is a failure, not a skip."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed: .ci/run must install it")
    pytest.skip(f"{name} not installed")


def run_cli(*args: str, check: bool = False, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "dicompack.cli", *map(str, args)],
                          capture_output=True, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"dicompack {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout.decode()}\n{proc.stderr.decode()}")
    return proc


def dciodvfy_errors(path: Path) -> list[str]:
    tool = require_tool("dciodvfy")
    proc = subprocess.run([tool, str(path)], capture_output=True, encoding="latin-1")
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
