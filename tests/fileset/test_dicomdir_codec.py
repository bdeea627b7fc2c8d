"""Property tests: the record encoder and decoder are inverse."""
from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from dicompack.dcmio import encode_element
from dicompack.fileset.dicomdir import parse_dicomdir_bytes, write_dicomdir
from dicompack.fileset.records import Record

text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ^", max_size=20)
uid = st.from_regex(r"\A[12]\.[0-9]{1,10}(\.[0-9]{1,10}){0,5}\Z")


@st.composite
def leaf(draw):
    rec = Record("IMAGE", file_id=tuple(draw(st.lists(st.from_regex(r"\A[A-Z0-9_]{1,8}\Z"),
                                                      min_size=1, max_size=8))),
                 sop_class=draw(uid), sop_instance=draw(uid), transfer_syntax="1.2.840.10008.1.2.1")
    rec.elements[0x00200013] = encode_element(0x00200013, b"IS", draw(st.integers(0, 99999)).__str__().encode())
    return rec


@st.composite
def level(draw, rtype, child, max_size=3):
    recs = []
    for _ in range(draw(st.integers(1, max_size))):
        rec = Record(rtype)
        rec.elements[0x00100010] = encode_element(0x00100010, b"PN", draw(text).encode())
        rec.children = draw(st.lists(child, min_size=0, max_size=3))
        recs.append(rec)
    return recs


series = level("SERIES", leaf()).map(lambda r: r[0])
studies = level("STUDY", series).map(lambda r: r[0])
trees = level("PATIENT", studies, max_size=4)


@settings(max_examples=150, deadline=None)
@given(trees, st.from_regex(r"\A[A-Z0-9_]{0,16}\Z"))
def test_round_trip(roots, fileset_id):
    buf = io.BytesIO()
    count = write_dicomdir(buf, roots, fileset_id=fileset_id)
    parsed = parse_dicomdir_bytes(buf.getvalue())
    assert parsed.findings == []
    assert parsed.fileset_id == fileset_id
    assert len(parsed.records) == count
    assert len(parsed.roots) == len(roots)
    assert all(a.same_content(b) for a, b in zip(roots, parsed.roots))
    assert [r.offset for r in parsed.records] == [r.offset for r in _depth_first(roots)]


def _depth_first(records):
    for rec in records:
        yield rec
        yield from _depth_first(rec.children)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 2000))
def test_mutated_dicomdir_never_crashes(junk, at):
    from dicompack.errors import DicompackError
    buf = io.BytesIO()
    rec = Record("PATIENT")
    rec.elements[0x00100020] = encode_element(0x00100020, b"LO", b"ID1")
    write_dicomdir(buf, [rec])
    data = bytearray(buf.getvalue())
    at = at % len(data)
    data[at:at + len(junk)] = junk
    try:
        parse_dicomdir_bytes(bytes(data))
    except DicompackError:
        pass
