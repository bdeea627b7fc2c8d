"""The de-identification engine: applies Table E.1-1 (as data) to a data
set, recursively through sequences.

Everything derived from the key is deterministic (HMAC-SHA256), so worker
processes agree without sharing state: the same UID maps to the same new UID
in every instance, the same patient gets the same pseudonym and date shift
in every run with the same key.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import re
from collections import Counter
from dataclasses import dataclass, field

from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicompack import standard
from dicompack.deid.options import BASIC_PROFILE, OPTION_CODES, DeidOptions
from dicompack.deid.table import action_for, row_for, safe_private
from dicompack.errors import DeidentificationError

PATIENT_NAME, PATIENT_ID = 0x00100010, 0x00100020
PRIVATE_CHARACTERISTICS = 0x00080300     # Private Data Element Characteristics Sequence
ITEM_GROUP = 0xFFFE                      # item and delimitation tags (PS3.5 7.5), never data elements
BURNED_IN_MODALITIES = {"US", "XA", "RF", "ES"}
_DUMMY = {"PN": "ANONYMOUS", "DA": standard.DUMMY_DATE, "TM": standard.DUMMY_TIME, "DT": standard.DUMMY_DATETIME,
          "AS": "000Y",
          "IS": "0", "DS": "0", "CS": "ANON", "AE": "ANON", "LO": "ANONYMIZED", "SH": "ANONYMIZED",
          "LT": "ANONYMIZED", "ST": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED"}
_NUMERIC = {"US", "UL", "SS", "SL", "FL", "FD", "SV", "UV"}
_TEXT = {"LO", "SH", "LT", "ST", "UT", "UC", "PN", "CS"}
_FREE_TEXT = {"LT", "ST", "UT", "UC"}
# Sequences with an X/Z action that are Type 2 in the IODs that use them
# (Acquisition Context Module, PS3.3 C.7.6.14): emptied, not removed.
_TYPE2_SEQUENCES = {0x00400555}
# A dummy code item (PS3.16 8.2: coding schemes beginning "99" are local).
_DUMMY_CODE = ("ANON", "99DICOMPACK", "anonymized")
_OVERLAY_GROUPS = range(0x6000, 0x6020, 2)


@dataclass
class DeidResult:
    actions: Counter[str] = field(default_factory=Counter)
    originals: Dataset = field(default_factory=Dataset)   # original top-level elements changed or removed
    added: list[int] = field(default_factory=list)        # tags de-identification added


def _well_known(uid: str) -> bool:
    return uid in UID_dictionary or uid.startswith("1.2.840.10008.")


class Deidentifier:
    """Pure and picklable: safe to build in each worker process."""

    def __init__(self, options: DeidOptions):
        self.options = options
        self.columns = options.enabled_columns()

    # ------------------------------------------------------------ derived values
    def _hmac(self, label: str, value: str) -> bytes:
        return hmac.new(self.options.key, f"{label}\x00{value}".encode(), hashlib.sha256).digest()

    def map_uid(self, uid: str) -> str:
        uid = uid.strip("\x00 ")
        if not uid or _well_known(uid) or self.options.retain_uids:
            return uid
        return standard.uid_from_digest(self._hmac("uid", uid))

    def pseudonym(self, patient_id: str) -> tuple[str, str]:
        code = self._hmac("patient", patient_id).hex()[:10].upper()
        return (self.options.patient_id or f"DP{code}", self.options.patient_name or f"ANONYMOUS^{code}")

    def date_shift(self, patient_id: str) -> int:
        if self.options.date_shift_days is not None:
            return self.options.date_shift_days
        return -(int.from_bytes(self._hmac("dates", patient_id)[:4], "big") % 3650 + 1)

    # ------------------------------------------------------------ policy
    def check_burned_in(self, ds: Dataset, where: str) -> None:
        if self.options.burned_in == "keep":
            return
        reasons = []
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            reasons.append("Burned In Annotation is YES")
        if str(ds.get("Modality", "")) in BURNED_IN_MODALITIES:
            reasons.append(f"modality {ds.Modality} commonly carries burned-in text")
        if str(ds.get("SOPClassUID", "")).startswith(standard.SECONDARY_CAPTURE_IMAGE_STORAGE):
            reasons.append("secondary capture commonly carries burned-in text")
        if reasons and "PixelData" in ds or reasons and ds.get("Rows"):
            raise DeidentificationError(
                "; ".join(reasons) + ": pixel data may show identity (refused; --burned-in keep to accept)",
                where=where)

    # ------------------------------------------------------------ apply
    def apply(self, ds: Dataset, *, where: str, keep_originals: bool = False) -> DeidResult:
        self.check_burned_in(ds, where)
        result = DeidResult()
        before = copy.deepcopy(ds) if keep_originals else None
        original_id = str(ds.get("PatientID", ""))
        tokens = self._phi_tokens(ds)
        context = {"shift": self.date_shift(original_id), "tokens": tokens, "result": result,
                   "declared_safe": _declared_safe(ds) if self.options.retain_safe_private else {}}
        overlays = [g for g in _OVERLAY_GROUPS if (g << 16) | 0x3000 in ds]
        self._walk(ds, context, top=True)
        _remove_bare_overlays(ds, overlays, result)
        new_id, new_name = self.pseudonym(original_id)
        ds.PatientID, ds.PatientName = new_id, new_name
        result.actions["pseudonym"] += 1
        self._mark(ds)
        if before is not None:
            _record_originals(before, ds, result)
        if hasattr(ds, "file_meta"):
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for tag in (0x00020016, 0x00020017, 0x00020018):   # AE titles may name a site
                if tag in ds.file_meta:
                    del ds.file_meta[tag]
        return result

    def _phi_tokens(self, ds: Dataset) -> list[re.Pattern]:
        words: set[str] = set()
        name = str(ds.get("PatientName", ""))
        words.update(w for w in re.split(r"[\^=\s,]+", name) if len(w) >= 3)
        for kw in ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate"):
            value = ds.get(kw)
            if value:
                values = value if isinstance(value, (list, tuple)) else [value]
                words.update(str(v) for v in values if len(str(v)) >= 3)
        return [re.compile(re.escape(w), re.IGNORECASE) for w in sorted(words, key=len, reverse=True)]

    def _walk(self, ds: Dataset, ctx: dict, top: bool = False) -> None:
        """Apply the table to every element of ``ds``.  An element is decoded
        only when its action needs its value: the rest stay raw and are
        written back byte for byte (most of a header, and most of the cost)."""
        safe = _safe_private_tags(ds, ctx["declared_safe"]) if self.options.retain_safe_private else None
        for tag in [int(t) for t in ds.keys()]:
            if top and tag in (PATIENT_ID, PATIENT_NAME):
                continue                       # replaced by the pseudonym afterwards
            if tag >> 16 == ITEM_GROUP:
                # An item or delimiter tag among the elements is encoding
                # debris of a broken writer, not an attribute: it holds
                # anything (a whole item) and cannot be written back.
                self._act(ds, tag, "X", ctx)
                continue
            if safe is not None and (tag >> 16) % 2:
                self._private(ds, tag, safe, ctx)
                continue
            row = row_for(tag)
            if row is None:
                self._unlisted(ds, tag, ctx)
                continue
            action = action_for(row, self.columns)
            if _vr(ds, tag) == "SQ":
                action = self._sequence_action(ds, tag, row, action)
            self._act(ds, tag, action, ctx)

    def _sequence_action(self, ds: Dataset, tag: int, row: dict, action: str) -> str:
        """The conformant choice among a sequence's combined actions
        (PS3.15 E.3.1: X unless Z or D is needed for IOD conformance).  An
        empty sequence (Z) is an error for the Type 3 and Type 1 sequences
        these rows name (dciodvfy: "Bad Sequence number of Items = 0"), so:
        Type 2 ones are emptied; with D allowed, the items stay with every
        attribute inside them de-identified by the table (a non-empty,
        de-identified value), except code sequences, whose codes are the
        identity (an institution's code): removed; else removed."""
        choices = _raw_action(row, self.columns).split("/")
        if len(choices) < 2 or "X" not in choices or action not in ("Z", "D"):
            return action
        if tag in _TYPE2_SEQUENCES and "Z" in choices:
            return "Z"
        if not ds[tag].value:
            return action                      # empty already, as the source has it
        if "D" in choices and not _is_code_sequence(tag):
            return "D"
        return "X"

    def _unlisted(self, ds: Dataset, tag: int, ctx: dict) -> None:
        """Attributes Table E.1-1 does not list: UIDs are still mapped
        (references must follow), sequences are searched, person names get
        a dummy, and free text, which may hold anything, is replaced by a
        dummy (or cleaned under the Clean Structured Content / Descriptors
        options): a dummy, not removal, because such text is often Type 1C
        (an SR TEXT item's Text Value), and removal would break the IOD."""
        vr = _vr(ds, tag)
        if vr == "UI":
            self._act(ds, tag, "U", ctx)
        elif vr == "SQ":
            for item in ds[tag].value:
                self._walk(item, ctx)
        elif vr == "PN":
            self._act(ds, tag, "D", ctx)
        elif vr in _FREE_TEXT:
            cleaning = self.options.clean_structured_content or self.options.clean_descriptors
            self._act(ds, tag, "C" if cleaning else "D", ctx)

    def _private(self, ds: Dataset, tag: int, safe: set[int], ctx: dict) -> None:
        """Retain Safe Private Option (PS3.15 E.3.10): a safe element is kept
        (text cleaned of the patient's names and IDs, sequences searched);
        a private creator stays while its block keeps an element; anything
        else private is removed."""
        if tag not in safe:
            self._act(ds, tag, "X", ctx)
            return
        ctx["result"].actions["K (safe private)"] += 1
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, ctx)
        elif elem.VR in _TEXT and elem.value:
            elem.value = self._scrub(elem.value, ctx["tokens"])

    def _act(self, ds: Dataset, tag: int, action: str, ctx: dict) -> None:
        ctx["result"].actions[action] += 1
        if action == "X":
            del ds[tag]
            return
        if action == "K" and _vr(ds, tag) != "SQ":
            return                             # kept as it is, still raw
        elem = ds[tag]
        if action == "Z":
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == "D" and elem.VR == "SQ":
            self._dummy_sequence(elem, tag, ctx)
        elif action == "D":
            self._dummy(elem)
        elif action == "U":
            self._map_uids(elem, ctx)
        elif action == "C":
            self._clean(elem, ctx)
        else:                                  # K on a sequence: kept, its items processed
            for item in elem.value:
                self._walk(item, ctx)

    def _dummy_sequence(self, elem, tag: int, ctx: dict) -> None:
        """D on a sequence: a non-zero-length value (an empty sequence breaks
        the Type 1/1C sequences D is given for, e.g. Content Sequence).  A
        code sequence gets one dummy code item (its codes may name a person);
        any other keeps its items, each de-identified by the table."""
        if _is_code_sequence(tag):
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = _DUMMY_CODE
            elem.value = Sequence([item])
            return
        for item in elem.value:
            self._walk(item, ctx)

    def _dummy(self, elem) -> None:
        if elem.VR == "SQ":
            elem.value = Sequence()
        elif elem.VR == "UI":
            elem.value = self.map_uid(str(elem.value)) if elem.value else elem.value
        elif elem.VR in _NUMERIC:
            elem.value = 0
        elif elem.VR in _DUMMY:
            elem.value = _DUMMY[elem.VR]
        else:
            elem.value = None

    def _map_uids(self, elem, ctx: dict) -> None:
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, ctx)
        elif elem.VR == "UI" and elem.value:
            if elem.VM > 1:
                elem.value = [self.map_uid(str(v)) for v in elem.value]
            else:
                elem.value = self.map_uid(str(elem.value))

    def _clean(self, elem, ctx: dict) -> None:
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, ctx)
        elif elem.VR in ("DA", "DT") and self.options.retain_dates == "modified":
            elem.value = _shift(elem.value, elem.VR, ctx["shift"])
        elif elem.VR in _TEXT and elem.value:
            elem.value = self._scrub(elem.value, ctx["tokens"])
        elif elem.VR not in ("TM",):
            self._dummy(elem)

    @staticmethod
    def _scrub(value, tokens: list[re.Pattern]):
        def one(text: str) -> str:
            for pattern in tokens:
                text = pattern.sub("X", text)
            return text
        if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
            return [one(str(v)) for v in value]
        return one(str(value))

    def _mark(self, ds: Dataset) -> None:
        """PS3.15 E.1.1: record what was done, with CID 7050 codes."""
        ds.PatientIdentityRemoved = "YES"
        names = [BASIC_PROFILE[1]] + [OPTION_CODES[c][1] for c in self.columns if c in OPTION_CODES]
        ds.DeidentificationMethod = ("dicompack: " + "; ".join(names))[:64]
        codes = []
        for value, meaning in [BASIC_PROFILE] + [OPTION_CODES[c] for c in self.columns if c in OPTION_CODES]:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
        ds.LongitudinalTemporalInformationModified = {
            None: "REMOVED", "full": "UNMODIFIED", "modified": "MODIFIED"}[self.options.retain_dates]


