"""Options and runners shared by the secure-package attack tests."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from dicompack.container.manifest import build_manifest
from dicompack.container.zip import MANIFEST_NAME, EntryInfo
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import run_cli


def receiver_keys(pki: Path) -> list:
    """verify/unpack options of the intended recipient, trusting the test CA."""
    return ["--key", pki / "recip.key", "--cert", pki / "recip.pem", "--trust", pki / "ca.pem"]


def seal_options(pki: Path) -> list:
    """pack options: encrypted for the recipient, signed by the test signer."""
    return ["--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key", "--sign-cert", pki / "signer.pem"]


def run_hostile(*args) -> tuple[int, str, dict | None]:
    """Run the CLI on hostile input: bounded memory, one-line errors, no
    private temp path; returns (exit code, stderr, JSON report or None)."""
    m = run_cli_measured(*args)
    assert m.peak_rss_mb < HOSTILE_RSS_LIMIT_MB, m.peak_rss_mb
    err = m.stderr.decode()
    assert "Traceback" not in err and ".dicompack-tmp-" not in err, err
    out = m.stdout.decode()
    return m.returncode, err, json.loads(out) if out.strip().startswith("{") else None


def plain_volume_zip(folder: Path, out: Path, *, package_uid: str, volume: tuple[int, int],
                     summary: dict | None = None) -> Path:
    """A plain ZIP volume of ``folder`` (its DICOMDIR rebuilt first) with a
    self-consistent manifest: what a malicious sender, or anyone in transit
    with plain volumes, can make."""
    run_cli("dicomdir", folder, check=True)
    entries = []
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = p.read_bytes()
            name = p.relative_to(folder).as_posix()
            zf.writestr(name, data)
            entries.append(EntryInfo(name, len(data), 0, 0, hashlib.sha256(data).hexdigest(), "store"))
        zf.writestr(MANIFEST_NAME, build_manifest(entries, package_uid=package_uid, fileset_summary=summary or {},
                                                  volume=volume))
    return out
