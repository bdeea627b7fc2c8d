"""Duplicate instances: PS3.10 allows one file per SOP Instance UID in a
File-set.  Of the input files sharing a UID the best copy is kept; the
others collapse into it (byte-identical) or are conflicts."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from dicompack.errors import DuplicateInstanceError
from dicompack.fileset.files import sha256_file
from dicompack.scan import ScanResult, in_lossy_syntax, is_lossy


@dataclass
class DuplicateOutcome:
    """What resolve_duplicates kept, and what it left out and why."""

    kept: list[ScanResult]
    collapsed: list[tuple[str, str]] = field(default_factory=list)   # (path, same as)
    conflicts: list[tuple[str, str]] = field(default_factory=list)   # (path left out, why; names the kept file)


def resolve_duplicates(scans: list[ScanResult], *, skip_invalid: bool) -> DuplicateOutcome:
    """PS3.10 forbids two files with one SOP Instance UID in a File-set.

    Of each group sharing a UID the best copy is kept (``_quality``: never by
    path, so renaming files cannot change the choice): byte-identical copies
    collapse into it, differing ones are conflicts, each naming the kept file
    and why it won.  Conflicts are an error (listing every one), or left out
    with --skip-invalid.
    """
    by_uid: dict[str, list[ScanResult]] = defaultdict(list)
    for s in scans:
        by_uid[s.sop_instance].append(s)
    winners: set[int] = set()
    out = DuplicateOutcome(kept=[])
    for group in by_uid.values():
        if len(group) == 1:
            winners.add(id(group[0]))
            continue
        digests = {id(s): sha256_file(s.path) for s in group}
        # max() keeps the first of equal keys: identical copies keep the first path.
        best = max(group, key=lambda s: (_quality(s), digests[id(s)]))
        winners.add(id(best))
        for s in group:
            if s is best:
                continue
            if digests[id(s)] == digests[id(best)]:
                out.collapsed.append((s.path, best.path))
            else:
                out.conflicts.append((s.path, f"same SOP Instance UID as {best.path} "
                                              f"(kept: {_why_kept(best, s)})"))
    out.kept = [s for s in scans if id(s) in winners]
    if out.conflicts and not skip_invalid:
        raise DuplicateInstanceError(
            f"{len(out.conflicts)} conflicting duplicate instance(s)",
            where=out.conflicts[0][0], problems=out.conflicts)
    return out


def _quality(s: ScanResult) -> tuple:
    """Higher is better: pixels at all (a copy without them is not a lossless
    copy of the image), lossless pixels over lossy ones, then -- of copies
    equally lossy -- one not stored in a lossy syntax (a decompressed copy
    every reader can open), then completeness: elements, then bytes."""
    return (s.has_pixels, not is_lossy(s), not in_lossy_syntax(s), s.element_count,
            s.size - s.dataset_offset)


def _why_kept(best: ScanResult, other: ScanResult) -> str:
    """The first quality criterion on which ``best`` beat ``other``."""
    a, b = _quality(best), _quality(other)
    if a[0] != b[0]:
        return "has Pixel Data"
    if a[1] != b[1]:
        flag = ", Lossy Image Compression 01" if other.lossy_compression == "01" else ""
        return f"lossless ({best.transfer_syntax}) over lossy ({other.transfer_syntax}{flag})"
    if a[2] != b[2]:
        return (f"not stored in a lossy Transfer Syntax ({best.transfer_syntax} over "
                f"{other.transfer_syntax}; both flagged lossy)")
    if a[3] != b[3]:
        return f"more elements ({a[3]} vs {b[3]})"
    if a[4] != b[4]:
        return f"larger data set ({a[4]} vs {b[4]} bytes)"
    return "equal by every measure; chosen by content digest, not by name"
