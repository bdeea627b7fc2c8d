"""The typed option classes of the library API (re-exported by
``dicompack`` and ``dicompack.api``).  Immutable: build one per call with
the fields you need; the defaults are the safe choice."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dicompack.enums import OutputFormat, ZipMethod
from dicompack.errors import UsageError
from dicompack.report import ProgressCallback

if TYPE_CHECKING:
    # Types of the fields only: importing these modules at run time would
    # load cryptography, numpy and pydicom into every command (a plain
    # `verify` needs none of them; see spec/architecture.md, start-up).
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from dicompack.codecs.j2k import J2KOptions
    from dicompack.container.cms import CertRecipient, PasswordRecipient, Signer
    from dicompack.container.zip import ZipLimits
    from dicompack.deid import DeidOptions

    PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --zip-level presets (any level 1-12 works too).  "default" must equal
# dicompack.container.zip.DEFAULT_ZIP_LEVEL (checked by a test; not imported
# here: the container package loads zstandard into every command).
ZIP_LEVEL_PRESETS = {"fast": 1, "default": 2, "small": 9}


def parse_zip_level(value: str | int) -> int:
    """A --zip-level value: a preset name or an integer 1-12."""
    if isinstance(value, int) and not isinstance(value, bool):
        level = value
    elif isinstance(value, str) and value.strip().lower() in ZIP_LEVEL_PRESETS:
        return ZIP_LEVEL_PRESETS[value.strip().lower()]
    elif isinstance(value, str) and value.strip().isdigit():
        level = int(value)
    else:
        level = -1
    if not 1 <= level <= 12:
        raise UsageError(f"--zip-level must be one of {', '.join(ZIP_LEVEL_PRESETS)} or 1-12, not {value!r}")
    return level


@dataclass(frozen=True)
class PackOptions:
    """How ``pack`` builds and protects its output."""
    fileset_id: str = ""
    # Default from the destination's suffix: .zip -> zip, .p7m -> secure, else a folder.
    format: OutputFormat | Literal["dir", "zip", "secure"] | None = None
    # auto: deflate native Pixel Data, store what is already compressed.
    zip_method: ZipMethod | Literal["auto", "deflate", "store", "zstd"] = ZipMethod.AUTO
    # Deflate level, 1 (fastest) to 12 (smallest), libdeflate's scale; or a
    # preset of ZIP_LEVEL_PRESETS.  2: about zip -6's size at ~6x its speed a core.
    zip_level: int = 2
    split: int | None = None                    # volume size in bytes: several complete File-sets NAME-1ofN
    recipients: tuple[CertRecipient | PasswordRecipient, ...] = ()   # who can open a secure package
    signer: Signer | None = None                # None -> DigestedData (integrity only)
    aead: bool = False                          # AES-256-GCM AuthEnvelopedData (outside PS3.15 D.1)
    legacy: bool = False                        # allow SHA-1 signatures (3DES is never written)
    j2k: J2KOptions | None = None               # recompress native Pixel Data to JPEG 2000
    deid: DeidOptions | None = None             # de-identify every instance (PS3.15 E)
    reid_recipients: tuple[x509.Certificate, ...] = ()   # who may re-identify (Encrypted Attributes Sequence)
    descriptor: Path | None = None              # File-set Descriptor file (text), stored as README
    per_file: bool = False                      # folder of Secure DICOM Files (PS3.10 7.4), DICOMDIR included
    keep_preamble: bool = False                 # keep non-TIFF preambles (default: zeroed, CVE-2019-11687)
    skip_invalid: bool = False                  # leave out (and list) inputs that cannot be packed
    force: bool = False                         # replace an existing destination
    jobs: int | None = None                     # worker processes (default: every core)
    progress: ProgressCallback | None = None


@dataclass(frozen=True)
class ReceiveOptions:
    """Keys and policies for verify/unpack.  Giving a key, a password or a
    trust anchor makes the receive policy strict: every package and volume
    must be encrypted and signed by a trusted signer, unless relaxed."""
    key: PrivateKey | None = None               # recipient private key (RSA or EC)
    cert: x509.Certificate | None = None        # its certificate (selects the recipient info)
    password: bytes | None = None               # or the package password (PWRI)
    trust: tuple[x509.Certificate, ...] = ()    # trust anchors for the signer's chain
    allow_unsigned: bool = False                # accept DigestedData (integrity without origin)
    allow_plain: bool = False                   # accept a plain (unencrypted, unsigned) ZIP although keys are given
    legacy: bool = False                        # accept SHA-1 and weak PBKDF2 parameters of old senders (openssl)
    jobs: int | None = None
    limits: ZipLimits | None = None             # None for the defaults
    progress: ProgressCallback | None = None
