"""Minimal streaming BER framing for CMS.

Writer side: the few indefinite-length frames and chunked OCTET STRING
segments of a streamed CMS message (everything else is DER produced by
asn1crypto).  Reader side: an incremental pull parser over a byte stream
that understands definite and indefinite lengths, so that the content
OCTET STRING of a multi-GB message is yielded in pieces and never held in
memory.  Small structures (RecipientInfos, SignerInfos, certificates) are
read whole, up to a size limit, and parsed with asn1crypto.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from asn1crypto import core

from dicompack.container.cms.limits import MAX_DEPTH, MAX_ELEMENT, MAX_SMALL_SEGMENTS, SMALL_SEGMENT
from dicompack.errors import PackageInvalidError

EOC = b"\x00\x00"

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_SEQUENCE = 0x30
TAG_SET = 0x31

class BerError(Exception):
    """Malformed or truncated BER; ``offset`` is the stream position.
    Internal: the public functions turn it into a PackageInvalidError
    (malformed_cms) or, inside the encrypted content, the one integrity error."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message = message
        self.offset = offset


def malformed_cms(where: str, exc: BerError) -> PackageInvalidError:
    """The public error for a framing error of a layer whose bytes are not
    secret (the outer, ciphertext layer): where it is, and what."""
    return PackageInvalidError(f"malformed CMS: {exc.message}", where=f"{where} byte {exc.offset}")


# --------------------------------------------------------------------- writer

def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def open_indefinite(tag: int) -> bytes:
    """Header of a constructed element with indefinite length."""
    return bytes([tag | 0x20, 0x80])


def primitive_header(tag: int, length: int) -> bytes:
    return bytes([tag]) + der_length(length)


def der_oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()


def der_int(n: int) -> bytes:
    return core.Integer(n).dump()


def octet_string(data: bytes) -> bytes:
    return primitive_header(TAG_OCTET_STRING, len(data)) + data


def tlv(tag: int, content: bytes) -> bytes:
    """A definite-length element of identifier ``tag`` (one byte)."""
    return bytes([tag]) + der_length(len(content)) + content


def retag(der: bytes, new_tag: int) -> bytes:
    """Replace the (single-byte) identifier of a DER element, e.g. SET -> [0] IMPLICIT."""
    return bytes([new_tag]) + der[1:]


# --------------------------------------------------------------------- reader

@dataclass
class Header:
    tag: int            # first identifier octet (class | constructed | number), or 0x1f-form below
    number: int         # tag number
    cls: int            # 0 universal, 1 application, 2 context, 3 private
    constructed: bool
    length: int | None  # None = indefinite
    start: int          # stream offset of the identifier octet
    content_start: int  # stream offset of the first content octet
    raw: bytes          # identifier + length octets

    @property
    def end(self) -> int | None:
        return None if self.length is None else self.content_start + self.length

    def is_(self, cls: int, number: int) -> bool:
        return self.cls == cls and self.number == number


