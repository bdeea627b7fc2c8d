"""examples/portal_server.py on 127.0.0.1: download a streamed secure package,
verify it with the CLI, upload it back."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.pki import make_cert, save
from tests.support.tools import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory, example_corpus):
    d = tmp_path_factory.mktemp("portal")
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = make_cert("Portal CA", ca_key, ca=True, days=365)
    save(d, "ca", ca_key, ca)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    save(d, "portal", key, make_cert("portal", key, ca_key, ca.subject))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src, _ = example_corpus
    log = open(d / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "portal_server.py"), str(src),
                             "--recipient", str(d / "portal.pem"), "--sign-key", str(d / "portal.key"),
                             "--sign-cert", str(d / "portal.pem"), "--key", str(d / "portal.key"),
                             "--cert", str(d / "portal.pem"), "--trust", str(d / "ca.pem"),
                             "--inbox", str(d / "inbox"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=log)
    assert b"listening" in proc.stdout.readline()
    yield f"http://127.0.0.1:{port}", d
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_download_verify_upload(server, tmp_path):
    base, d = server
    with urllib.request.urlopen(base + "/download", timeout=60) as answer:
        assert answer.headers["Content-Type"].startswith("application/pkcs7-mime")
        package = answer.read()
    path = tmp_path / "DICOM.p7m"
    path.write_bytes(package)
    proc = run_cli("verify", path, "--key", d / "portal.key", "--cert", d / "portal.pem", "--trust", d / "ca.pem",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["secure"]["signer_subject"] == "CN=portal"
    request = urllib.request.Request(base + "/upload", data=package, method="POST")
    reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
    assert reply["files"] == 21 and Path(reply["restored"]).is_dir()


def test_tampered_upload_is_refused_cleanly(server):
    base, d = server
    package = bytearray(urllib.request.urlopen(base + "/download", timeout=60).read())
    package[len(package) // 2] ^= 1
    request = urllib.request.Request(base + "/upload", data=bytes(package), method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code in (400, 403)
    body = json.loads(err.value.read())
    if err.value.code == 403:       # signature: no detail for the uploader
        assert body == {"error": "package rejected"}
    else:
        assert body["error"] == "PackageInvalidError"
    assert len(list((d / "inbox").iterdir())) <= 1     # only the good upload of the other test


def _upload_refused(base: str, package: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(base + "/upload", data=package, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    return err.value.code, err.value.read()


@pytest.mark.parametrize("kind,error", [("plain", "UnsignedPackageError"), ("unsigned", "UnsignedPackageError"),
                                        ("stranger", "DecryptionError")])
def test_downgraded_uploads_get_one_generic_answer(server, example_corpus, tmp_path, kind, error):
    """The portal enforces the receive policy (a plain ZIP, an unsigned
    package, a package for someone else are all refused) and tells the
    uploader nothing but "package rejected"; the reason is in its log."""
    base, d = server
    src, _ = example_corpus
    out = tmp_path / "up.p7m"
    extra = {"plain": ["--format", "zip"], "unsigned": ["--recipient", d / "portal.pem"],
             "stranger": ["--recipient", tmp_path / "other.pem", "--sign-key", d / "portal.key",
                          "--sign-cert", d / "portal.pem"]}[kind]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    save(tmp_path, "other", other, make_cert("other", other))
    proc = run_cli("pack", src, "-o", out, *extra, "-q")
    assert proc.returncode == 0, proc.stderr
    before = sorted((d / "inbox").iterdir())
    code, body = _upload_refused(base, out.read_bytes())
    assert code == 403 and json.loads(body) == {"error": "package rejected"}
    assert sorted((d / "inbox").iterdir()) == before
    assert f"{error} (exit".encode() in (d / "server.log").read_bytes()
