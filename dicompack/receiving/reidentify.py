"""Receive: re-identification.  The original values sealed for the
``--reid-recipient`` certificates are restored in every instance of a
verified package (or, with --allow-plain, a plain folder) and packed anew."""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from dicompack.enums import ScanStatus
from dicompack.errors import InvalidInputError
from dicompack.options import PackOptions, ReceiveOptions
from dicompack.output import private_tempdir
from dicompack.packing.pipeline import pack
from dicompack.receiving.open import as_path, label_of
from dicompack.receiving.policy import SourceKind, policy_for, sniff
from dicompack.receiving.secure_folder import is_secure_folder
from dicompack.receiving.unpack import unpack
from dicompack.report import PackReport
from dicompack.scan import iter_source_files, scan_files


def reidentify(src, dest, options: ReceiveOptions, *, force: bool = False) -> PackReport:
    """Restore the original values sealed by ``--reid-recipient`` in every
    instance of a package or File-set, and pack the result at ``dest``."""
    from dicompack.deid.reid import restore_file  # start-up cost: pydicom loads only for this command
    with ExitStack() as stack:
        path = as_path(src, stack)
        work = stack.enter_context(private_tempdir("reid"))
        unpacked = None
        folder = path if path.is_dir() else path.parent
        if sniff(path) == SourceKind.FILESET and not is_secure_folder(folder):
            # A plain folder proves nothing about who sealed its payloads (anyone
            # holding the public certificate can): the receive policy of
            # verify/unpack applies, so it takes --allow-plain by name (and
            # then needs no --trust: there is no signer to trust).
            if not options.allow_plain:
                policy_for(options).refuse_plain(label_of(src))
            relaxed = "--allow-plain (plain folder: payloads not signed)"
            root = folder
        else:
            relaxed = " ".join(policy_for(options).relaxed) or "none"
            root = unpacked = work / "unpacked"
            unpack(path, root, options)
        staged = work / "restored"
        staged.mkdir()
        scans = [s for s in scan_files(iter_source_files([root]), jobs=options.jobs) if s.status == ScanStatus.DICOM]
        if not scans:
            raise InvalidInputError("no DICOM instances to re-identify", where=str(src))
        for n, scan in enumerate(scans):
            # Name the instance as the user knows it, never by our private unpack folder.
            where = scan.path if unpacked is None else f"{src}:{Path(scan.path).relative_to(root).as_posix()}"
            restore_file(scan.path, staged / f"{n:08d}", key=options.key, cert=options.cert,
                         password=options.password, where=where)
        report = pack([staged], dest, PackOptions(force=force, jobs=options.jobs, progress=options.progress))
        report.stages["receive"] = {"relaxed": relaxed}
        return report