class Reader:
    """Pull parser over ``stream`` (anything with ``read(n)``)."""

    def __init__(self, stream, block: int = 1 << 16):
        self._s = stream
        self._block = block
        self._buf = b""
        self._off = 0
        self.pos = 0

    # -- raw byte access
    def _fill(self, n: int) -> bool:
        avail = len(self._buf) - self._off
        if avail >= n:
            return True
        parts = [self._buf[self._off:]]
        while avail < n:
            # Ask for what is missing at once: one copy per large element,
            # not one per block (a 32 MiB element would copy quadratically).
            chunk = self._s.read(max(self._block, n - avail))
            if not chunk:
                self._buf, self._off = b"".join(parts), 0
                return False
            parts.append(chunk)
            avail += len(chunk)
        self._buf, self._off = b"".join(parts), 0
        return True

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._off:self._off + n]

    def read(self, n: int) -> bytes:
        if not self._fill(n):
            raise BerError("unexpected end of data", self.pos + len(self._buf) - self._off)
        out = self._buf[self._off:self._off + n]
        self._off += n
        self.pos += n
        if self._off > (1 << 20):
            self._buf = self._buf[self._off:]
            self._off = 0
        return out

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes (at least one), for large content reads."""
        avail = len(self._buf) - self._off
        if avail == 0:
            chunk = self._s.read(n)
            if not chunk:
                raise BerError("unexpected end of data", self.pos)
            out = chunk[:n]
            if len(chunk) > n:
                self._buf, self._off = chunk[n:], 0
            else:
                self._buf, self._off = b"", 0
            self.pos += len(out)
            return out
        take = min(n, avail)
        return self.read(take)

    def at_eof(self) -> bool:
        return not self._fill(1)

    # -- TLV
    def header(self) -> Header:
        start = self.pos
        first = self.read(1)[0]
        raw = bytearray([first])
        cls = first >> 6
        constructed = bool(first & 0x20)
        number = first & 0x1F
        if number == 0x1F:
            number = 0
            for _ in range(5):
                b = self.read(1)[0]
                raw.append(b)
                number = (number << 7) | (b & 0x7F)
                if not b & 0x80:
                    break
            else:
                raise BerError("tag number too long", start)
        lb = self.read(1)[0]
        raw.append(lb)
        if lb < 0x80:
            length: int | None = lb
        elif lb == 0x80:
            if not constructed:
                raise BerError("indefinite length on a primitive element", start)
            length = None
        elif lb == 0xFF:
            raise BerError("reserved length octet", start)
        else:
            n = lb & 0x7F
            if n > 8:
                raise BerError("length too long", start)
            body = self.read(n)
            raw += body
            length = int.from_bytes(body, "big")
        return Header(first, number, cls, constructed, length, start, self.pos, bytes(raw))

    def expect(self, cls: int, number: int, what: str, constructed: bool | None = None) -> Header:
        h = self.header()
        if not h.is_(cls, number) or (constructed is not None and h.constructed != constructed):
            raise BerError(f"expected {what}", h.start)
        return h

    def at_eoc(self) -> bool:
        return self.peek(2) == EOC

    def more(self, parent: Header) -> bool:
        """True while ``parent`` (constructed) has further children."""
        if parent.length is None:
            if len(self.peek(2)) < 2:
                raise BerError("unexpected end of data", self.pos)
            return not self.at_eoc()
        end = parent.content_start + parent.length
        if self.pos > end:
            raise BerError("element overruns its parent", self.pos)
        return self.pos < end

    def close(self, parent: Header) -> None:
        """Consume the end of ``parent`` (EOC, or check the definite length)."""
        if parent.length is None:
            if self.read(2) != EOC:
                raise BerError("missing end-of-contents", self.pos - 2)
        elif self.pos != parent.end:
            raise BerError("element length mismatch", self.pos)

    def content(self, h: Header, limit: int = MAX_ELEMENT) -> bytes:
        """Contents octets of a definite-length primitive element."""
        if h.length is None or h.constructed:
            raise BerError("expected a primitive element", h.start)
        if h.length > limit:
            raise BerError("element too large", h.start)
        return self.read(h.length)

    def element_rest(self, h: Header, limit: int = MAX_ELEMENT, depth: int = 0) -> bytes:
        """Remaining bytes of the element whose header was just read, returned
        together with the header as one TLV (nested indefinite lengths kept).
        Its nesting depth is checked, definite parts included, so that what we
        hand to asn1crypto can never exhaust Python's recursion limit."""
        if depth > MAX_DEPTH:
            raise BerError("nesting too deep", h.start)
        if h.length is not None:
            if h.length > limit:
                raise BerError("element too large", h.start)
            data = h.raw + self.read(h.length)
            if h.constructed:
                check_nesting(data, MAX_DEPTH - depth, h.start)
            return data
        parts = [h.raw]
        size = len(h.raw)
        while not self.at_eoc():
            if len(self.peek(2)) < 2:
                raise BerError("unexpected end of data", self.pos)
            child = self.header()
            part = self.element_rest(child, limit - size, depth + 1)
            size += len(part)
            if size > limit:
                raise BerError("element too large", h.start)
            parts.append(part)
        parts.append(self.read(2))
        return b"".join(parts)

    def element(self, limit: int = MAX_ELEMENT) -> bytes:
        return self.element_rest(self.header(), limit)

    def oid(self) -> str:
        h = self.expect(0, TAG_OID, "OBJECT IDENTIFIER", constructed=False)
        try:
            return core.ObjectIdentifier.load(h.raw + self.content(h, 256)).dotted
        except Exception:  # noqa: BLE001
            raise BerError("malformed OBJECT IDENTIFIER", h.start) from None

    def integer(self) -> int:
        h = self.expect(0, TAG_INTEGER, "INTEGER", constructed=False)
        body = self.content(h, 64)
        if not body:
            raise BerError("empty INTEGER", h.start)
        return int.from_bytes(body, "big", signed=True)

    def octets(self, h: Header, chunk: int = 1 << 20, depth: int = 0,
               small: list[int] | None = None) -> Iterator[bytes]:
        """Content of an OCTET STRING (any tag via IMPLICIT tagging) whose
        header is ``h``: primitive, or constructed of OCTET STRING segments,
        definite or indefinite.  Yields pieces of at most ``chunk`` bytes.

        Segments cost ~1.4 us each whatever their size: empty segments are
        refused, and segments shorter than SMALL_SEGMENT may number at most
        MAX_SMALL_SEGMENTS plus one per KiB of content (``small`` counts
        both across the nesting: [short segments, content bytes]), so
        re-segmenting a ciphertext cannot multiply the work before any trust
        decision.  Our writer and openssl write one short segment per chunk."""
        if small is None:
            small = [0, 0]
        if depth > MAX_DEPTH:
            raise BerError("nesting too deep", h.start)
        if not h.constructed:
            left = h.length
            while left:
                piece = self.read_some(min(chunk, left))
                left -= len(piece)
                small[1] += len(piece)
                yield piece
            return
        while self.more(h):
            child = self.header()
            if not child.is_(0, TAG_OCTET_STRING):
                raise BerError("constructed OCTET STRING holds a non-OCTET STRING segment",
                               child.start)
            if child.length == 0:
                raise BerError("constructed OCTET STRING holds an empty segment", child.start)
            if child.constructed or (child.length is not None and child.length < SMALL_SEGMENT):
                small[0] += 1
                if small[0] > MAX_SMALL_SEGMENTS + small[1] // 1024:
                    raise BerError(f"constructed OCTET STRING holds too many segments shorter than "
                                   f"{SMALL_SEGMENT} bytes ({small[0]:,} in {small[1]:,} bytes)", child.start)
            yield from self.octets(child, chunk, depth + 1, small)
        self.close(h)


