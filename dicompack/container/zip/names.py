"""Entry-name validation: which names may be extracted (zip-slip, absolute
paths, Windows device names and forbidden characters, length and depth
limits) and which names one file system would merge (NameIndex: duplicates,
case and Unicode-normalisation clashes, a file where a folder is needed)."""
from __future__ import annotations

import re
import unicodedata

from dicompack.container.zip.format import ZipEntry
from dicompack.container.zip.limits import ZipLimits
from dicompack.errors import UnsafeArchiveError


def check_entry_name(name: str, limits: ZipLimits | None = None) -> None:
    """Refuse names that would be unsafe or non-portable to extract."""
    reason = unsafe_name_reason(name, limits)
    if reason:
        raise UnsafeArchiveError(reason, where=name)


_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters Windows refuses in file names (':' also opens NTFS alternate
# data streams: "IM1:hidden" would write a stream, not a file).
_WINDOWS_FORBIDDEN = frozenset(':<>"|?*')
# Windows device names: "CON", "aux.txt", "LPT1.dcm" open the device, not a
# file, whatever the extension (the superscript digits count since Windows 11).
_WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
                             | {f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"})


def unsafe_name_reason(name: str, limits: ZipLimits | None = None) -> str | None:
    """Why ``name`` must not be extracted, or None.  A name is refused rather
    than normalised: './A', 'a//b', 'A.' or 'A ' would otherwise land on the
    same file as 'A', 'a/b' on some system, behind the duplicate check."""
    limits = limits or ZipLimits()
    if not name:
        return "empty entry name"
    if len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        return f"entry name longer than {limits.max_name_bytes} bytes"
    if _CONTROL.search(name):
        return "control character in entry name"
    if "\\" in name:
        return "backslash in entry name (path separator of another system)"
    if name.startswith("/"):
        return "absolute path in entry name"
    if _DRIVE.match(name):
        return "drive letter in entry name"
    # A trailing '/' marks a folder entry; every other '/' separates components.
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if len(parts) > limits.max_path_depth:
        return f"entry name has more than {limits.max_path_depth} path components"
    for part in parts:
        reason = _unsafe_component_reason(part, limits)
        if reason:
            return reason
    return None


def _unsafe_component_reason(part: str, limits: ZipLimits) -> str | None:
    if part == "":
        return "empty path component ('//') in entry name"
    if part == "..":
        return "'..' in entry name would escape the target folder"
    if part == ".":
        return "'.' path component in entry name"
    if len(part.encode("utf-8", "surrogatepass")) > limits.max_component_bytes:
        return f"path component longer than {limits.max_component_bytes} bytes"
    if _WINDOWS_FORBIDDEN.intersection(part):
        return "character not allowed in Windows file names (':' would open an NTFS alternate data stream)"
    if part[-1] in ". ":
        # Windows drops trailing dots and spaces: 'A.' and 'A' are one file.
        return "path component ends with a dot or a space"
    if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return "reserved Windows device name in entry name"
    return None


def collision_key(name: str) -> str:
    """The name as case-insensitive, normalisation-insensitive file systems
    (Windows, macOS) see it: two entries with one key are one file there."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


class NameIndex:
    """Refuses names one file system would merge into one file: duplicates,
    names differing only in case or Unicode normalisation (composed and
    decomposed 'é' are one file on macOS), and a file where another entry
    needs a folder."""

    def __init__(self) -> None:
        self._files: dict[str, str] = {}       # collision key -> name as spelled
        self._folders: dict[str, str] = {}
        self._folder_entries: set[str] = set()
        self._claimed: set[str] = set()         # folders already claimed, as spelled

    def add(self, e: ZipEntry) -> None:
        path = e.name.rstrip("/")
        parts = path.split("/")
        # Deepest parent first: once one is known, so are all above it.
        for depth in range(len(parts) - 1, 0, -1):
            folder = "/".join(parts[:depth])
            if folder in self._claimed:
                break
            self._claim_folder(collision_key(folder), folder, e.name)
            self._claimed.add(folder)
        key = collision_key(path)
        if e.is_dir:
            if key in self._folder_entries:
                raise UnsafeArchiveError("duplicate entry name", where=e.name)
            self._folder_entries.add(key)
            self._claim_folder(key, path, e.name)
            return
        if key in self._folders:
            raise UnsafeArchiveError(f"is a file where {self._folders[key]!r} is a folder of other entries",
                                     where=e.name)
        other = self._files.get(key)
        if other == path:
            raise UnsafeArchiveError("duplicate entry name", where=e.name)
        if other is not None:
            raise UnsafeArchiveError(f"name differs only in case or Unicode normalisation from {other!r}",
                                     where=e.name)
        self._files[key] = path

    def _claim_folder(self, key: str, path: str, name: str) -> None:
        other = self._files.get(key)
        if other is not None:
            raise UnsafeArchiveError(f"needs a folder where {other!r} is a file", where=name)
        other = self._folders.setdefault(key, path)
        if other != path:
            raise UnsafeArchiveError(f"folder {path!r} differs only in case or Unicode normalisation "
                                     f"from {other!r}", where=name)

