"""The ZIP records (APPNOTE.TXT): signatures, flags, the fixed-size header
layouts, compression method ids, and the two entry descriptions: EntryInfo
(what the writer wrote) and ZipEntry (what the reader found in the central
directory)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from dicompack.enums import ZipMethod

# Keys are ZipMethod members, looked up by plain strings too (a str enum).
METHOD_IDS: dict[str, int] = {ZipMethod.STORE: 0, ZipMethod.DEFLATE: 8, ZipMethod.ZSTD: 93}
METHOD_NAMES: dict[int, str] = {v: k for k, v in METHOD_IDS.items()}
LOCAL_SIG, CENTRAL_SIG, DESCRIPTOR_SIG = 0x04034B50, 0x02014B50, 0x08074B50
EOCD_SIG, EOCD64_SIG, LOCATOR_SIG = 0x06054B50, 0x06064B50, 0x07064B50
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_UTF8 = 0x1, 0x8, 0x800
U32_MAX, U16_MAX = 0xFFFFFFFF, 0xFFFF
LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
EOCD_RECORD = struct.Struct("<IHHHHIIH")
EOCD64_RECORD = struct.Struct("<IQHHIIQQQQ")
LOCATOR_RECORD = struct.Struct("<IIQI")


@dataclass(frozen=True)
class EntryInfo:
    name: str
    size: int
    compressed_size: int
    crc32: int
    sha256: str
    method: str


# slots: a ZIP may list max_entries entries, each held until the end.  The
# raw name is not kept: decoding it is one-to-one (strict UTF-8, or cp437),
# so the local header's name is compared decoded (decoded_name).
@dataclass(frozen=True, slots=True)
class ZipEntry:
    name: str
    method: str
    compressed_size: int
    size: int
    crc32: int
    header_offset: int
    is_dir: bool
    flags: int
    external_attr: int


def decoded_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437")

def needs_zip64_local(info: EntryInfo) -> bool:
    return info.size >= U32_MAX or info.compressed_size >= U32_MAX


def zip64_values(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if size == U32_MAX and values:
                size = values.pop(0)
            if csize == U32_MAX and values:
                csize = values.pop(0)
            if offset == U32_MAX and values:
                offset = values.pop(0)
            break
        pos += 4 + length
    return size, csize, offset