def check_nesting(der: bytes, max_depth: int = MAX_DEPTH, base: int = 0) -> None:
    """Raise BerError when the TLVs in ``der`` nest deeper than ``max_depth``
    constructed levels or are not well framed.  Iterative (an explicit stack
    of end offsets), so hostile depth costs no recursion; primitive contents
    are skipped, not scanned."""
    ends: list[int | None] = []         # end offset of each open constructed element (None: indefinite)
    i, n = 0, len(der)
    while i < n:
        if ends and ends[-1] is None and der[i:i + 2] == EOC:
            ends.pop()
            i += 2
            continue
        start = i
        first = der[i]
        i += 1
        if first & 0x1F == 0x1F:                # high tag number form
            for _ in range(5):
                if i >= n:
                    raise BerError("unexpected end of data", base + start)
                i += 1
                if not der[i - 1] & 0x80:
                    break
            else:
                raise BerError("tag number too long", base + start)
        if i >= n:
            raise BerError("unexpected end of data", base + start)
        lb = der[i]
        i += 1
        if lb == 0x80:
            length = None
            if not first & 0x20:
                raise BerError("indefinite length on a primitive element", base + start)
        elif lb < 0x80:
            length = lb
        else:
            k = lb & 0x7F
            if k > 8 or lb == 0xFF:
                raise BerError("length too long", base + start)
            length = int.from_bytes(der[i:i + k], "big")
            i += k
        end = None if length is None else i + length
        if end is not None and (end > n or any(e is not None and end > e for e in ends[-1:])):
            raise BerError("element overruns its parent", base + start)
        if first & 0x20:
            ends.append(end)
            if len(ends) > max_depth + 1:       # the element itself is level 0
                raise BerError("nesting too deep", base + start)
        else:
            assert end is not None              # a primitive element's length is definite (checked above)
            i = end
        while ends and ends[-1] is not None and i >= ends[-1]:
            ends.pop()


class ChunkStream:
    """File-like ``read(n)`` over an iterator of byte strings."""

    def __init__(self, chunks: Iterator[bytes]):
        self._it = iter(chunks)
        self._buf = b""
        self._off = 0
        self.done = False

    def read(self, n: int = -1) -> bytes:
        want = n if n >= 0 else 1 << 62
        avail = len(self._buf) - self._off
        if avail < want and not self.done:
            parts = [self._buf[self._off:]]
            while avail < want:
                try:
                    nxt = next(self._it)
                except StopIteration:
                    self.done = True
                    break
                parts.append(nxt)
                avail += len(nxt)
            self._buf, self._off = b"".join(parts), 0
        if n < 0:
            out = self._buf[self._off:]
            self._buf, self._off = b"", 0
            return out
        out = self._buf[self._off:self._off + n]
        self._off += len(out)
        return out
