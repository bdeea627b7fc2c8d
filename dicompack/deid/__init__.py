"""De-identification (PS3.15 Annex E Basic Application Level Confidentiality
Profile and options), driven by Table E.1-1 as data."""
from dicompack.deid.engine import Deidentifier, DeidResult
from dicompack.deid.options import DeidOptions
from dicompack.deid.table import table

__all__ = ["DeidOptions", "Deidentifier", "DeidResult", "table"]
