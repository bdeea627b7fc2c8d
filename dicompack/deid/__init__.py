"""De-identification (PS3.15 Annex E Basic Application Level Confidentiality
Profile and options), driven by Table E.1-1 as data."""
from .engine import DeidResult, Deidentifier
from .options import DeidOptions
from .table import table

__all__ = ["DeidOptions", "Deidentifier", "DeidResult", "table"]
