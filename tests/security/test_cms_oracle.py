"""No decryption oracle: once the content-encryption key is recovered, every
failure (CBC padding, inner BER, inner type, digest, signature, GCM tag)
gives the same message, exit code and JSON, after the whole ciphertext was
read; RSA PKCS#1 v1.5 key transport fails the same way (RFC 3218 2.3.2).

A reviewer recovered a DICOMDIR from a package, without the key, in 92 s
from the difference between "bad padding" and "decrypted content byte N:
malformed" (same exit code 7)."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from dicompack import keys
from dicompack.container import cms
from dicompack.errors import SignatureInvalidError
from tests.security.cms_edit import flip, layout, openssl, private_env
from tests.support.run import HOSTILE_RSS_LIMIT_MB, run_cli_measured
from tests.support.tools import run_cli


def _pack(pki: Path, src: Path, out: Path, *extra) -> Path:
    run_cli("pack", src, "-o", out, "--recipient", pki / "recip.pem", "--sign-key", pki / "signer.key",
            "--sign-cert", pki / "signer.pem", *extra, "-q", check=True)
    return out


@pytest.fixture(scope="module")
def packages(pki, example_corpus, tmp_path_factory) -> dict[str, Path]:
    src, _ = example_corpus
    d = tmp_path_factory.mktemp("packages")
    return {"cbc": _pack(pki, src, d / "cbc.p7m"),
            "gcm": _pack(pki, src, d / "gcm.p7m", "--aead"),
            "pkcs1v15": _pack(pki, src, d / "v15.p7m", "--rsa-pkcs1v15")}


def _keys(pki: Path, stem: str = "recip") -> list:
    return ["--key", pki / f"{stem}.key", "--cert", pki / "recip.pem", "--trust", pki / "ca.pem"]


def _answers(pki: Path, data: bytes, work: Path, key_args: list) -> dict:
    """What the CLI says about ``data``: verify --json and unpack, always
    from the same path, so that only the content could make them differ.
    Checks on the way that nothing is left anywhere and memory is bounded."""
    pkg_dir, tmp = work / "in", work / "tmp"
    pkg_dir.mkdir(exist_ok=True)
    pkg = pkg_dir / "study.p7m"
    pkg.write_bytes(data)
    env = private_env(tmp)
    dest = work / "out" / "study"
    dest.parent.mkdir(exist_ok=True)
    out = {}
    for name, args in {"verify": ["verify", pkg, *key_args, "--json"],
                       "unpack": ["unpack", pkg, "-o", dest, *key_args, "-q"]}.items():
        started = time.monotonic()
        m = run_cli_measured(*args, env=env, timeout=120)
        wall = time.monotonic() - started
        assert m.peak_rss_mb < HOSTILE_RSS_LIMIT_MB, (name, m.peak_rss_mb)
        assert list(tmp.iterdir()) == [], "spool left in the temporary folder"
        assert list(dest.parent.iterdir()) == [], "something restored or staged beside the destination"
        out[name] = (m.returncode, m.stdout, m.stderr)
        print(f"{name}: exit {m.returncode}, {m.peak_rss_mb:.0f} MB, {wall:.2f} s")
    return out


def _openssl_diagnosis(pki: Path, path: Path) -> str:
    """How openssl (which reports everything) fails on a variant: proof that
    the variants hit different checks of the decrypted content."""
    dec = openssl("cms", "-decrypt", "-inform", "DER", "-in", path, "-recip", pki / "recip.pem",
                  "-inkey", pki / "recip.key", "-binary")
    if dec.returncode:
        return "decrypt failed (padding)"
    ver = openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", pki / "ca.pem", "-out", os.devnull,
                  input=dec.stdout)
    if ver.returncode == 0:
        return "verified"
    text = ver.stderr.decode()
    return "inner does not parse" if "asn1" in text.lower() or "parse" in text.lower() else "verification failed"


@pytest.mark.parametrize("kind", ["cbc", "gcm"])
def test_altered_ciphertext_gives_one_answer(pki, packages, tmp_path, kind):
    data = packages[kind].read_bytes()
    ct = layout(data).ciphertext
    n = len(ct)
    variants = {"first block (inner BER header)": ct[3],
                "second block": ct[21],
                "middle (content digest)": ct[n // 2],
                "near the end (signer info)": ct[n - 150],
                "padding (second-to-last block)": ct[n - 17],
                "last block": ct[n - 1]}
    if kind == "cbc":
        seen = set()
        for offset in variants.values():
            probe = tmp_path / "probe.p7m"
            probe.write_bytes(flip(data, offset))
            seen.add(_openssl_diagnosis(pki, probe))
        assert len(seen) >= 3, seen                 # the variants do fail in different places
    answers = {where: _answers(pki, flip(data, offset), tmp_path, _keys(pki))
               for where, offset in variants.items()}
    first = next(iter(answers.values()))
    for where, got in answers.items():
        assert got == first, (where, got, first)
    code, stdout, stderr = first["verify"]
    assert code == 7 and b"integrity check" in stdout and b"byte" not in stdout
    code, stdout, stderr = first["unpack"]
    lines = stderr.decode().strip().splitlines()
    assert code == 7 and len(lines) == 1 and lines[0].startswith("dicompack: encrypted content: ")


def test_pkcs1v15_key_transport_failure_looks_like_any_alteration(pki, packages, tmp_path):
    """Bleichenbacher: a bad PKCS#1 v1.5 block (altered encrypted key, or the
    wrong private key) must not be told apart from altered content."""
    data = packages["pkcs1v15"].read_bytes()
    lay = layout(data)
    rinfo_end = lay.recipient_infos[1]
    variants = {
        "encrypted key altered": (flip(data, rinfo_end - 40), _keys(pki)),
        "encrypted key's first byte": (flip(data, rinfo_end - 256, 0x40), _keys(pki)),
        "wrong private key for the certificate": (data, _keys(pki, "stranger")),
        "ciphertext altered": (flip(data, lay.ciphertext[5]), _keys(pki)),
    }
    answers = {where: _answers(pki, blob, tmp_path, args) for where, (blob, args) in variants.items()}
    first = next(iter(answers.values()))
    assert all(got == first for got in answers.values()), answers
    assert first["verify"][0] == 7
    assert run_cli("verify", packages["pkcs1v15"], *_keys(pki)).returncode == 0


def test_oaep_wrong_key_stays_exit_6(pki, packages, tmp_path):
    """OAEP decoding fails as one constant-time error: nothing to hide."""
    data = packages["cbc"].read_bytes()
    bad = tmp_path / "oaep.p7m"
    bad.write_bytes(flip(data, layout(data).recipient_infos[1] - 40))
    proc = run_cli("verify", bad, *_keys(pki))
    assert proc.returncode == 6, proc.stderr


class _Counting(io.RawIOBase):
    def __init__(self, data: bytes):
        self._f = io.BytesIO(data)
        self.read_total = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        out = self._f.read(n)
        self.read_total += len(out)
        return out


def test_early_failure_reads_everything_and_keeps_no_plaintext(pki):
    """Timing: an early failure still decrypts the rest of the ciphertext
    (the same work as a late one), and no plaintext stays in the spool."""
    recip = keys.load_certificate(pki / "recip.pem")
    out = io.BytesIO()
    cms.write_secure_package(io.BytesIO(os.urandom(3 << 20)), out, recipients=[cms.CertRecipient(recip)],
                             signer=cms.Signer(keys.load_private_key(pki / "signer.key"),
                                               keys.load_certificate(pki / "signer.pem")))
    data = out.getvalue()
    ct = layout(data).ciphertext
    for offset in (ct[3], ct[len(ct) // 2], ct[-1]):
        src, spool = _Counting(flip(data, offset)), io.BytesIO()
        with pytest.raises(SignatureInvalidError) as err:
            cms.open_secure_package(src, spool, key=keys.load_private_key(pki / "recip.key"), cert=recip,
                                    trust=[keys.load_certificate(pki / "ca.pem")])
        assert str(err.value) == f"{cms.INTEGRITY_WHERE}: {cms.INTEGRITY_FAILURE}"
        assert src.read_total == len(data), "stopped reading at the first failure"
        assert spool.getvalue() == b""
