"""ZipLimits: every bound the reader enforces on a ZIP before trusting it."""
from __future__ import annotations

from dataclasses import dataclass

# The package manifest's entry name (container/manifest.py writes and
# parses it): the one entry the reader holds to the manifest's size cap
# while it reads the central directory, before anything is extracted.
MANIFEST_NAME = "DICOMPACK.JSON"


@dataclass(frozen=True)
class ZipLimits:
    """Every limit the reader enforces, in one place (spec/threat-model.md).

    They bound disk, memory and CPU before anything in a ZIP is trusted; a
    ZIP crossing one is refused (UnsafeArchiveError, exit 5) naming the entry."""
    # Each entry is held (~0.3 KB) until the end: 250,000 keeps a ZIP of
    # empty entries under the 200 MB hostile-input bound (500,000 took
    # 338 MB).  A dicompack ZIP has at most ~157,000 (its manifest cap).
    max_entries: int = 250_000
    max_entry_size: int = 64 << 30          # declared uncompressed size of one entry
    max_total_size: int = 256 << 30         # sum of the declared sizes
    # Uncompressed / compressed: per entry as its output is produced (past
    # ratio_grace bytes of output), and for the declared sizes of the whole
    # archive against its size on disk (past ratio_grace_total bytes).
    max_ratio: float = 200.0
    ratio_grace: int = 1 << 20
    ratio_grace_total: int = 64 << 20
    # Names: UTF-8 bytes of a whole name, path components in it, UTF-8
    # bytes per component (NAME_MAX of common file systems).
    max_name_bytes: int = 1024
    max_path_depth: int = 32
    max_component_bytes: int = 255
    # All names together: each is held as a str; 1 KiB names on every entry
    # would otherwise cost 250 MB.  Ours: ~60 bytes an entry.
    max_names_bytes: int = 32 << 20
    # The manifest is parsed in memory: it may take 64 KiB plus
    # manifest_bytes_per_entry per ZIP entry (ours takes about 160 bytes an
    # entry), never more than max_manifest_size (ours for 150,000 entries;
    # use --split beyond), at least manifest_bytes_per_value bytes per JSON
    # value (ours about 21), and may nest no deeper than max_manifest_depth
    # (ours nests 3 deep).
    max_manifest_size: int = 24 << 20
    manifest_bytes_per_entry: int = 512
    manifest_bytes_per_value: int = 16
    # Estimated peak memory of parsing the manifest (its bytes, text and
    # Python objects, see manifest.parse_manifest): bounds what the size cap
    # alone does not (24 MiB of short strings took 260 MB).
    max_manifest_memory: int = 112 << 20
    max_manifest_depth: int = 8
    # A zstd frame may ask for a window of up to 2 GiB, which the decoder
    # would allocate; level 19 uses 8 MiB.
    max_zstd_window: int = 32 << 20

    def manifest_cap(self, entries: int) -> int:
        """Most bytes a manifest may have in a ZIP of ``entries`` entries."""
        return min(self.max_manifest_size, (64 << 10) + self.manifest_bytes_per_entry * entries)
