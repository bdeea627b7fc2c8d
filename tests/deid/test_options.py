"""Each de-identification option changes exactly what its column of Table
E.1-1 names (compared attribute by attribute with the Basic Profile alone),
and the Retain Safe Private Option keeps exactly the private attributes of
Table E.3.10-1 or those the instance declares safe."""
from __future__ import annotations

import copy
import json

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicompack.deid import Deidentifier, DeidOptions, table
from dicompack.deid.table import COMBINED, safe_private
from tests.deid.test_deid import MARK, _planted
from tests.support import synthetic
from tests.support.tools import run_cli

KEY = b"option-test-key-0123456789"
# Attributes every run writes itself (they name the options used).
MARKING = {0x00120062, 0x00120063, 0x00120064, 0x00280303}
OPTIONS = {
    "retain_uids": dict(retain_uids=True),
    "retain_device_identity": dict(retain_device_identity=True),
    "retain_institution_identity": dict(retain_institution_identity=True),
    "retain_patient_characteristics": dict(retain_patient_characteristics=True),
    "retain_dates_full": dict(retain_dates="full"),
    "retain_dates_modified": dict(retain_dates="modified", date_shift_days=-3),
    "clean_descriptors": dict(clean_descriptors=True),
    "clean_structured_content": dict(clean_structured_content=True),
}


def _deidentified(ds: Dataset, **options) -> Dataset:
    out = copy.deepcopy(ds)
    Deidentifier(DeidOptions(key=KEY, burned_in="keep", **options)).apply(out, where="test")
    return out


def _column_tags(column: str) -> set[int]:
    return {tag for tag, row in table()["exact"].items() if column in row}


def _beyond_the_table(column: str, ds: Dataset) -> set[int]:
    """Attributes an option reaches that the table has no row for: unlisted
    UIDs (mapped by us, so retained by Retain UIDs) and unlisted free text
    (removed by us, cleaned under the cleaning options)."""
    unlisted = [e for e in ds.iterall() if int(e.tag) not in table()["exact"]]
    if column == "retain_uids":
        return {int(e.tag) for e in unlisted if e.VR == "UI"}
    if column in ("clean_descriptors", "clean_structured_content"):
        return {int(e.tag) for e in unlisted if e.VR in ("LT", "ST", "UT", "UC", "SQ")}
    return set()


def _leaves(ds: Dataset, path: tuple = ()) -> dict[tuple, object]:
    """Every element at its path (tags and item numbers); a sequence is a
    leaf too (its item count), so a removed one shows."""
    out = {}
    for elem in ds:
        here = path + (int(elem.tag),)
        if elem.VR == "SQ":
            out[here] = len(elem.value)
            for n, item in enumerate(elem.value):
                out.update(_leaves(item, here + (n,)))
        else:
            out[here] = elem.value
    return out


@pytest.mark.parametrize("column", sorted(OPTIONS))
def test_option_changes_exactly_its_column(column):
    source = _planted(1)
    basic, with_option = _leaves(_deidentified(source)), _leaves(_deidentified(source, **OPTIONS[column]))
    allowed = _column_tags(column) | _beyond_the_table(column, source) | MARKING
    changed = {path for path in basic.keys() | with_option.keys() if basic.get(path) != with_option.get(path)}
    assert changed, f"{column} changed nothing on the planted instance"
    # A change deep in a sequence is the option's when the element itself, or
    # the sequence holding it, is one the option reaches.
    stray = [p for p in changed if not any(t in allowed for t in p if isinstance(t, int) and t > 0xFFFF)]
    assert not stray, [tuple(hex(t) for t in p) for p in stray]
    kept = {t for t in _column_tags(column) & set(int(x) for x in source.keys())
            if COMBINED.get(table()["exact"][t][column], table()["exact"][t][column]) == "K"}
    original = _leaves(source)
    for tag in kept:
        assert with_option.get((tag,)) == original[(tag,)], hex(tag)


def _private_instance() -> Dataset:
    ds = synthetic.make_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1",
                                 patient_id=f"{MARK}ID", patient_name=f"{MARK}^Jane")
    ge = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    ge.add_new(0x39, "IS", ["1000", "8", "0", "0"])           # slop_int_6..9 (B value): in Table E.3.10-1
    ge.add_new(0x1F, "LO", f"{MARK} operator")                 # same creator, not in the table
    ds.private_block(0x0011, "SITE PRIVATE", create=True).add_new(0x01, "LO", f"{MARK}-MRN")
    declared = ds.private_block(0x0029, "ACME RECON 1.0", create=True)
    declared.add_new(0x01, "DS", "2.5")
    declared.add_new(0x02, "LO", f"kernel for {MARK}ID")        # safe block: text still cleaned
    mixed = ds.private_block(0x0031, "ACME MIXED", create=True)
    mixed.add_new(0x05, "US", 7)
    mixed.add_new(0x06, "LO", f"{MARK} badge")
    items = []
    for group, creator, status, listed in ((0x0029, "ACME RECON 1.0", "SAFE", None),
                                           (0x0031, "ACME MIXED", "MIXED", [0x05])):
        item = Dataset()
        item.PrivateGroupReference, item.PrivateCreatorReference = group, creator
        item.BlockIdentifyingInformationStatus = status
        if listed:
            item.NonidentifyingPrivateElements = listed
        items.append(item)
    ds.PrivateDataElementCharacteristicsSequence = Sequence(items)
    return ds


def _private_values(ds: Dataset) -> dict[int, object]:
    return {int(e.tag): e.value for e in ds if e.tag.is_private}


def test_retain_safe_private_keeps_exactly_the_safe_ones():
    out = _deidentified(_private_instance(), retain_safe_private=True)
    kept = _private_values(out)
    assert kept == {0x00430010: "GEMS_PARM_01", 0x00431039: ["1000", "8", "0", "0"],
                    0x00290010: "ACME RECON 1.0", 0x00291001: "2.5", 0x00291002: "kernel for X",
                    0x00310010: "ACME MIXED", 0x00311005: 7}, kept
    assert "113111" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert _private_values(_deidentified(_private_instance())) == {}      # without the option: none


def test_safe_private_table_is_data():
    keys = safe_private()
    assert len(keys) >= 479
    assert ("GEMS_PARM_01", 0x0043, 0x39) in keys and ("SIEMENS MR HEADER", 0x0019, 0x0C) in keys
    source = json.loads((pytest.importorskip("importlib.resources").files("dicompack.data")
                         / "deid_safe_private.json").read_text("utf-8"))["source"]
    assert "E.3.10-1" in source and "2026d" in source


def test_cli_retain_safe_private_end_to_end(tmp_path):
    src = tmp_path / "src"
    synthetic.write_file(_private_instance(), src / "a.dcm")
    out = tmp_path / "out.zip"
    report = json.loads(run_cli("pack", src, "-o", out, "--deidentify", "--retain-safe-private", "--json",
                                check=True).stdout)
    assert report["stages"]["deid"]["actions"]["K (safe private)"] == 4 + 3      # attributes and their creators
    assert "retain_safe_private" in report["stages"]["deid"]["options"]
    assert MARK.encode() not in out.read_bytes()
    unpacked = tmp_path / "unpacked"
    run_cli("unpack", out, "-o", unpacked, check=True)
    ds = pydicom.dcmread(next(unpacked.rglob("IM*")))
    assert ds[0x00431039].value == ["1000", "8", "0", "0"] and 0x00110010 not in ds
