"""Secure packages: dicompack's streaming CMS vs the openssl pipeline on the
same payload, both directions, with peak RSS; then `dicompack pack -o x.p7m`
(default options: compressed ZIP, signed and encrypted) vs `zip -r -0` +
`openssl cms -sign | openssl cms -encrypt` on the same tree of uncompressed
512x512 CT, with both sizes.

    python benchmarks/cms.py [--mb 64 256]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import dicompack_cmd, run_measured, table  # also puts the repo root on sys.path

from tests.support import synthetic

CT_FILE_MB = 512 * 512 * 2 / 1e6

KEYGEN = """
import datetime as dt, sys
from pathlib import Path
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
d = Path(sys.argv[1])
def name(cn): return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
now = dt.datetime.now(dt.timezone.utc)
def cert(cn, key, ik, iname, ca):
    return (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(iname).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True).sign(ik, hashes.SHA256()))
cak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
for stem, ca in (("ca", True), ("signer", False), ("recip", False)):
    k = cak if ca else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    c = cert(stem, k, cak, name("ca"), ca)
    (d / f"{stem}.key").write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (d / f"{stem}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
"""

OURS_PACK = """
import sys
from dicompack import keys
from dicompack.container import cms
d = sys.argv[1]
signer = cms.Signer(keys.load_private_key(d + '/signer.key'), keys.load_certificate(d + '/signer.pem'))
with open(d + '/payload', 'rb') as src, open(d + '/ours.p7m', 'wb') as out:
    recipient = cms.CertRecipient(keys.load_certificate(d + '/recip.pem'))
    cms.write_secure_package(src, out, recipients=[recipient], signer=signer)
"""

OURS_OPEN = """
import sys
from dicompack import keys
from dicompack.container import cms
d = sys.argv[1]
with open(d + '/ours.p7m', 'rb') as src, open(d + '/ours.out', 'wb') as out:
    cms.open_secure_package(src, out, key=keys.load_private_key(d + '/recip.key'),
                            cert=keys.load_certificate(d + '/recip.pem'), trust=[keys.load_certificate(d + '/ca.pem')])
"""


OPENSSL = "openssl cms | openssl cms"


def shell(cmd: str) -> tuple[float, float]:
    return run_measured(["bash", "-c", cmd])


def bench(mb: int, d: Path) -> list[tuple]:
    with open(d / "payload", "wb") as f:
        block = bytes(range(256)) * 4096
        for _ in range(mb):
            f.write(block)
    rows = []
    openssl = OPENSSL
    o_s, o_rss = shell(f"cd {d} && openssl cms -sign -stream -binary -nodetach -outform DER -signer signer.pem "
                       f"-inkey signer.key -in payload | openssl cms -encrypt -stream -binary -aes256 -inform DER "
                       f"-outform DER -out theirs.p7m recip.pem")
    u_s, u_rss = run_measured([sys.executable, "-c", OURS_PACK, str(d)])
    rows.append((mb, "sign+encrypt", openssl, f"{o_s:.2f}", f"{mb / o_s:.0f}", f"{o_rss:.0f}", "1.00"))
    rows.append((mb, "sign+encrypt", "dicompack", f"{u_s:.2f}", f"{mb / u_s:.0f}", f"{u_rss:.0f}", f"{o_s / u_s:.2f}"))
    o_s, o_rss = shell(f"cd {d} && openssl cms -decrypt -binary -inform DER -in theirs.p7m -recip recip.pem "
                       f"-inkey recip.key | openssl cms -verify -binary -inform DER -CAfile ca.pem -out theirs.out")
    u_s, u_rss = run_measured([sys.executable, "-c", OURS_OPEN, str(d)])
    rows.append((mb, "decrypt+verify", openssl, f"{o_s:.2f}", f"{mb / o_s:.0f}", f"{o_rss:.0f}", "1.00"))
    rows.append((mb, "decrypt+verify", "dicompack", f"{u_s:.2f}", f"{mb / u_s:.0f}", f"{u_rss:.0f}",
                 f"{o_s / u_s:.2f}"))
    assert (d / "ours.out").stat().st_size == mb << 20
    return rows + bench_ct_pack(mb, d)


def bench_ct_pack(mb: int, d: Path) -> list[tuple]:
    """Secure pack of a CT tree: ours (compressed) vs stored ZIP + openssl."""
    tree = d / f"ct{mb}"
    synthetic.make_conformant_tree(tree, max(1, round(mb / CT_FILE_MB)), rows=512, columns=512)
    o_s, o_rss = shell(f"cd {tree} && zip -q -r -0 - . | openssl cms -sign -stream -binary -nodetach -outform DER "
                       f"-signer {d}/signer.pem -inkey {d}/signer.key | openssl cms -encrypt -stream -binary -aes256 "
                       f"-inform DER -outform DER -out {d}/theirs-ct.p7m {d}/recip.pem")
    u_s, u_rss = run_measured(dicompack_cmd("pack", str(tree), "-o", str(d / "ours-ct.p7m"), "-q",
                                            "--recipient", str(d / "recip.pem"), "--sign-key", str(d / "signer.key"),
                                            "--sign-cert", str(d / "signer.pem")), stdout=subprocess.DEVNULL)
    o_size, u_size = (d / "theirs-ct.p7m").stat().st_size, (d / "ours-ct.p7m").stat().st_size
    real = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / 1e6
    return [(mb, "pack CT -> p7m", f"zip -r -0 + {OPENSSL} ({o_size / 1e6:.1f} MB)", f"{o_s:.2f}",
             f"{real / o_s:.0f}", f"{o_rss:.0f}", "1.00"),
            (mb, "pack CT -> p7m", f"dicompack pack ({u_size / 1e6:.1f} MB, {u_size / o_size:.2f}x)", f"{u_s:.2f}",
             f"{real / u_s:.0f}", f"{u_rss:.0f}", f"{o_s / u_s:.2f}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, nargs="+", default=[64])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run([sys.executable, "-c", KEYGEN, str(d)], check=True)
        for mb in args.mb:
            rows += bench(mb, d)
    print(table(rows, ("MB", "task", "tool", "seconds", "MB/s", "peak RSS MB", "speed vs openssl")))
    print("(peak RSS of a shell pipeline is its largest process)")


if __name__ == "__main__":
    main()