def _raw_action(row: dict, columns: list[str]) -> str:
    """The row's action as the table writes it ('X/Z/D'), before
    ``action_for`` resolves a combined one."""
    action = row["basic"]
    for column in columns:
        action = row.get(column, action)
    return action


def _is_code_sequence(tag: int) -> bool:
    return keyword_for_tag(tag).endswith("CodeSequence")


def _remove_bare_overlays(ds: Dataset, groups: list[int], result: DeidResult) -> None:
    """An overlay whose Overlay Data the table removed (X) loses the rest of
    its group too: Rows, Columns, Type ... without the data are a broken
    Overlay Plane Module (Overlay Data is Type 1, PS3.3 C.9.2)."""
    for group in groups:
        if (group << 16) | 0x3000 in ds:
            continue                           # kept (Clean Graphics Option)
        for tag in [t for t in ds.keys() if t.group == group]:
            del ds[tag]
            result.actions["X (overlay plane)"] += 1


def _vr(ds: Dataset, tag: int) -> str:
    """The VR of an element without decoding its value.  Implicit VR files
    carry none, and UN hides the real one (a person name sent as UN is still
    a name): the dictionary's VR then, as pydicom uses when it decodes."""
    vr = ds.get_item(tag).VR
    if vr and vr != "UN":
        return vr
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _declared_safe(ds: Dataset) -> dict[tuple[int, str], frozenset[int] | None]:
    """Blocks the instance itself declares non-identifying in its Private
    Data Element Characteristics Sequence (PS3.3 C.12.1.1.7): (group,
    creator) -> None for a SAFE block, or the element bytes a MIXED block
    lists as Nonidentifying Private Elements."""
    declared: dict[tuple[int, str], frozenset[int] | None] = {}
    sequence = ds[PRIVATE_CHARACTERISTICS].value if PRIVATE_CHARACTERISTICS in ds else None
    for item in sequence or []:
        group, creator = item.get("PrivateGroupReference"), item.get("PrivateCreatorReference")
        status = str(item.get("BlockIdentifyingInformationStatus", "")).strip().upper()
        if group is None or not creator:
            continue
        block = (int(group), str(creator).strip())
        if status == "SAFE":
            declared[block] = None
        elif status == "MIXED":
            values = item.get("NonidentifyingPrivateElements") or []
            values = [values] if isinstance(values, int) else values
            declared[block] = frozenset(int(v) & 0xFF for v in values)
    return declared


