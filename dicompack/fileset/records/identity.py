"""Whether an instance's UIDs can go into directory records as they are."""
from __future__ import annotations

import re

from dicompack.fileset.records.schema import (
    SERIES_UID,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_UID,
    is_single_level,
    record_type_for,
)

_INSTANCE_UIDS = ((SOP_CLASS_UID, "SOP Class UID (0008,0016)"),
                  (SOP_INSTANCE_UID, "SOP Instance UID (0008,0018)"))
_HIERARCHY_UIDS = ((STUDY_UID, "Study Instance UID (0020,000D)"),
                   (SERIES_UID, "Series Instance UID (0020,000E)"))
_UID_CHARS = re.compile(r"[0-9.]+")


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` (padding stripped) is not a valid UI value, or None.

    PS3.5 9.1: digits and dots, at most 64 characters, no empty component,
    no leading zero; an ISO/IEC 8824 object identifier, so it starts with
    arc 1 or 2 (dciodvfy rejects other roots, and 2.999 as an example root).
    """
    if len(uid) > 64:
        return f"is {len(uid)} characters long (at most 64)"
    if not _UID_CHARS.fullmatch(uid):
        return "has characters other than digits and dots"
    components = uid.split(".")
    if "" in components:
        return "has an empty component"
    if any(len(c) > 1 and c[0] == "0" for c in components):
        return "has a component with a leading zero"
    if components[0] not in ("1", "2"):
        return "does not start with the root 1 or 2"
    if components[:2] == ["2", "999"]:
        return "uses the example root 2.999"
    return None


def identity_problem(values: dict[int, bytes]) -> str | None:
    """Why an instance cannot get valid directory records, or None.

    Its SOP Class/Instance UIDs, and, below a STUDY/SERIES, its Study and
    Series Instance UIDs go into records as they are: each must be a valid
    UID.  Instances without them are never merged into an invented study.
    """
    sop_class = values.get(SOP_CLASS_UID, b"").strip(b" \x00").decode("latin-1")
    needed: tuple[tuple[int, str], ...] = _INSTANCE_UIDS
    if not is_single_level(record_type_for(sop_class)):
        needed += _HIERARCHY_UIDS
    for tag, name in needed:
        raw = values.get(tag)
        uid = (raw or b"").strip(b" \x00").decode("latin-1")
        if not uid:
            return f"{name} is {'empty' if raw is not None else 'missing'}"
        if (why := uid_problem(uid)) is not None:
            shown = uid if len(uid) <= 24 else uid[:20] + "…"
            return f"{name} is not a valid UID: {shown!r} {why}"
    return None
