"""dicompack: pack DICOM studies into standard File-sets, ZIPs and secure
packages; verify and unpack them safely.

The public API (the CLI is a thin shell over exactly these calls)::

    import dicompack
    report = dicompack.pack(["incoming/"], "out.zip", dicompack.PackOptions(fileset_id="X"))
    dicompack.verify("out.zip").ok
"""
__version__ = "0.1.0"

from .api import (PackOptions, ReceiveOptions, build_dicomdir, check,  # noqa: E402
                  list_fileset, pack, reidentify, unpack, verify)
from .errors import (CancelledError, CompressionError, DecryptionError,  # noqa: E402
                     DeidentificationError, DicompackError, DuplicateInstanceError,
                     InvalidInputError, KeyMaterialError, OutputExistsError,
                     PackageInvalidError, SignatureInvalidError, SignerUntrustedError,
                     StorageError, UnsafeArchiveError, UnsignedPackageError, UsageError)
from .report import (CheckReport, DicomdirReport, ListReport, PackReport,  # noqa: E402
                     ProgressEvent, UnpackReport, VerifyReport)

__all__ = ["pack", "verify", "unpack", "check", "reidentify", "list_fileset", "build_dicomdir", "PackOptions",
           "ReceiveOptions", "ProgressEvent", "PackReport", "VerifyReport", "UnpackReport",
           "CheckReport", "ListReport", "DicomdirReport", "DicompackError", "UsageError",
           "OutputExistsError", "InvalidInputError", "DuplicateInstanceError", "PackageInvalidError",
           "UnsafeArchiveError", "DecryptionError", "SignatureInvalidError", "SignerUntrustedError",
           "UnsignedPackageError", "DeidentificationError", "CompressionError", "KeyMaterialError",
           "StorageError", "CancelledError"]
