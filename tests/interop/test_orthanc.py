"""A real PACS: Debian's Orthanc on 127.0.0.1 accepts our ZIP on
POST /instances, and the media ZIP it exports (with its own DICOMDIR) is
read by `dicompack verify` / `unpack`."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.support.tools import require_tool, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    binary = require_tool("Orthanc")
    work = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {"Name": "dicompack-test", "StorageDirectory": str(work / "db"),
              "IndexDirectory": str(work / "db"), "HttpPort": port, "DicomServerEnabled": False,
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
              "HttpTimeout": 60}
    (work / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen([binary, str(work / "config.json")], stdout=subprocess.DEVNULL,
                            stderr=open(work / "orthanc.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/system", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("Orthanc exited: " + (work / "orthanc.log").read_text(errors="replace")[-2000:])
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("Orthanc did not start within 30 s")
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def _get(url: str) -> bytes:
    return urllib.request.urlopen(url, timeout=60).read()


def test_orthanc_accepts_our_zip_and_exports_media_we_read(orthanc, example_corpus, tmp_path):
    src, info = example_corpus
    package = tmp_path / "study.zip"
    run_cli("pack", src, "-o", package, "-q", check=True)
    request = urllib.request.Request(orthanc + "/instances", data=package.read_bytes(), method="POST",
                                     headers={"Content-Type": "application/zip"})
    answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
    assert len(answer) == len(info["instances"])
    assert all(a["Status"] in ("Success", "AlreadyStored") for a in answer)
    stats = json.loads(_get(orthanc + "/statistics"))
    assert stats["CountInstances"] == len(info["instances"])

    patients = json.loads(_get(orthanc + "/patients"))
    media = tmp_path / "orthanc-media.zip"
    media.write_bytes(_get(f"{orthanc}/patients/{patients[0]}/media"))
    proc = run_cli("verify", media, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["findings"]
    assert report["records"] > 0 and report["files"] > 0
    out = tmp_path / "restored"
    run_cli("unpack", media, "-o", out, check=True)
    assert (out / "DICOMDIR").is_file()
    assert json.loads(run_cli("check", out, "--json").stdout)["ok"]
