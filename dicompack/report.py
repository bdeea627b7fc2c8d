"""Structured reports and progress events.  Reports are dataclasses that
serialize to JSON; the CLI's --json prints exactly ``to_dict()``."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from dicompack.enums import PackageKind, Severity
from dicompack.errors import OperationCancelledError

STAGES = ("scan", "deidentify", "compress", "copy", "dicomdir", "zip", "sign",
          "encrypt", "verify", "restore", "check")


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    files_done: int
    files_total: int
    bytes_done: int = 0
    bytes_total: int = 0


ProgressCallback = Callable[[ProgressEvent], Optional[bool]]


class Progress:
    """Wraps the caller's callback; a False return or an exception from it
    cancels the run (the caller's exception propagates as is)."""

    def __init__(self, callback: ProgressCallback | None):
        self.callback = callback

    def __call__(self, stage: str, done: int, total: int, bytes_done: int = 0,
                 bytes_total: int = 0) -> None:
        if self.callback is None:
            return
        if self.callback(ProgressEvent(stage, done, total, bytes_done, bytes_total)) is False:
            raise OperationCancelledError(f"cancelled by the caller during {stage}")


@dataclass
class Report:
    """Base of the report dataclasses (a dataclass without fields itself)."""

    def to_dict(self) -> dict:
        d = _plain(dataclasses.asdict(self))
        if hasattr(self, "findings"):
            d["ok"] = self.ok
        return d

    @property
    def ok(self) -> bool:
        """No finding of severity 'error' (reports without findings are ok)."""
        return not any(f["severity"] == Severity.ERROR for f in getattr(self, "findings", []))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        # dataclasses.asdict keeps enum members; JSON reports hold their plain values.
        return value.value
    return value


@dataclass
class Finding:
    """One problem found by a check (DICOMDIR, File-set, ZIP, package):
    only findings of severity 'error' make a report not ok."""
    severity: Severity
    where: str
    what: str

    def __post_init__(self) -> None:
        # Callers may still pass the plain string ("error"): one closed set either way.
        self.severity = Severity(self.severity)

    def to_dict(self) -> dict:
        return {"severity": self.severity.value, "where": self.where, "what": self.what}

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.what}"


@dataclass
class Problem:
    path: str
    reason: str


@dataclass
class PackReport(Report):
    output: str
    format: str
    fileset_id: str
    patients: int = 0
    studies: int = 0
    series: int = 0
    instances: int = 0
    bytes_written: int = 0
    transfer_syntaxes: dict = field(default_factory=dict)
    application_profile: str = ""
    skipped: list[Problem] = field(default_factory=list)        # not DICOM, old DICOMDIR
    invalid: list[Problem] = field(default_factory=list)        # left out with --skip-invalid
    duplicates_collapsed: list[Problem] = field(default_factory=list)
    fixes: list[Problem] = field(default_factory=list)          # what we repaired in input files
    invented: list[dict] = field(default_factory=list)          # Type 1 DICOMDIR keys we had to invent
    warnings: list[Problem] = field(default_factory=list)
    stages: dict = field(default_factory=dict)                  # stage -> details (zip, cms, deid, j2k)
    volumes: list[str] = field(default_factory=list)            # outputs written (several with --split)
    seconds: float = 0.0
    files_per_second: float = 0.0


@dataclass
class CheckReport(Report):
    path: str
    fileset_id: str = ""
    records: int = 0
    files: int = 0
    findings: list[dict] = field(default_factory=list)


@dataclass
class ListReport(Report):
    path: str
    fileset_id: str
    patients: list[dict] = field(default_factory=list)


@dataclass
class DicomdirReport(Report):
    path: str
    fileset_id: str
    records: int = 0
    added: int = 0
    instances: int = 0
    invented: list[dict] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class VerifyReport(Report):
    path: str
    kind: PackageKind                 # 'zip' | 'secure' | 'fileset' | 'secure-fileset'
    entries: int = 0
    fileset_id: str = ""
    records: int = 0
    files: int = 0
    package_uid: str = ""
    volume: dict = field(default_factory=dict)
    secure: dict = field(default_factory=dict)   # signer, algorithms, recipient used
    findings: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Callers may pass the plain string ("zip"): one closed set either way.
        self.kind = PackageKind(self.kind)


@dataclass
class UnpackReport(Report):
    path: str
    output: str
    files: int = 0
    rebuilt: bool = False
    verify: dict = field(default_factory=dict)
