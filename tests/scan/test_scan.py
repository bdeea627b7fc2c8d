"""The scanner on odd and hostile input: it classifies, it never crashes."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicompack.scan import HEADER_ONLY_NOTE, scan_file
from tests.support import synthetic

_TEMPLATE = synthetic.encode_file(synthetic.make_instance(
    study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5", rows=8, columns=8))
_SR = synthetic.encode_file(synthetic.make_sr(
    study_uid="1.2.3", series_uid="1.2.3.9", sop_uid="1.2.3.9.1",
    referenced=[("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5")], referenced_series_uid="1.2.3.4"))


def test_complete_file_is_dicom(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(_TEMPLATE)
    res = scan_file(str(path))
    assert res.status == "dicom" and res.sop_instance == "1.2.3.4.5" and not res.fixes
    assert res.pixel_offset is not None and _TEMPLATE[res.pixel_offset:res.pixel_offset + 4] == b"\xe0\x7f\x10\x00"


def _element_ends(data: bytes) -> set[int]:
    from dicompack.dcmio import EXPLICIT_LITTLE, Walker
    return {el.end for el in Walker(data, EXPLICIT_LITTLE).elements(132)}


def test_every_truncation_is_invalid(tmp_path):
    """A cut inside an element is invalid.  A cut exactly between two
    elements before Pixel Data leaves a complete header-only instance, which
    nothing can tell from one made that way: it is packed, with a warning
    (spec/fileset.md, "Instances without Pixel Data")."""
    path = tmp_path / "f"
    boundaries = _element_ends(_TEMPLATE)
    for cut in range(140, len(_TEMPLATE) - 1, 7):
        path.write_bytes(_TEMPLATE[:cut])
        res = scan_file(str(path))
        if cut not in boundaries:
            assert res.status == "invalid" and res.reason.startswith("truncated"), (cut, res.reason)
        elif res.status == "dicom":
            assert res.notes == [HEADER_ONLY_NOTE], f"cut at {cut} accepted silently"


def test_truncated_sr_without_pixel_data_is_invalid(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(_SR[:-3])
    assert scan_file(str(path)).status == "invalid"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(_SR) - 1), st.binary(min_size=1, max_size=16))
def test_mutated_headers_never_crash(tmp_path, at, junk):
    data = bytearray(_SR)
    data[at:at + len(junk)] = junk
    path = tmp_path / "m"
    path.write_bytes(bytes(data))
    res = scan_file(str(path))
    assert res.status in ("dicom", "skipped", "invalid")
    if res.status == "dicom":
        assert res.sop_instance and res.sop_class


def test_empty_and_tiny_files(tmp_path):
    for i, data in enumerate([b"", b"\x08\x00", b"\x08\x00\x05\x00CS\x0a\x00ISO_IR", b"\x00" * 132]):
        path = tmp_path / f"t{i}"
        path.write_bytes(data)
        assert scan_file(str(path)).status in ("skipped", "invalid")
