"""De-identification options (PS3.15 E.3) and their CID 7050 codes."""
from __future__ import annotations

from dataclasses import dataclass

from dicompack.errors import UsageError

# (CID 7050 code value, meaning), coding scheme DCM.
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
OPTION_CODES = {
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_dates_full": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_dates_modified": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
}


@dataclass(frozen=True)
class DeidOptions:
    key: bytes                                   # secret for HMAC-SHA256 (pseudonyms, UIDs, date shift)
    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_dates: str | None = None              # None | 'full' | 'modified'
    date_shift_days: int | None = None           # 'modified': fixed shift; default derived per patient
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    patient_id: str | None = None                # given pseudonym; default derived from the key
    patient_name: str | None = None
    burned_in: str = "reject"                    # 'reject' | 'keep'

    def __post_init__(self):
        if self.retain_dates not in (None, "full", "modified"):
            raise UsageError("--retain-dates takes full or modified")
        if self.burned_in not in ("reject", "keep"):
            raise UsageError("--burned-in takes keep or reject")
        if len(self.key) < 16:
            raise UsageError("the de-identification key must be at least 16 bytes")

    def enabled_columns(self) -> list[str]:
        """Option columns of Table E.1-1 that apply, in the table's order."""
        cols = [name for name in ("retain_safe_private", "retain_uids", "retain_device_identity",
                                  "retain_institution_identity", "retain_patient_characteristics")
                if getattr(self, name)]
        if self.retain_dates:
            cols.append(f"retain_dates_{self.retain_dates}")
        cols += [n for n in ("clean_descriptors", "clean_structured_content") if getattr(self, n)]
        return cols