def _safe_private_tags(ds: Dataset, declared: dict[tuple[int, str], frozenset[int] | None]) -> set[int]:
    """The private tags of ``ds`` (this level) that are safe: listed in
    Table E.3.10-1 for their creator, or declared safe by the instance; and
    the creator elements of the blocks that keep one."""
    table = safe_private()
    creators: dict[int, str] = {}
    safe: set[int] = set()
    for tag in [int(t) for t in ds.keys() if t.group % 2]:     # decodes private elements only
        group, element = tag >> 16, tag & 0xFFFF
        if 0x10 <= element <= 0xFF:
            value = ds[tag].value
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
            creators[element] = value.strip(" \x00")
            continue
        creator = creators.get(element >> 8) if element >= 0x1000 else None
        if creator is None:
            continue
        listed = declared.get((group, creator), frozenset())
        if (creator, group, element & 0xFF) in table or listed is None or element & 0xFF in listed:
            safe.update((tag, (group << 16) | (element >> 8)))
    return safe


def _record_originals(before: Dataset, after: Dataset, result: DeidResult) -> None:
    """Top-level elements that changed (whole sequences when anything inside
    changed) or were removed, and the tags that were added."""
    for elem in before:
        if elem.tag not in after or after[elem.tag] != elem:
            result.originals.add(elem)
    result.added = [int(elem.tag) for elem in after if elem.tag not in before]


def _shift(value, vr: str, days: int):
    def one(text: str) -> str:
        text = str(text).strip()
        if len(text) < 8 or not text[:8].isdigit():
            return text
        try:
            day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) + dt.timedelta(days=days)
        except ValueError:
            return standard.DUMMY_DATE + text[8:]
        return day.strftime("%Y%m%d") + text[8:]
    if isinstance(value, (list, tuple)):
        return [one(v) for v in value]
    return one(value)
