"""Options and runners shared by the secure-package attack tests."""
from __future__ import annotations

import json
from pathlib import Path

from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured


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
