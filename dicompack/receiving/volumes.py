"""Receive: a set of volumes (NAME-1ofN ...).  Every volume is required;
all share one package UID, one protection and one signer set; instance
counts must add up, and an instance two volumes carry with different
bytes refuses the merge."""
from __future__ import annotations

from pathlib import Path

from dicompack.enums import Severity
from dicompack.errors import PackageInvalidError, SignerUntrustedError, UnsignedPackageError
from dicompack.fileset.dicomdir import read_dicomdir
from dicompack.fileset.files import sha256_file
from dicompack.receiving.secure_folder import signer_names, signer_of
from dicompack.receiving.sources import Source


def raise_errors(source: Source) -> None:
    errors = [f for f in source.report.findings if f["severity"] == Severity.ERROR]
    if errors:
        where = errors[0]["where"]     # "File-set": the whole source, named as the user gave it
        raise PackageInvalidError(errors[0]["what"], where=source.label if where == "File-set" else where,
                                  findings=errors)


def check_volume_set(sources: list[Source], *, rebuild: bool) -> None:
    """The sources are one whole packing: a package on its own, or every
    volume of one split package (same package UID -- a random UID per
    packing, covered by the signature in secure volumes -- each index once,
    none missing).  A volume alone is refused too: a man in the middle who
    drops volumes must not turn a study into a silently partial one.  Only
    --rebuild merges several sources without manifest (foreign ZIPs)."""
    manifested = [s for s in sources if s.report.package_uid]
    if not manifested:
        if len(sources) > 1 and not rebuild:
            raise PackageInvalidError("several sources given, but this one is not a volume of a split "
                                      "package (no volume manifest)", where=sources[0].label)
        return
    for s in sources:
        if not s.report.package_uid:
            raise PackageInvalidError("not a volume of a split package (no volume manifest), but "
                                      f"{manifested[0].label} is", where=s.label)
    first = sources[0].report
    count = first.volume.get("count", 1)
    seen: dict[int, str] = {}
    for s in sources:
        r = s.report
        if r.package_uid != first.package_uid:
            raise PackageInvalidError(f"volume of another package ({r.package_uid}, expected "
                                      f"{first.package_uid}): volumes of different packings never merge",
                                      where=s.label)
        index = r.volume.get("index", 1)
        if r.volume.get("count", 1) != count or index in seen or not 1 <= index <= count:
            raise PackageInvalidError(f"volume {index} of {r.volume.get('count', 1)} does not fit the set "
                                      f"(already have {sorted(seen)} of {count})", where=s.label)
        seen[index] = s.label
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise PackageInvalidError(f"missing volume(s) {', '.join(map(str, missing))} of {count}: give "
                                  "every volume of the package", where=sources[0].label)


def _dicomdir_instances(root: Path) -> set[str]:
    """SOP Instance UIDs the (verified) DICOMDIR references."""
    return {rec.sop_instance for rec in read_dicomdir(root / "DICOMDIR").records
            if rec.in_use and rec.file_id}


def check_instance_counts(sources: list[Source]) -> int | None:
    """A restore never silently drops instances: each volume holds the
    instances its manifest counts, and together they hold every instance
    of the packed File-set.  Returns that total (None: no counts in the
    manifests, e.g. a foreign ZIP)."""
    totals = {s.summary.get("instances") for s in sources}
    if totals == {None}:
        return None
    if len(totals) != 1 or not all(type(t) is int for t in totals):
        raise PackageInvalidError("volumes disagree on the number of instances of the package",
                                  where=sources[0].label)
    total = totals.pop()
    union: set[str] = set()
    for s in sources:
        here = _dicomdir_instances(s.root) if (s.root / "DICOMDIR").is_file() else set()
        listed = s.summary.get("volume_instances")
        if listed is not None and (type(listed) is not int or listed != len(here)):
            raise PackageInvalidError(f"the manifest counts {listed} instances in this volume, its "
                                      f"DICOMDIR references {len(here)}", where=s.label)
        union |= here
    if len(union) != total:
        raise PackageInvalidError(f"the package holds {total} instances, these sources {len(union)}",
                                  where=sources[0].label)
    return total


def instance_conflicts(sources: list[Source]) -> list[str]:
    """Instances that several volumes carry, from their verified DICOMDIRs:
    byte-identical copies are returned (to be reported, then collapsed);
    differing ones refuse the merge, naming both."""
    seen: dict[str, tuple[str, Path]] = {}
    collapsed, conflicts = [], []
    for s in sources:
        for rec in read_dicomdir(s.root / "DICOMDIR").records:
            if not (rec.in_use and rec.file_id):
                continue
            here = (f"{s.label}: {'/'.join(rec.file_id)}", s.root.joinpath(*rec.file_id))
            other = seen.setdefault(rec.sop_instance, here)
            if other is here:
                continue
            if sha256_file(here[1]) == sha256_file(other[1]):
                collapsed.append(f"{here[0]} is the same instance as {other[0]}")
            else:
                conflicts.append({"severity": Severity.ERROR, "where": here[0],
                                  "what": f"SOP Instance UID {rec.sop_instance} also in {other[0]} "
                                          "with different content"})
    if conflicts:
        raise PackageInvalidError(conflicts[0]["what"], where=conflicts[0]["where"], findings=conflicts)
    return collapsed


def same_protection_everywhere(sources: list[Source]) -> None:
    """Volumes of one package are protected alike: all plain, or all secure
    from one signer set.  A plain volume never joins a secure set, even
    with --allow-plain (which accepts a plain package, not a plain part of
    a secure one: its package UID is no secret).  A volume swapped for one
    another trusted sender signed does not belong to the set either."""
    secured = [s for s in sources if s.report.secure]
    if not secured:
        return
    for s in sources:
        if not s.report.secure:
            raise UnsignedPackageError(f"not encrypted and signed, but {secured[0].label} is: a plain "
                                       "volume never joins a secure set", where=s.label)
    first_signed = signer_of(secured[0].report.secure)[0]
    for s in secured[1:]:
        if signer_of(s.report.secure)[0] != first_signed:
            raise UnsignedPackageError(f"{'not ' if first_signed else ''}signed, but "
                                       f"{secured[0].label} is{'' if first_signed else ' not'}",
                                       where=s.label)
        if signer_of(s.report.secure) != signer_of(secured[0].report.secure):
            raise SignerUntrustedError(f"signed by {signer_names(s.report.secure)}, "
                                       f"{secured[0].label} by "
                                       f"{signer_names(secured[0].report.secure)}",
                                       where=s.label)
