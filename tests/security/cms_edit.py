"""Building hostile CMS packages for the security tests: locating regions of
a real package and splicing edited DER into it (the outer layer is BER with
indefinite lengths, so an element can be replaced by one of another size)."""
from __future__ import annotations

import io
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dicompack.container.cms.ber import Reader, der_length
from tests.support.tools import require_tool


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def nested(depth: int, innermost: bytes = b"\x05\x00") -> bytes:
    """``depth`` SEQUENCEs around ``innermost`` (definite lengths)."""
    out = innermost
    for _ in range(depth):
        out = tlv(0x30, out)
    return out


@dataclass
class Layout:
    """Offsets in a package made by ``dicompack pack`` or ``openssl cms -encrypt``."""
    recipient_infos: tuple[int, int]        # [start, end) of the recipientInfos SET
    algorithm: tuple[int, int]              # [start, end) of contentEncryptionAlgorithm
    ciphertext: list[int]                   # file offset of every ciphertext byte, in order


def layout(data: bytes) -> Layout:
    r = Reader(io.BytesIO(data))
    r.header()
    r.oid()
    r.header()
    r.header()
    r.integer()
    h = r.header()
    start = h.start
    r.element_rest(h)
    rinfos = (start, r.pos)
    r.header()
    r.oid()
    a = r.pos
    r.element()
    alg = (a, r.pos)
    body = r.header()
    offsets: list[int] = []
    if not body.constructed:
        offsets = list(range(r.pos, r.pos + body.length))
    else:
        while r.more(body):
            seg = r.header()
            offsets.extend(range(r.pos, r.pos + seg.length))
            r.read(seg.length)
    return Layout(rinfos, alg, offsets)


def splice(data: bytes, span: tuple[int, int], replacement: bytes) -> bytes:
    return data[:span[0]] + replacement + data[span[1]:]


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def openssl(*args, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, input=input)


def private_env(tmp: Path) -> dict:
    """Environment whose temporary folder is ``tmp`` (to see what is left there)."""
    tmp.mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp))
