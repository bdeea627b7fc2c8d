"""The BER pull parser (container/cms/ber.py): definite and indefinite
lengths, nesting, truncation, over-long lengths and the depth limit, each
refused with a BerError naming what and where; and at the public boundary
the same inputs are PackageInvalidErrors, never the internal class."""
from __future__ import annotations

import io

import pytest
from asn1crypto import core

from dicompack.container.cms import open_envelope_bytes, open_secure_package
from dicompack.container.cms.ber import (
    BerError,
    Reader,
    check_nesting,
    der_length,
    malformed_cms,
    primitive_header,
    tlv,
)
from dicompack.container.cms.limits import MAX_DEPTH, MAX_SMALL_SEGMENTS, SMALL_SEGMENT
from dicompack.errors import PackageInvalidError


def _reader(data: bytes) -> Reader:
    return Reader(io.BytesIO(data), block=3)     # tiny blocks: every refill path is taken


def _nested(depth: int, *, indefinite: bool = False) -> bytes:
    """``depth`` SEQUENCEs around an INTEGER."""
    der = b"\x02\x01\x01"
    for _ in range(depth):
        der = b"\x30\x80" + der + b"\x00\x00" if indefinite else tlv(0x30, der)
    return der


@pytest.mark.parametrize("n", [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 1 << 40])
def test_der_length_is_what_asn1crypto_writes(n):
    assert der_length(n)[0] == n if n < 0x80 else der_length(n)[0] == 0x80 | len(der_length(n)[1:])
    assert primitive_header(0x04, n)[1:] == der_length(n)
    if n < 1 << 20:
        assert core.OctetString(b"x" * n).dump() == primitive_header(0x04, n) + b"x" * n


def test_definite_lengths_short_and_long_form():
    data = tlv(0x30, core.Integer(5).dump() + core.OctetString(b"y" * 300).dump())
    r = _reader(data)
    seq = r.header()
    assert (seq.cls, seq.number, seq.constructed, seq.length) == (0, 16, True, len(data) - 4)
    assert r.integer() == 5
    assert r.more(seq)
    body = r.header()
    assert body.raw == b"\x04\x82\x01\x2c" and r.content(body) == b"y" * 300
    assert not r.more(seq)
    r.close(seq)
    assert r.at_eof()


def test_indefinite_lengths_and_nesting():
    data = b"\x30\x80" + b"\x30\x80" + b"\x02\x01\x07" + b"\x00\x00" + b"\x02\x01\x08" + b"\x00\x00"
    r = _reader(data)
    outer = r.expect(0, 16, "SEQUENCE", constructed=True)
    assert outer.length is None and outer.end is None
    inner = r.expect(0, 16, "SEQUENCE", constructed=True)
    assert r.integer() == 7 and not r.more(inner)
    r.close(inner)
    assert r.more(outer) and r.integer() == 8
    r.close(outer)
    assert r.at_eof()


def test_element_keeps_nested_indefinite_encoding():
    data = b"\x31\x80" + _nested(3, indefinite=True) + tlv(0x30, b"\x05\x00") + b"\x00\x00"
    assert _reader(data + b"\x05\x00").element() == data


def test_high_tag_numbers():
    r = _reader(b"\xbf\x81\x00\x00")        # [128] constructed, empty
    h = r.header()
    assert (h.cls, h.number, h.constructed, h.length) == (2, 128, True, 0)


def test_constructed_octet_string_is_yielded_in_pieces():
    segments = [b"a" * 300, b"b" * 700, b"c" * 256]
    body = b"".join(core.OctetString(s).dump() for s in segments)
    for data in (b"\x24\x80" + body + b"\x00\x00", tlv(0x24, body)):
        r = _reader(data)
        assert b"".join(r.octets(r.header(), chunk=100)) == b"".join(segments)
        assert r.at_eof()


@pytest.mark.parametrize("data, message", [
    (b"\x30\x05\x02\x01", "unexpected end of data"),                 # content cut short
    (b"\x30", "unexpected end of data"),                             # no length octet
    (b"\x30\x82\x01", "unexpected end of data"),                     # length octets cut short
    (b"\x1f\x81\x81\x81\x81\x81\x01\x00", "tag number too long"),
    (b"\x04\x80", "indefinite length on a primitive element"),
    (b"\x30\xff", "reserved length octet"),
    (b"\x30\x89" + b"\x01" * 9, "length too long"),                 # nine length octets
])
def test_malformed_headers(data, message):
    r = _reader(data)
    with pytest.raises(BerError, match=message) as info:
        r.element()
    # Where: the end of the data when it is cut short, else the element's start.
    assert info.value.offset == (len(data) if message == "unexpected end of data" else 0)


