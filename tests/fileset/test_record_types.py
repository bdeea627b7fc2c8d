"""Tests for the generated directory record tables (data/record_types.json)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, keyword_for_tag

ROOT = Path(__file__).resolve().parents[2]
JSON_PATH = ROOT / "dicompack" / "data" / "record_types.json"
MD_PATH = ROOT / "spec" / "record_types.md"
GEN_PATH = ROOT / "tools" / "gen_record_types.py"

NOT_STORAGE = {
    "1.2.840.10008.1.3.10",  # Media Storage Directory Storage
    "1.2.840.10008.1.20.1",  # Storage Commitment Push Model
    "1.2.840.10008.1.20.2",  # Storage Commitment Pull Model
}


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_record_types", GEN_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> dict:
    return json.loads(JSON_PATH.read_text("utf-8"))


def _keys(table, record_type):
    return {r["keyword"]: r for r in table["record_keys"][record_type]}


def _storage_uids():
    return {
        uid for uid, entry in UID_dictionary.items()
        if entry[1] == "SOP Class" and "Storage" in entry[0]
        and uid not in NOT_STORAGE
    }


def test_top_level_shape(table):
    assert set(table) == {"source", "sop_classes", "record_keys", "single_level"}
    assert "PS3.3" in table["source"] and "2025" in table["source"]


def test_every_storage_sop_class_is_mapped(table):
    missing = _storage_uids() - set(table["sop_classes"])
    assert not missing
    assert len(table["sop_classes"]) >= 200
    for uid, entry in table["sop_classes"].items():
        assert entry["name"] == UID_dictionary[uid][0]
        assert entry["record_type"]


def test_every_mapped_record_type_has_keys(table):
    used = {e["record_type"] for e in table["sop_classes"].values()}
    assert used <= set(table["record_keys"])
    for name in ("PATIENT", "STUDY", "SERIES", "PRIVATE"):
        assert name in table["record_keys"]


def test_brief_record_types_present(table):
    expected = {
        "PATIENT", "STUDY", "SERIES", "IMAGE", "SR DOCUMENT", "KEY OBJECT DOC",
        "PRESENTATION", "WAVEFORM", "ENCAP DOC", "RT DOSE", "RT STRUCTURE SET",
        "RT PLAN", "RT TREAT RECORD", "SPECTROSCOPY", "RAW DATA",
        "REGISTRATION", "FIDUCIAL", "VALUE MAP", "STEREOMETRIC", "SURFACE",
        "MEASUREMENT", "PALETTE", "IMPLANT", "HANGING PROTOCOL", "PLAN",
        "SURFACE SCAN", "TRACT", "ASSESSMENT", "RADIOTHERAPY", "ANNOTATION",
        "INVENTORY", "PRIVATE",
    }
    assert expected <= set(table["record_keys"])


def test_keys_sorted_and_vrs_match_dictionary(table):
    for record_type, rows in table["record_keys"].items():
        tags = [int(r["tag"], 16) for r in rows]
        assert tags == sorted(tags), record_type
        assert len(set(tags)) == len(tags), record_type
        for r, tag in zip(rows, tags):
            assert len(r["tag"]) == 8 and r["tag"] == r["tag"].upper()
            assert r["keyword"] == keyword_for_tag(tag), (record_type, r)
            assert r["vr"] == dictionary_VR(tag), (record_type, r)
            assert r["type"] in {"1", "1C", "2", "2C", "3"}, (record_type, r)
            # encoder-owned keys are excluded
            assert tag >> 16 != 0x0004, (record_type, r)
            assert tag != 0x00880200, (record_type, r)  # Icon Image Sequence
            if r["keyword"].endswith("Sequence"):
                assert r["vr"] == "SQ"


def test_specific_character_set_is_1c_everywhere(table):
    for record_type in table["record_keys"]:
        scs = _keys(table, record_type).get("SpecificCharacterSet")
        assert scs is not None and scs["type"] == "1C", record_type
        assert table["record_keys"][record_type][0]["tag"] == "00080005"


@pytest.mark.parametrize("uid, record_type", [
    ("1.2.840.10008.5.1.4.1.1.2", "IMAGE"),            # CT Image
    ("1.2.840.10008.5.1.4.1.1.66.4", "IMAGE"),         # Segmentation
    ("1.2.840.10008.5.1.4.1.1.77.1.6", "IMAGE"),       # WSI
    ("1.2.840.10008.5.1.4.1.1.88.11", "SR DOCUMENT"),  # Basic Text SR
    ("1.2.840.10008.5.1.4.1.1.88.77", "SR DOCUMENT"),  # Waveform Annotation SR
    ("1.2.840.10008.5.1.4.1.1.88.59", "KEY OBJECT DOC"),
    ("1.2.840.10008.5.1.4.1.1.11.1", "PRESENTATION"),  # GSPS
    ("1.2.840.10008.5.1.4.1.1.131", "PRESENTATION"),   # Basic Structured Display
    ("1.2.840.10008.5.1.4.1.1.104.1", "ENCAP DOC"),    # Encapsulated PDF
    ("1.2.840.10008.5.1.4.1.1.104.3", "ENCAP DOC"),    # Encapsulated STL
    ("1.2.840.10008.5.1.4.1.1.9.1.1", "WAVEFORM"),     # 12-lead ECG
    ("1.2.840.10008.5.1.4.1.1.9.4.1", "WAVEFORM"),     # Basic Voice Audio
    ("1.2.840.10008.5.1.4.1.1.481.2", "RT DOSE"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT STRUCTURE SET"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT PLAN"),
    ("1.2.840.10008.5.1.4.1.1.481.8", "RT PLAN"),      # RT Ion Plan
    ("1.2.840.10008.5.1.4.1.1.481.4", "RT TREAT RECORD"),
    ("1.2.840.10008.5.1.4.1.1.481.10", "RADIOTHERAPY"),
    ("1.2.840.10008.5.1.4.1.1.481.1", "IMAGE"),        # RT Image
    ("1.2.840.10008.5.1.4.1.1.4.2", "SPECTROSCOPY"),
    ("1.2.840.10008.5.1.4.1.1.66", "RAW DATA"),
    ("1.2.840.10008.5.1.4.1.1.66.1", "REGISTRATION"),
    ("1.2.840.10008.5.1.4.1.1.66.3", "REGISTRATION"),
    ("1.2.840.10008.5.1.4.1.1.66.2", "FIDUCIAL"),
    ("1.2.840.10008.5.1.4.1.1.67", "VALUE MAP"),
    ("1.2.840.10008.5.1.4.1.1.77.1.5.3", "STEREOMETRIC"),
    ("1.2.840.10008.5.1.4.1.1.66.5", "SURFACE"),
    ("1.2.840.10008.5.1.4.1.1.68.1", "SURFACE SCAN"),
    ("1.2.840.10008.5.1.4.1.1.66.6", "TRACT"),
    ("1.2.840.10008.5.1.4.1.1.78.1", "MEASUREMENT"),
    ("1.2.840.10008.5.1.4.1.1.90.1", "ASSESSMENT"),
    ("1.2.840.10008.5.1.4.1.1.91.1", "ANNOTATION"),
    ("1.2.840.10008.5.1.4.1.1.201.1", "INVENTORY"),
    ("1.2.840.10008.5.1.4.34.7", "PLAN"),
    ("1.2.840.10008.5.1.4.38.1", "HANGING PROTOCOL"),
    ("1.2.840.10008.5.1.4.39.1", "PALETTE"),
    ("1.2.840.10008.5.1.4.43.1", "IMPLANT"),
])
def test_spot_check_mapping(table, uid, record_type):
    assert table["sop_classes"][uid]["record_type"] == record_type


def test_single_level(table):
    single = set(table["single_level"])
    assert {"HANGING PROTOCOL", "PALETTE", "IMPLANT"} <= single
    assert not single & {"PATIENT", "STUDY", "SERIES", "IMAGE"}
    assert single <= set(table["record_keys"])


def test_study_keys(table):
    k = _keys(table, "STUDY")
    for kw in ("StudyDate", "StudyTime", "StudyID"):
        assert k[kw]["type"] == "1"
    for kw in ("StudyDescription", "AccessionNumber"):
        assert k[kw]["type"] == "2"
    assert k["StudyInstanceUID"]["type"] == "1C"


def test_patient_series_image_keys(table):
    p = _keys(table, "PATIENT")
    assert p["PatientID"]["type"] == "1" and p["PatientName"]["type"] == "2"
    assert p["PatientName"]["vr"] == "PN"
    s = _keys(table, "SERIES")
    assert {s[k]["type"] for k in ("Modality", "SeriesInstanceUID", "SeriesNumber")} == {"1"}
    assert _keys(table, "IMAGE")["InstanceNumber"]["type"] == "1"


def test_other_key_spot_checks(table):
    sr = _keys(table, "SR DOCUMENT")
    assert sr["ConceptNameCodeSequence"]["vr"] == "SQ"
    assert sr["CompletionFlag"]["type"] == "1"
    assert sr["VerificationDateTime"]["type"] == "1C"
    assert _keys(table, "RT DOSE")["DoseSummationType"]["type"] == "1"
    assert _keys(table, "ENCAP DOC")["MIMETypeOfEncapsulatedDocument"]["type"] == "1"
    assert _keys(table, "RAW DATA")["InstanceNumber"]["type"] == "2"
    pr = _keys(table, "PRESENTATION")
    assert pr["ContentLabel"]["type"] == "1"
    assert pr["ReferencedSeriesSequence"]["type"] == "1C"


def test_committed_json_matches_generator(gen, table):
    data = gen.generate()
    assert data == table
    assert gen.render_json(data) == JSON_PATH.read_text("utf-8")
    assert gen.render_md(data) == MD_PATH.read_text("utf-8")


def test_generation_is_deterministic(gen):
    assert gen.render_json(gen.generate()) == gen.render_json(gen.generate())


def test_record_types_module_reads_table(table):
    from dicompack.fileset import records
    assert records.record_type_for("1.2.840.10008.5.1.4.1.1.2") == "IMAGE"
    assert records.record_type_for("1.2.3.4.999") == "PRIVATE"
    assert records.is_single_level("HANGING PROTOCOL")
    assert [k.keyword for k in records.record_keys("PATIENT")] == [
        r["keyword"] for r in table["record_keys"]["PATIENT"]]
