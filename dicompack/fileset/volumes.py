"""Volumes: a File-set cut into parts of at most a given number of output
bytes (``pack --split``), series kept whole where they fit, each volume a
complete File-set of its own."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dicompack.fileset.layout import Layout, source_scan
from dicompack.fileset.records import Record
from dicompack.scan import ScanResult


@dataclass
class VolumePlan:
    """The scans of each volume, in File-set order, and notes on how they were cut."""

    volumes: list[list[ScanResult]]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Unit:
    """What goes into a volume whole: a series, an instance of a series too
    large for one volume, or a single-level instance."""
    scans: list[ScanResult]
    cost: int
    series: Record | None = None


class VolumeTooSmall(ValueError):
    """One instance, alone in a volume, needs more bytes than the volume size."""

    def __init__(self, scan: ScanResult, needed: int):
        super().__init__(scan.path)
        self.scan, self.needed = scan, needed


def split_volumes(layout: Layout, limit: int, measure: Callable[[list[ScanResult]], int],
                  cost: Callable[[ScanResult], int]) -> VolumePlan:
    """Cut the File-set into volumes of at most ``limit`` output bytes.

    ``measure(scans)`` is the exact (or safely bounded) size of a volume
    holding ``scans``: a complete File-set with its DICOMDIR and manifest,
    compressed, encrypted.  ``cost(scan)`` is a cheap share of one instance
    (its compressed bytes); the per-instance overhead on top is learned from
    each measure.  Series are placed whole, in File-set order, each volume
    filled before the next is opened; only a series larger than a volume is
    split by instance (noted), starting in the room the current volume has
    left.  A volume is measured before it is closed, and the first unit of
    a volume is always measured, so no volume is ever over ``limit``."""
    sizer = _Estimator(limit, measure)
    plan = VolumePlan(volumes=[])
    queue = deque(_units(layout, cost))
    current = _Open()

    def close() -> None:
        # Estimates let units in without a measure: give back what does
        # not fit.  The first unit was measured alone, so one always stays.
        while sizer.measure(current.units) > limit:
            queue.appendleft(current.pop())
        plan.volumes.append([scan for unit in current.units for scan in unit.scans])
        current.clear()

    while queue or current.units:
        if not queue:
            close()         # may give units back: the loop goes on with them
            continue
        unit = queue.popleft()
        if sizer.fits(current, unit):
            current.append(unit)
            continue
        if unit.series is not None and len(unit.scans) > 1 and not sizer.fits(_Open(), unit):
            series = unit.series
            plan.notes.append(f"series {'/'.join((series.children[0].file_id or ())[:3])} exceeds the volume size: "
                              "split by instance")
            queue.extendleft(reversed([_Unit([scan], cost(scan)) for scan in unit.scans]))
            continue
        if not current.units:
            raise VolumeTooSmall(unit.scans[0], sizer.measure([unit]))
        queue.appendleft(unit)
        close()
    return plan


def _units(layout: Layout, cost: Callable[[ScanResult], int]) -> list[_Unit]:
    """Series (and single-level instances) in File-set order."""
    units = []
    for rec in layout.roots:
        if rec.file_id:
            scan = source_scan(rec)
            units.append(_Unit([scan], cost(scan)))
            continue
        for series in (r for r in rec.walk() if r.type == "SERIES"):
            scans = [source_scan(leaf) for leaf in series.children if leaf.file_id]
            if scans:
                units.append(_Unit(scans, sum(cost(s) for s in scans), series))
    return units


class _Open:
    """The volume being filled: running totals, and its last measured size
    (the anchor) with the totals it was measured at."""

    units: list[_Unit]
    cost: int
    count: int
    anchor: tuple[int, int, int] | None     # (measured size, cost, count) at the last measure
    pending: int | None                     # measured size with the unit about to be appended

    def __init__(self) -> None:
        self.clear()

    def append(self, unit: _Unit) -> None:
        self.units.append(unit)
        self.cost += unit.cost
        self.count += len(unit.scans)
        if self.pending is not None:
            self.anchor, self.pending = (self.pending, self.cost, self.count), None

    def pop(self) -> _Unit:
        unit = self.units.pop()
        self.cost -= unit.cost
        self.count -= len(unit.scans)
        self.anchor = self.pending = None
        return unit

    def clear(self) -> None:
        self.units = []
        self.cost = self.count = 0
        self.anchor = None
        self.pending = None


class _Estimator:
    """Decides whether a unit fits, measuring only near the limit.

    The estimate is the volume's last measured size (or the empty volume)
    plus the costs added since and a learned overhead per instance (DICOMDIR
    record, manifest line, ZIP headers, CMS framing), relearned from every
    measure.  Within a margin of the limit it measures: a wide margin until
    the volume has been measured once, then a narrow one, since only the
    overhead of what was added since can be off.  A unit alone in a volume
    is always measured; a whole volume is measured before it is closed."""

    NARROW = 4 << 10           # bytes, plus PER_INSTANCE_SLACK per instance added since the anchor
    PER_INSTANCE_SLACK = 64

    def __init__(self, limit: int, measure: Callable[[list[ScanResult]], int]):
        self.limit, self._measure = limit, measure
        self.wide = max(16 << 10, limit // 64)
        self.empty = measure([])
        self.per_instance = 512.0

    def measure(self, units: list[_Unit]) -> int:
        scans = [scan for unit in units for scan in unit.scans]
        size = self._measure(scans)
        if scans:
            self.per_instance = max(0.0, (size - self.empty - sum(u.cost for u in units)) / len(scans))
        return size

    def fits(self, current: _Open, unit: _Unit) -> bool:
        current.pending = None
        if not current.units:
            size = self.measure([unit])
            current.pending = size if size <= self.limit else None
            return size <= self.limit
        size, cost, count = current.anchor or (self.empty, 0, 0)
        added = current.count - count + len(unit.scans)
        estimate = size + current.cost - cost + unit.cost + self.per_instance * added
        margin = self.NARROW + self.PER_INSTANCE_SLACK * added if current.anchor else self.wide
        if estimate <= self.limit - margin:
            return True
        if estimate > self.limit + margin:
            return False
        size = self.measure(current.units + [unit])
        current.pending = size if size <= self.limit else None
        return size <= self.limit


def volume_name(dest: Path, index: int, count: int) -> Path:
    """NAME-1of3.zip, NAME-1of3.p7m, NAME-1of3 (folder)."""
    if count == 1:
        return dest
    suffix = dest.suffix if dest.suffix.lower() in (".zip", ".p7m") else ""
    stem = dest.name[:-len(suffix)] if suffix else dest.name
    return dest.with_name(f"{stem}-{index}of{count}{suffix}")