def test_truncated_indefinite_element():
    with pytest.raises(BerError, match="unexpected end of data"):
        _reader(b"\x30\x80\x02\x01\x07").element()


def test_child_overrunning_its_parent():
    r = _reader(b"\x30\x02\x02\x01\x05")
    seq = r.header()
    r.integer()
    with pytest.raises(BerError, match="element overruns its parent"):
        r.more(seq)
    with pytest.raises(BerError, match="element overruns its parent"):
        check_nesting(b"\x30\x02\x02\x01\x05")


def test_length_mismatch_and_missing_end_of_contents():
    r = _reader(b"\x30\x04\x02\x01\x05\x05\x00")
    seq = r.header()
    r.integer()
    with pytest.raises(BerError, match="element length mismatch"):
        r.close(seq)
    r = _reader(b"\x30\x80\x02\x01\x05\x05\x00")
    seq = r.header()
    r.integer()
    with pytest.raises(BerError, match="missing end-of-contents"):
        r.close(seq)


def test_over_long_lengths_are_refused_before_reading():
    huge = b"\x04\x88" + (1 << 62).to_bytes(8, "big")
    r = _reader(huge)
    with pytest.raises(BerError, match="element too large"):
        r.content(r.header())
    with pytest.raises(BerError, match="element too large"):
        _reader(tlv(0x30, b"\x04\x01x" * 40)).element(limit=64)
    # Indefinite: the limit holds on the bytes collected so far.
    with pytest.raises(BerError, match="element too large"):
        _reader(b"\x30\x80" + b"\x04\x01x" * 40 + b"\x00\x00").element(limit=64)


@pytest.mark.parametrize("indefinite", [False, True])
def test_depth_limit(indefinite):
    assert _reader(_nested(MAX_DEPTH, indefinite=indefinite)).element()
    with pytest.raises(BerError, match="nesting too deep"):
        _reader(_nested(MAX_DEPTH + 2, indefinite=indefinite)).element()
    with pytest.raises(BerError, match="nesting too deep"):
        check_nesting(_nested(MAX_DEPTH + 2, indefinite=indefinite))


def test_depth_limit_in_constructed_octet_strings():
    data = core.OctetString(b"x").dump()
    for _ in range(MAX_DEPTH + 2):
        data = b"\x24\x80" + data + b"\x00\x00"
    r = _reader(data)
    with pytest.raises(BerError, match="nesting too deep"):
        list(r.octets(r.header()))


@pytest.mark.parametrize("segment, message", [
    (b"\x04\x00", "empty segment"),
    (b"\x02\x01\x01", "non-OCTET STRING segment"),
])
def test_bad_octet_string_segments(segment, message):
    r = _reader(b"\x24\x80" + segment + b"\x00\x00")
    with pytest.raises(BerError, match=message):
        list(r.octets(r.header()))


def test_too_many_short_segments():
    short = b"\x04\x01x"
    allowed = MAX_SMALL_SEGMENTS + (MAX_SMALL_SEGMENTS // 1024)     # one more per KiB of content
    r = Reader(io.BytesIO(b"\x24\x80" + short * (allowed + 2) + b"\x00\x00"))
    with pytest.raises(BerError, match=f"shorter than {SMALL_SEGMENT} bytes"):
        list(r.octets(r.header()))


def test_malformed_cms_is_the_public_error():
    error = malformed_cms("package", BerError("unexpected end of data", 17))
    assert isinstance(error, PackageInvalidError)
    assert (error.message, error.where) == ("malformed CMS: unexpected end of data", "package byte 17")


@pytest.mark.parametrize("data", [b"", b"\x30\x80", b"\x30\x89" + b"\x01" * 9, _nested(MAX_DEPTH + 2)])
def test_public_functions_never_raise_ber_errors(data):
    with pytest.raises(PackageInvalidError) as info:
        open_secure_package(io.BytesIO(data), io.BytesIO(), password=b"pw")
    # Exactly the public error, raised afresh: no internal error as its cause either.
    assert type(info.value) is PackageInvalidError and "malformed CMS" in info.value.message
    assert not isinstance(info.value.__cause__, BerError)
    with pytest.raises(PackageInvalidError):
        open_envelope_bytes(data, password=b"pw")
