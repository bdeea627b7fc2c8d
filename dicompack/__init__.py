"""dicompack: pack DICOM studies into standard File-sets, ZIPs and secure
packages; verify and unpack them safely.

The public API (the CLI is a thin shell over exactly these calls)::

    import dicompack
    report = dicompack.pack(["incoming/"], "out.zip", dicompack.PackOptions(fileset_id="X"))
    dicompack.verify("out.zip").ok
"""
from dicompack._version import __version__
from dicompack.api import (
                           PackOptions,
                           ReceiveOptions,
                           build_dicomdir,
                           check,
                           list_fileset,
                           pack,
                           reidentify,
                           unpack,
                           verify,
)
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
from dicompack.report import (
                           CheckReport,
                           DicomdirReport,
                           ListReport,
                           PackReport,
                           ProgressEvent,
                           UnpackReport,
                           VerifyReport,
)

__all__ = ["pack", "verify", "unpack", "check", "reidentify", "list_fileset", "build_dicomdir", "PackOptions",
           "ReceiveOptions", "ProgressEvent", "PackReport", "VerifyReport", "UnpackReport",
           "CheckReport", "ListReport", "DicomdirReport", "DicompackError", "UsageError",
           "OutputExistsError", "InvalidInputError", "DuplicateInstanceError", "PackageInvalidError",
           "UnsafeArchiveError", "DecryptionError", "SignatureInvalidError", "SignerUntrustedError",
           "UnsignedPackageError", "DeidentificationError", "CompressionError", "KeyMaterialError",
           "StorageError", "OperationCancelledError"]
