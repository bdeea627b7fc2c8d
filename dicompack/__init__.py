"""dicompack: pack DICOM studies into standard File-sets, ZIPs and secure
packages; verify and unpack them safely.

The public API (the CLI is a thin shell over exactly these calls)::

    import dicompack
    report = dicompack.pack(["incoming/"], "out.zip", dicompack.PackOptions(fileset_id="X"))
    dicompack.verify("out.zip").ok

Everything a caller needs is importable from here: the functions, their
option classes and the types those take, the reports, the closed sets and
the exceptions (each with its own exit code).
"""
from typing import TYPE_CHECKING

from dicompack._version import __version__
from dicompack.api import (
    build_dicomdir,
    check,
    list_fileset,
    pack,
    reidentify,
    unpack,
    verify,
)
from dicompack.container.zip import ZipLimits
from dicompack.enums import OutputFormat, PackageKind, ScanStatus, Severity, ZipMethod
from dicompack.errors import (
    CompressionError,
    DecryptionError,
    DeidentificationError,
    DicompackError,
    DuplicateInstanceError,
    InvalidInputError,
    KeyMaterialError,
    OperationCancelledError,
    OutputExistsError,
    PackageInvalidError,
    SignatureInvalidError,
    SignerUntrustedError,
    StorageError,
    UnsafeArchiveError,
    UnsignedPackageError,
    UsageError,
)
from dicompack.options import PackOptions, ReceiveOptions
from dicompack.report import (
    CheckReport,
    DicomdirReport,
    Finding,
    ListReport,
    PackReport,
    Problem,
    ProgressCallback,
    ProgressEvent,
    UnpackReport,
    VerifyReport,
)

if TYPE_CHECKING:      # the same names, for type checkers (at run time: __getattr__ below)
    from dicompack.codecs.choice import Codec, J2KMode, J2KOptions
    from dicompack.container.cms import CertRecipient, PasswordRecipient, Signer
    from dicompack.deid import DeidOptions

# Exported on first use (PEP 562): importing them here would load
# cryptography, numpy, pydicom and openjpeg into every `import dicompack`
# and every CLI start, which a plain verify or unpack never needs.
_LAZY = {
    "J2KOptions": "dicompack.codecs.choice",
    "J2KMode": "dicompack.codecs.choice",
    "Codec": "dicompack.codecs.choice",
    "DeidOptions": "dicompack.deid",
    "CertRecipient": "dicompack.container.cms",
    "PasswordRecipient": "dicompack.container.cms",
    "Signer": "dicompack.container.cms",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib  # (PEP 562 lazy export, see _LAZY)
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dicompack' has no attribute {name!r}")


__all__ = [
    "__version__",
    # functions
    "pack", "verify", "unpack", "check", "reidentify", "list_fileset", "build_dicomdir",
    # options and the types they take
    "PackOptions", "ReceiveOptions", "CertRecipient", "PasswordRecipient", "Signer", "J2KOptions", "J2KMode", "Codec",
    "DeidOptions", "ZipLimits", "OutputFormat", "ZipMethod",
    # reports
    "ProgressEvent", "ProgressCallback", "Problem", "Finding", "PackReport", "VerifyReport", "UnpackReport",
    "CheckReport", "ListReport",
    "DicomdirReport", "PackageKind", "ScanStatus", "Severity",
    # exceptions
    "DicompackError", "UsageError", "OutputExistsError", "InvalidInputError", "DuplicateInstanceError",
    "PackageInvalidError", "UnsafeArchiveError", "DecryptionError", "SignatureInvalidError",
    "SignerUntrustedError", "UnsignedPackageError", "DeidentificationError", "CompressionError",
    "KeyMaterialError", "StorageError", "OperationCancelledError",
]
